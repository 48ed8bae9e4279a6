/// What ``CurlEngine/perform(_:)`` returns for any complete HTTP response, whatever its status.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    /// Header fields of the final response, names in lower case.
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// 1 for HTTP/1.x, 2 for HTTP/2, 3 for HTTP/3, 0 if unknown.
    public var httpVersion: Int
    /// Connections this exchange had to open (0 when it reused one).
    public var newConnections: Int
    /// Time from the start of the exchange to its end.
    public var totalTime: Duration

    public init(
        status: Int, headers: HTTPHeaders = [:], body: [UInt8] = [], httpVersion: Int = 1,
        newConnections: Int = 0, totalTime: Duration = .zero
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.httpVersion = httpVersion
        self.newConnections = newConnections
        self.totalTime = totalTime
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
}
