import Basics

/// One CGI request as RFC 3875 describes it: the meta-variables the program reads, already
/// cleaned up (empty values count as absent, header names as servers pass them).
public struct Request: Sendable, Equatable {
    public var method: String
    /// `SCRIPT_NAME` + `PATH_INFO`: the whole path the client asked for, decoded by the server.
    public var path: String
    public var query: String
    public var contentType: String?
    /// `CONTENT_LENGTH`; nil when the server sent none (a body then runs to end of input).
    public var contentLength: Int?
    public var remoteUser: String?
    public var authorization: String?
    public var idempotencyKey: String?
    public var lastEventID: String?
    /// `HTTP_TRANSFER_ENCODING`, when the server passes one (Apache may stream a chunked body).
    public var transferEncoding: String?

    public init(
        method: String, path: String, query: String = "", contentType: String? = nil, contentLength: Int? = nil,
        remoteUser: String? = nil, authorization: String? = nil, idempotencyKey: String? = nil,
        lastEventID: String? = nil, transferEncoding: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.contentType = contentType
        self.contentLength = contentLength
        self.remoteUser = remoteUser
        self.authorization = authorization
        self.idempotencyKey = idempotencyKey
        self.lastEventID = lastEventID
        self.transferEncoding = transferEncoding
    }

    /// Reads the request from CGI meta-variables. `env` answers one name at a time (getenv, or
    /// a dictionary in tests). Fails with a problem for a malformed `CONTENT_LENGTH`.
    public static func fromCGI(_ env: (String) -> String?) throws(Problem) -> Request {
        func get(_ name: String) -> String? {
            guard let v = env(name), !v.isEmpty else { return nil }  // nginx sends REMOTE_USER="" without auth
            return v
        }
        var length: Int?
        if let raw = get("CONTENT_LENGTH") {
            guard raw.utf8.count <= 18, raw.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let n = Int(raw) else {
                throw Problem(
                    .badRequest, "bad-request", "The request's Content-Length is not a number.",
                    detail: "CONTENT_LENGTH is \"\(raw.prefix(40))\"", field: "Content-Length")
            }
            length = n
        }
        return Request(
            method: get("REQUEST_METHOD") ?? "GET",
            path: (get("SCRIPT_NAME") ?? "") + (get("PATH_INFO") ?? ""),
            query: get("QUERY_STRING") ?? "",
            contentType: get("CONTENT_TYPE"),
            contentLength: length,
            remoteUser: get("REMOTE_USER"),
            authorization: get("HTTP_AUTHORIZATION"),
            idempotencyKey: get("HTTP_IDEMPOTENCY_KEY"),
            lastEventID: get("HTTP_LAST_EVENT_ID"),
            transferEncoding: get("HTTP_TRANSFER_ENCODING"))
    }

    /// Whether the request carries a body to read: a length, or a chunked body without one.
    public var hasBody: Bool {
        if let contentLength { return contentLength > 0 }
        if transferEncoding != nil { return true }
        return method == "POST" || method == "PUT"
    }

    /// The value of a `name=value` pair of the query string (percent-decoded), or nil.
    public func queryValue(_ name: String) -> String? {
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if percentDecode(kv[0]) == name { return kv.count > 1 ? percentDecode(kv[1]) : "" }
        }
        return nil
    }
}

/// Decodes `%XX` and `+`; an invalid escape is kept as it is.
func percentDecode(_ s: Substring) -> String {
    var out: [UInt8] = []
    let u = Array(s.utf8)
    var i = 0
    while i < u.count {
        if u[i] == UInt8(ascii: "%"), i + 2 < u.count, let b = Hex.decode(String(decoding: u[(i + 1)...(i + 2)], as: UTF8.self)) {
            out.append(b[0])
            i += 3
        } else {
            out.append(u[i] == UInt8(ascii: "+") ? 0x20 : u[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// A media type split into its `type/subtype` (lowercased) and parameters (names lowercased).
public struct MediaType: Sendable, Equatable {
    public var essence: String
    public var parameters: [String: String]

    public init?(_ text: String) {
        let parts = text.split(separator: ";", omittingEmptySubsequences: false)
        let essence = parts[0].trimmingSpaces().lowercased()
        let pieces = essence.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, !pieces[0].isEmpty, !pieces[1].isEmpty else { return nil }
        self.essence = essence
        var params: [String: String] = [:]
        for p in parts.dropFirst() {
            let kv = p.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            var value = kv[1].trimmingSpaces()
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            params[kv[0].trimmingSpaces().lowercased()] = value
        }
        parameters = params
    }
}
