import CCurl

extension LLMError {
    /// The error for a transfer that ended without a complete HTTP response.
    /// `detail` is libcurl's error buffer (it names hosts, never headers).
    static func transport(_ code: CURLcode, detail: String, request: HTTPRequest, tooLarge: Bool) -> LLMError {
        let what = "\(request.method) \(redactedURL(request.url))"
        let reason = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let curlCode = Int(code.rawValue)
        let kind: Kind
        let message: String
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            kind = .timeout
            message = "\(what) timed out (connect timeout \(request.connectTimeout), total \(request.timeout)): \(reason)"
        case CURLE_WRITE_ERROR where tooLarge:
            kind = .responseTooLarge
            message = "the answer to \(what) is longer than \(request.maxResponseBytes) bytes"
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR:
            kind = .tls
            message = "TLS failed for \(what): \(reason) (check the server's certificate or the CA bundle)"
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_BAD_FUNCTION_ARGUMENT:
            kind = .invalidRequest
            message = "libcurl refused \(what): \(reason)"
        case CURLE_GOT_NOTHING:
            kind = .connection
            message = "the server closed the connection without answering \(what): \(reason)"
        default:
            kind = .connection
            message = "\(what) failed: \(reason) (curl error \(curlCode))"
        }
        return LLMError(kind, message, curlCode: curlCode)
    }

    /// The error for a streamed transfer the engine ended because no body byte came for its
    /// ``HTTPRequest/idleTimeout`` (a timeout, so retried as one). It carries libcurl's timeout code.
    static func idle(_ request: HTTPRequest) -> LLMError {
        let what = "\(request.method) \(redactedURL(request.url))"
        return LLMError(
            .timeout, "\(what): no byte of the streamed answer for \(request.idleTimeout ?? .zero) (the stream's idle timeout)",
            curlCode: Int(CURLE_OPERATION_TIMEDOUT.rawValue))
    }
}
