import JSON

/// Token counts from a response's `usage`.
public struct TokenUsage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens
    }
}

/// What a successful chat-completions call returned.
public struct ChatCompletion: Sendable, Equatable {
    /// `choices[0].message.content`; nil when the model sent none (e.g. a refusal or tool call).
    public var content: String?
    /// `choices[0].finish_reason`: `stop`, `length`, `tool_calls`, `content_filter`, …
    public var finishReason: String?
    public var usage: TokenUsage?
    /// The model that answered, as the server names it.
    public var model: String?
    /// The completion's `id` (e.g. `chatcmpl-…`).
    public var id: String?
    /// The `x-request-id` header.
    public var requestID: String?
    /// The `x-ratelimit-*` headers.
    public var rateLimits: RateLimitSnapshot
    public var httpStatus: Int

    public init(
        content: String?, finishReason: String? = nil, usage: TokenUsage? = nil, model: String? = nil, id: String? = nil,
        requestID: String? = nil, rateLimits: RateLimitSnapshot = RateLimitSnapshot(), httpStatus: Int = 200
    ) {
        self.content = content
        self.finishReason = finishReason
        self.usage = usage
        self.model = model
        self.id = id
        self.requestID = requestID
        self.rateLimits = rateLimits
        self.httpStatus = httpStatus
    }

    /// Reads a chat-completions response, or says what is wrong with it.
    ///
    /// A non-2xx status gives an ``LLMError/Kind/http`` error with the server's own message and its
    /// `retry-after`; a 2xx whose body is not a chat completion gives
    /// ``LLMError/Kind/malformedResponse``. `secrets` are blanked out of any text quoted from the body.
    public static func parse(
        _ response: HTTPResponse, secrets: [String] = [], now: Double = RetryAfter.wallClockSeconds()
    ) throws(LLMError) -> ChatCompletion {
        let requestID = response.headers["x-request-id"]
        let parsed: Result<JSONValue, JSONParseError> = Result { () throws(JSONParseError) in try JSONParser.parse(response.body) }
        guard response.isSuccess else {
            let serverMessage = errorMessage(try? parsed.get(), body: response.body, secrets: secrets)
            throw LLMError(
                .http, "HTTP \(response.status)" + (serverMessage.map { ": \($0)" } ?? ""),
                httpStatus: response.status, retryAfter: RetryAfter.parse(response.headers, now: now), requestID: requestID)
        }
        func malformed(_ what: String) -> LLMError {
            LLMError(.malformedResponse, what, httpStatus: response.status, requestID: requestID)
        }
        let root: JSONObject
        switch parsed {
        case .failure(let error):
            throw malformed("the response body is not JSON: \(error) (body starts: \(excerpt(response.body, secrets: secrets)))")
        case .success(.object(let object)):
            root = object
        case .success(let other):
            throw malformed("the response body is \(other.typeName), not a JSON object")
        }
        guard let choices = root["choices"]?.arrayValue else {
            let serverMessage = errorMessage(.object(root), body: response.body, secrets: secrets)
            throw malformed("the response has no `choices` array" + (serverMessage.map { " (server says: \($0))" } ?? ""))
        }
        guard let first = choices.first?.objectValue else { throw malformed("`choices` is empty or not objects") }
        guard let message = first["message"]?.objectValue else { throw malformed("`choices[0].message` is missing") }
        let content: String?
        switch message["content"] {
        case .string(let s)?: content = s
        case .null?, nil: content = nil
        case let other?: throw malformed("`choices[0].message.content` is \(other.typeName), not a string")
        }
        var usage: TokenUsage?
        if let u = root["usage"]?.objectValue {
            let prompt = u["prompt_tokens"]?.intValue ?? 0
            let completion = u["completion_tokens"]?.intValue ?? 0
            usage = TokenUsage(
                promptTokens: prompt, completionTokens: completion, totalTokens: u["total_tokens"]?.intValue ?? prompt + completion)
        }
        return ChatCompletion(
            content: content,
            finishReason: first["finish_reason"]?.stringValue,
            usage: usage,
            model: root["model"]?.stringValue,
            id: root["id"]?.stringValue,
            requestID: requestID,
            rateLimits: RateLimitSnapshot(headers: response.headers),
            httpStatus: response.status
        )
    }

    /// The server's explanation: `error.message` (OpenAI and most others), `error` as a string,
    /// `message`, or the start of the body.
    static func errorMessage(_ document: JSONValue?, body: [UInt8], secrets: [String]) -> String? {
        var text: String?
        if let error = document?["error"] {
            text = error["message"]?.stringValue ?? error.stringValue
        }
        if text == nil { text = document?["message"]?.stringValue ?? document?["detail"]?.stringValue }
        if text == nil, !body.isEmpty { text = excerpt(body, secrets: secrets) }
        return text.map { scrub(String($0.prefix(300)), secrets: secrets) }
    }

    static func excerpt(_ body: [UInt8], secrets: [String]) -> String {
        let head = String(decoding: body.prefix(120), as: UTF8.self)
        let printable = String(head.unicodeScalars.map { $0.value < 0x20 ? " " : Character($0) })
        return scrub(printable + (body.count > 120 ? "…" : ""), secrets: secrets)
    }

    static func scrub(_ text: String, secrets: [String]) -> String {
        var out = text
        for secret in secrets where secret.count >= 4 {
            out = out.replacingAll(secret, with: "[redacted]")
        }
        return out
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension StringProtocol {
    /// The first range of `target` (without Foundation).
    func range(of target: String) -> Range<Index>? {
        guard !target.isEmpty else { return nil }
        var start = startIndex
        while start < endIndex {
            if self[start...].hasPrefix(target) {
                return start..<index(start, offsetBy: target.count)
            }
            start = index(after: start)
        }
        return nil
    }
}
