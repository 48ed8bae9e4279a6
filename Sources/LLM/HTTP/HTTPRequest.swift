/// Takes a response body as it arrives, on the engine's thread (so it must not block).
public protocol HTTPBodyStream: AnyObject, Sendable {
    /// Called once, before the first body byte: whether to take this response's body. When not,
    /// the body is buffered as usual.
    func accept(status: Int, headers: HTTPHeaders) -> Bool
    /// The next bytes of an accepted body. False aborts the transfer.
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool
}

/// One HTTP exchange for ``CurlEngine/perform(_:)``.
public struct HTTPRequest: Sendable {
    /// The method, e.g. `"POST"`.
    public var method: String
    /// An absolute `http://` or `https://` URL.
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The longest time to wait for a connection (TCP and TLS) when none can be reused.
    public var connectTimeout: Duration
    /// The longest time the whole exchange may take, connection included.
    public var timeout: Duration
    /// A response body longer than this fails with ``LLMError/Kind/responseTooLarge``.
    public var maxResponseBytes: Int
    /// When set, a response this accepts has its body handed over as it arrives instead of
    /// buffered (``HTTPResponse/body`` is then empty).
    public var bodyStream: (any HTTPBodyStream)?
    /// When set, the exchange fails with a ``LLMError/Kind/timeout`` once its response body has
    /// begun and no byte of it arrived for this long — for streamed answers, distinct from
    /// ``timeout``, which still bounds the whole exchange and alone the wait for the body's first
    /// byte. Kept by the engine's loop to the millisecond (not libcurl's low-speed limit).
    public var idleTimeout: Duration?

    public init(
        method: String = "GET",
        url: String,
        headers: HTTPHeaders = [:],
        body: [UInt8] = [],
        connectTimeout: Duration = .seconds(10),
        timeout: Duration = .seconds(600),
        maxResponseBytes: Int = 16 << 20
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.maxResponseBytes = maxResponseBytes
    }

    /// Checks what libcurl would otherwise take at face value: the scheme, the method,
    /// header names and values (no CR, LF or NUL, which would split the request).
    public func validate() throws(LLMError) {
        let lower = url.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw LLMError(.invalidRequest, "the URL \(redactedURL(url)) is not http:// or https://")
        }
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else {
            throw LLMError(.invalidRequest, "the HTTP method \"\(method)\" is not an upper-case token")
        }
        for field in headers {
            guard !field.name.isEmpty, field.name.utf8.allSatisfy(isTokenByte) else {
                throw LLMError(.invalidRequest, "the header name \"\(field.name)\" is not a token")
            }
            // The value is not quoted back: it may be a credential.
            guard !field.value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw LLMError(.invalidRequest, "the value of header \(field.name) contains a line break or NUL")
            }
        }
        guard timeout > .zero, connectTimeout > .zero, (idleTimeout ?? .seconds(1)) > .zero else {
            throw LLMError(.invalidRequest, "timeouts must be positive")
        }
    }
}

private func isTokenByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        true
    default:
        "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
}

/// `url` without user information or query, for messages and logs
/// (`https://user:secret@host/p?key=x` → `https://host/p`).
public func redactedURL(_ url: String) -> String {
    var s = Substring(url)
    if let q = s.firstIndex(where: { $0 == "?" || $0 == "#" }) { s = s[..<q] }
    guard let schemeEnd = s.range(of: "://") else { return String(s) }
    let rest = s[schemeEnd.upperBound...]
    let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
    if let at = rest[..<authorityEnd].lastIndex(of: "@") {
        return String(s[..<schemeEnd.upperBound]) + String(rest[rest.index(after: at)...])
    }
    return String(s)
}
