public import JSON
import Spool

/// An error answer: `application/problem+json` (RFC 9457) with `type`, `title`, `status`,
/// `detail`, and `field` (the request field at fault) when there is one.
public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    /// A stable slug; the `type` member is `urn:llmspool:problem:SLUG` (documented in docs/cgi.md).
    public var slug: String
    public var title: String
    public var detail: String?
    public var field: String?
    public var extraHeaders: [String: String]

    public init(
        _ status: Status, _ slug: String, _ title: String, detail: String? = nil, field: String? = nil,
        headers: [String: String] = [:]
    ) {
        self.status = status.rawValue
        self.slug = slug
        self.title = title
        self.detail = detail
        self.field = field
        extraHeaders = headers
    }

    public var type: String { "urn:llmspool:problem:" + slug }

    public var description: String { "\(status) \(slug): \(detail ?? title)" + (field.map { " [field \($0)]" } ?? "") }

    public func json() -> JSONValue {
        var o: JSONObject = ["type": .string(type), "title": .string(title), "status": .integer(status)]
        if let detail { o["detail"] = .string(detail) }
        if let field { o["field"] = .string(field) }
        return .object(o)
    }

    public var response: Response {
        var body = json().serialized()
        body.append(0x0A)
        let headers = [("Content-Type", "application/problem+json")] + extraHeaders.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return Response(status: status, headers: headers, body: body)
    }

    /// The statuses the endpoint answers with.
    public enum Status: Int, Sendable {
        case badRequest = 400, unauthorized = 401, forbidden = 403, notFound = 404, methodNotAllowed = 405
        case conflict = 409, contentTooLarge = 413, unsupportedMediaType = 415, unprocessable = 422
        case tooManyRequests = 429, internalError = 500, unavailable = 503
    }

    public static func notFound(_ id: String) -> Problem {
        Problem(.notFound, "not-found", "No such job.", detail: "there is no job \(id) that you may see")
    }
}
