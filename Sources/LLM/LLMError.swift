/// Why an LLM call failed: a value with a person-readable message and what a retry needs to know.
///
/// Messages never contain an API key; URLs in them lose user information and query.
public struct LLMError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// The server answered with a status outside 2xx (see ``LLMError/httpStatus``).
        case http
        /// No connection within the connect timeout, no complete answer within the total timeout, or
        /// no byte of a streamed answer within its idle timeout.
        case timeout
        /// The connection could not be made or was lost: refused, reset, closed without an answer, DNS.
        case connection
        /// TLS failed: the server's certificate did not verify, or the handshake was refused.
        case tls
        /// A 2xx answer whose body is not the JSON the API promises.
        case malformedResponse = "malformed-response"
        /// The answer was longer than the request allowed.
        case responseTooLarge = "response-too-large"
        /// The request itself is wrong (URL, header, method); it was not sent.
        case invalidRequest = "invalid-request"
        /// The client is misconfigured (e.g. the API key cannot be read).
        case configuration
        /// The engine was shut down before the exchange finished.
        case shutdown
        /// A streamed answer broke off: the server sent an `error` event, or the stream ended
        /// before `[DONE]` (a stream that stalls is a ``timeout``).
        case stream = "stream-error"
    }

    public var kind: Kind
    /// What failed, for a person.
    public var message: String
    /// The HTTP status, for ``Kind/http`` (and for malformed 2xx answers).
    public var httpStatus: Int?
    /// How long the server asked the client to wait (`retry-after-ms` / `retry-after`), if it did.
    public var retryAfter: Duration?
    /// The server's `x-request-id`, to quote to the provider.
    public var requestID: String?
    /// libcurl's CURLcode for transport failures.
    public var curlCode: Int?

    public init(
        _ kind: Kind, _ message: String, httpStatus: Int? = nil, retryAfter: Duration? = nil,
        requestID: String? = nil, curlCode: Int? = nil
    ) {
        self.kind = kind
        self.message = message
        self.httpStatus = httpStatus
        self.retryAfter = retryAfter
        self.requestID = requestID
        self.curlCode = curlCode
    }

    /// True when the same request may succeed later (see ``RetryPolicy/isTransient(_:)``).
    public var isTransient: Bool { RetryPolicy.isTransient(self) }

    /// Which retry budget this failure draws on (see ``RetryPolicy/cause(_:)``).
    public var cause: FailureCause { RetryPolicy.cause(self) }

    public var description: String {
        var s = "\(kind.rawValue): \(message)"
        if let requestID { s += " [request \(requestID)]" }
        return s
    }
}
