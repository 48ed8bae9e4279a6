import JSON

/// Reads a streamed chat completion (`stream: true`): the `text/event-stream` body, chunk by chunk,
/// as it arrives. Pure: bytes in, text deltas out, no I/O.
///
/// Each `data:` event is a `chat.completion.chunk` whose `choices[0].delta.content` is the next
/// piece of text; `finish_reason` comes in a late chunk; with `stream_options.include_usage` one
/// chunk with empty `choices` carries `usage`; `data: [DONE]` ends the stream. A server's `error`
/// event (or a chunk that is an `{"error": …}` object) and a chunk that is not JSON end it with an
/// ``LLMError``. The text is the concatenation of the deltas, byte for byte.
public struct ChatStreamDecoder: Sendable {
    public private(set) var content: String = ""
    public private(set) var contentBytes = 0
    public private(set) var finishReason: String?
    public private(set) var usage: TokenUsage?
    public private(set) var model: String?
    public private(set) var id: String?
    /// `data: [DONE]` arrived.
    public private(set) var done = false
    /// Data events read.
    public private(set) var chunks = 0
    public let maxContentBytes: Int
    let secrets: [String]
    var parser: SSEParser

    public init(maxContentBytes: Int = 8 << 20, maxLineBytes: Int = 1 << 20, secrets: [String] = []) {
        self.maxContentBytes = maxContentBytes
        self.secrets = secrets
        parser = SSEParser(maxLineBytes: maxLineBytes, maxEventBytes: maxLineBytes)
    }

    /// Feeds body bytes; calls `onDelta` with each non-empty text delta they complete.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, onDelta: (String) -> Void) throws(LLMError) {
        var failure: LLMError?
        // The parser is taken out while it runs, so that the events it emits can update the rest.
        var parser = self.parser
        defer { self.parser = parser }
        do {
            try parser.feed(bytes) { event in
                do throws(LLMError) {
                    if let delta = try self.consume(event), !delta.isEmpty { onDelta(delta) }
                    return true
                } catch {
                    failure = error
                    return false
                }
            }
        } catch {
            throw LLMError(.responseTooLarge, "the event stream broke a limit: \(error)")
        }
        if let failure { throw failure }
    }

    /// Convenience for arrays (tests): the deltas that `bytes` complete.
    public mutating func feed(_ bytes: [UInt8]) throws(LLMError) -> [String] {
        var out: [String] = []
        let result: Result<Void, LLMError> = bytes.withUnsafeBytes { raw in
            Result { () throws(LLMError) in try feed(raw) { out.append($0) } }
        }
        try result.get()
        return out
    }

    /// Reads one event; returns its text delta, if any.
    public mutating func consume(_ event: SSEEvent) throws(LLMError) -> String? {
        if done { return nil }  // nothing after [DONE] counts
        if event.event == "error" {
            let doc = try? JSONParser.parse(Array(event.data.utf8))
            let message = ChatCompletion.errorMessage(doc, body: Array(event.data.utf8), secrets: secrets) ?? "no message"
            throw LLMError(.stream, "the server sent an error event after \(chunks) chunks: \(message)")
        }
        if event.data == "[DONE]" {
            done = true
            return nil
        }
        chunks += 1
        let bytes = Array(event.data.utf8)
        let parsed: JSONValue
        do { parsed = try JSONParser.parse(bytes) } catch {
            throw LLMError(
                .malformedResponse,
                "chunk \(chunks) of the event stream is not JSON: \(error) (starts: \(ChatCompletion.excerpt(bytes, secrets: secrets)))")
        }
        guard case .object(let root) = parsed else {
            throw LLMError(.malformedResponse, "chunk \(chunks) of the event stream is \(parsed.typeName), not a JSON object")
        }
        if let error = root["error"] {
            let message = ChatCompletion.errorMessage(.object(["error": error]), body: bytes, secrets: secrets) ?? "no message"
            throw LLMError(.stream, "the server sent an error in chunk \(chunks): \(message)")
        }
        if id == nil, let i = root["id"]?.stringValue { id = i }
        if let m = root["model"]?.stringValue { model = m }
        if let u = root["usage"]?.objectValue {
            let prompt = u["prompt_tokens"]?.intValue ?? 0
            let completion = u["completion_tokens"]?.intValue ?? 0
            usage = TokenUsage(
                promptTokens: prompt, completionTokens: completion,
                totalTokens: u["total_tokens"]?.intValue ?? prompt + completion)
        }
        guard let first = root["choices"]?.arrayValue?.first?.objectValue else { return nil }
        if let reason = first["finish_reason"]?.stringValue { finishReason = reason }
        guard let delta = first["delta"]?.objectValue, case .string(let text)? = delta["content"] else { return nil }
        contentBytes += text.utf8.count
        guard contentBytes <= maxContentBytes else {
            throw LLMError(.responseTooLarge, "the streamed answer is longer than \(maxContentBytes) bytes")
        }
        content += text
        return text
    }

    /// The completion, once the body has ended. A stream that ended before `[DONE]` and without a
    /// `finish_reason` was cut off: a transient ``LLMError/Kind/stream`` error.
    public func completion(
        requestID: String? = nil, rateLimits: RateLimitSnapshot = RateLimitSnapshot(), httpStatus: Int = 200
    )
        throws(LLMError) -> ChatCompletion
    {
        guard done || finishReason != nil else {
            throw LLMError(
                .stream, "the event stream ended after \(chunks) chunks without [DONE] or a finish_reason (cut off)",
                httpStatus: httpStatus, requestID: requestID)
        }
        return ChatCompletion(
            content: content, finishReason: finishReason, usage: usage, model: model, id: id,
            requestID: requestID, rateLimits: rateLimits, httpStatus: httpStatus)
    }
}
