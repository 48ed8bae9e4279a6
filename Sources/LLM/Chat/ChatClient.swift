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
