public import JSON

/// One message of a chat: a role (`system`, `user`, `assistant`, …) and its text.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: "system", content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: "user", content: content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: "assistant", content: content) }
}

/// The body of `POST {base}/chat/completions`.
public struct ChatRequest: Sendable, Equatable {
    public var model: String
    public var messages: [ChatMessage]
    /// `max_tokens`, if set.
    public var maxTokens: Int?
    /// `temperature`, if set.
    public var temperature: Double?
    /// Further members sent as they are (e.g. `user`, `metadata`, `max_completion_tokens`).
    /// They may not replace the members above.
    public var extra: JSONObject

    public init(
        model: String, messages: [ChatMessage], maxTokens: Int? = nil, temperature: Double? = nil,
        extra: JSONObject = JSONObject()
    ) {
        self.model = model
        self.messages = messages
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.extra = extra
    }

    /// A request of one user message, as a job's prompt becomes.
    public init(model: String, prompt: String, maxTokens: Int? = nil, temperature: Double? = nil) {
        self.init(model: model, messages: [.user(prompt)], maxTokens: maxTokens, temperature: temperature)
    }

    /// The JSON document sent.
    public var json: JSONValue {
        var body = JSONObject()
        body["model"] = .string(model)
        body["messages"] = .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) })
        if let maxTokens { body["max_tokens"] = .integer(maxTokens) }
        if let temperature { body["temperature"] = .double(temperature) }
        for member in extra.members where body[member.key] == nil {
            body[member.key] = member.value
        }
        return .object(body)
    }
}
