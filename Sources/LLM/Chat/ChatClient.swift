import JSON

/// A client of an OpenAI-compatible `POST {baseURL}/chat/completions` (OpenAI, vLLM, Ollama,
/// llama.cpp server, LiteLLM…), one attempt per call. Retries are the caller's, with ``RetryPolicy``.
public struct ChatClient: Sendable {
    public struct Configuration: Sendable {
        /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
        public var baseURL: String
        /// Sent as `Authorization: Bearer …` when set.
        public var apiKey: APIKey?
        public var connectTimeout: Duration
        /// The longest one call may take (answers from large models can take minutes).
        public var timeout: Duration
        public var maxResponseBytes: Int
        /// Further headers for every call (e.g. `OpenAI-Organization`).
        public var headers: HTTPHeaders
        /// A streamed call fails (``LLMError/Kind/timeout``) when, once its answer has begun, no
        /// byte of it arrives for this long (``HTTPRequest/idleTimeout``: kept per chunk to the
        /// millisecond). The wait for the answer's first byte is bounded by ``timeout`` alone,
        /// which still bounds the whole call.
        public var streamIdleTimeout: Duration = .seconds(60)

        public init(
            baseURL: String, apiKey: APIKey? = nil, connectTimeout: Duration = .seconds(10), timeout: Duration = .seconds(600),
            maxResponseBytes: Int = 8 << 20, headers: HTTPHeaders = [:]
        ) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.connectTimeout = connectTimeout
            self.timeout = timeout
            self.maxResponseBytes = maxResponseBytes
            self.headers = headers
        }

        /// `{baseURL}/chat/completions`, with one slash between.
        public var endpoint: String {
            var base = baseURL
            while base.hasSuffix("/") { base.removeLast() }
            return base + "/chat/completions"
        }
    }

    public let configuration: Configuration
    public let engine: CurlEngine

    public init(configuration: Configuration, engine: CurlEngine) {
        self.configuration = configuration
        self.engine = engine
    }

    /// Sends `request` once.
    /// - Throws: ``LLMError`` (check ``LLMError/isTransient`` or ask a ``RetryPolicy``), or
    ///   `CancellationError` when the calling task is cancelled.
    public func complete(_ request: ChatRequest) async throws -> ChatCompletion {
        let response = try await engine.perform(httpRequest(for: request))
        return try completion(from: response)
    }

    /// Reads the response to a request made with ``httpRequest(for:)``, as ``complete(_:)`` does.
    public func completion(from response: HTTPResponse) throws(LLMError) -> ChatCompletion {
        try ChatCompletion.parse(response, secrets: configuration.apiKey.map { [$0.value] } ?? [])
    }

    /// Sends `request` once with `stream: true` and `stream_options.include_usage`, calling
    /// `onDelta` with each piece of text as it arrives (on the engine's thread: it must not block).
    ///
    /// A server that ignores `stream` and answers with one JSON body is read as ``complete(_:)``
    /// reads it, and its whole text is given to `onDelta` once. Either way the completion's
    /// content is exactly the concatenation of the deltas given.
    public func stream(_ request: ChatRequest, onDelta: @escaping @Sendable (String) -> Void) async throws -> ChatCompletion {
        let receiver = ChatStreamReceiver(client: self, onDelta: onDelta)
        let response: HTTPResponse
        do {
            response = try await engine.perform(streamingRequest(for: request, receiver: receiver))
        } catch {
            if let failure = receiver.failure { throw failure }
            throw error
        }
        return try receiver.completion(from: response)
    }

    /// The HTTP request ``stream(_:onDelta:)`` sends.
    func streamingRequest(for request: ChatRequest, receiver: ChatStreamReceiver) -> HTTPRequest {
        var request = request
        request.extra["stream"] = .bool(true)
        request.extra["stream_options"] = .object(["include_usage": .bool(true)])
        var http = httpRequest(for: request)
        http.headers.set("Accept", "text/event-stream, application/json")
        http.bodyStream = receiver
        http.idleTimeout = configuration.streamIdleTimeout
        return http
    }

    /// A streamed call whose deltas are delivered to `onDelta`: the request to send, and, once
    /// the engine has answered it, the completion (``StreamedCall/completion(from:)``).
    public func streamedCall(_ request: ChatRequest, onDelta: @escaping @Sendable (String) -> Void) -> StreamedCall {
        let receiver = ChatStreamReceiver(client: self, onDelta: onDelta)
        return StreamedCall(request: streamingRequest(for: request, receiver: receiver), receiver: receiver)
    }

    /// The HTTP request ``complete(_:)`` sends.
    public func httpRequest(for request: ChatRequest) -> HTTPRequest {
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Accept": "application/json"]
        if let key = configuration.apiKey { headers.add("Authorization", "Bearer \(key.value)") }
        for field in configuration.headers { headers.set(field.name, field.value) }
        return HTTPRequest(
            method: "POST", url: configuration.endpoint, headers: headers, body: request.json.serialized(),
            connectTimeout: configuration.connectTimeout, timeout: configuration.timeout,
            maxResponseBytes: configuration.maxResponseBytes)
    }
}

/// A streamed chat call, in two halves (see ``ChatClient/streamedCall(_:onDelta:)``), so that a
/// caller can hand the request to ``CurlEngine/perform(_:)`` itself.
public struct StreamedCall: Sendable {
    public var request: HTTPRequest
    let receiver: ChatStreamReceiver

    /// The completion from the engine's result; the stream's own failure (an `error` event, a
    /// chunk that is not JSON) wins over the transport error it caused.
    public func completion(from result: Result<HTTPResponse, any Error>) throws -> ChatCompletion {
        switch result {
        case .success(let response): return try receiver.completion(from: response)
        case .failure(let error):
            if let failure = receiver.failure { throw failure }
            throw error
        }
    }
}

/// Takes a `text/event-stream` 2xx body on the engine's thread and decodes it as it arrives.
/// Touched by the engine's thread during the transfer, and by the caller only after it ended.
final class ChatStreamReceiver: HTTPBodyStream, @unchecked Sendable {
    private var decoder: ChatStreamDecoder
    private(set) var failure: LLMError?
    private var streamed = false
    private let onDelta: @Sendable (String) -> Void
    private let client: ChatClient

    init(client: ChatClient, onDelta: @escaping @Sendable (String) -> Void) {
        self.client = client
        self.onDelta = onDelta
        decoder = ChatStreamDecoder(
            maxContentBytes: client.configuration.maxResponseBytes,
            secrets: client.configuration.apiKey.map { [$0.value] } ?? [])
    }

    func accept(status: Int, headers: HTTPHeaders) -> Bool {
        guard (200..<300).contains(status), let type = headers["content-type"]?.lowercased(), type.hasPrefix("text/event-stream") else {
            return false
        }
        streamed = true
        return true
    }

    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        do {
            try decoder.feed(bytes, onDelta: onDelta)
            return true
        } catch {
            failure = error
            return false
        }
    }

    func completion(from response: HTTPResponse) throws(LLMError) -> ChatCompletion {
        if let failure { throw failure }
        guard streamed else {
            // The server answered in one body (it ignored `stream`, or it is an error): as today.
            let completion = try client.completion(from: response)
            if let content = completion.content, !content.isEmpty { onDelta(content) }
            return completion
        }
        return try decoder.completion(
            requestID: response.headers["x-request-id"], rateLimits: RateLimitSnapshot(headers: response.headers),
            httpStatus: response.status)
    }
}
