public import JSON
import Spool

/// An HTTP response as a CGI program writes it: a `Status:` header always (a bare `Location`
/// would become a redirect), other headers, a blank line, the body.
public struct Response: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response (`application/json`).
    public static func json(_ status: Int, _ value: JSONValue, headers: [(String, String)] = []) -> Response {
        var body = value.serialized()
        body.append(0x0A)
        return Response(status: status, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.0.lowercased() == lower }?.1
    }

    /// The bytes to write to standard output.
    public func cgiBytes() -> [UInt8] {
        var out = Array("Status: \(status) \(Response.reason(status))\r\n".utf8)
        for (name, value) in headers { out += Array("\(name): \(value)\r\n".utf8) }
        if header("Cache-Control") == nil { out += Array("Cache-Control: no-store\r\n".utf8) }
        if header("Content-Length") == nil, !body.isEmpty || status != 204 { out += Array("Content-Length: \(body.count)\r\n".utf8) }
        out += [0x0D, 0x0A]
        out += body
        return out
    }

    public static func == (a: Response, b: Response) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.map { $0.0 + ":" + $0.1 } == b.headers.map { $0.0 + ":" + $0.1 }
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status \(status)"
        }
    }
}
