import JSON
public import LLM
public import Spool

/// Answers jobs through an OpenAI-compatible `POST {base}/chat/completions`.
public struct ChatResponder: Responder {
    let client: ChatClient
    let engine: CurlEngine

    public init(client: ChatClient, engine: CurlEngine) {
        self.client = client
        self.engine = engine
    }

    public var description: String { redactedURL(client.configuration.baseURL) }

    public func respond(to job: Job, model: String, maxTokens: Int?) async -> (CallOutcome, ProviderBudget?) {
        // This frame stays on the task's stack for the whole call (thousands at once): it holds the
        // HTTP request and response only; building the one and reading the other happen in
        // functions of their own. (ChatClient.complete, spelled out, to save its frame.)
        let started = Timestamp.now()
        let request = Self.request(client, job, model: model, maxTokens: maxTokens)
        let response: Result<HTTPResponse, any Error>
        do {
            // Handed over, not kept alive here: the engine holds the call's only copy of the body.
            response = .success(try await client.engine.perform(consume request))
        } catch {
            response = .failure(error)
        }
        return Self.outcome(response, client: client, model: model, startedAt: started)
    }

    /// Streaming (`progress` set): asks for `stream: true` with usage, and gives `progress` each
    /// delta from the HTTP engine's thread. A server that sends no usage gets an estimate, marked so.
    public func respond(
        to job: Job, model: String, maxTokens: Int?, progress: (any AnswerProgress)?
    ) async
        -> (CallOutcome, ProviderBudget?)
    {
        guard let progress else { return await respond(to: job, model: model, maxTokens: maxTokens) }
        let started = Timestamp.now()
        let call = Self.streamedCall(client, job, model: model, maxTokens: maxTokens, progress: progress)
        let response: Result<HTTPResponse, any Error>
        do {
            response = .success(try await client.engine.perform(call.request))
        } catch {
            response = .failure(error)
        }
        return Self.streamedOutcome(response, call: call, job: job, model: model, startedAt: started)
    }

    @inline(never)
    static func streamedCall(
        _ client: ChatClient, _ job: Job, model: String, maxTokens: Int?, progress: any AnswerProgress
    )
        -> StreamedCall
    {
        client.streamedCall(
            ChatRequest(
                model: model,
                messages: Prompt.messages(job).map { ChatMessage(role: $0.role, content: $0.content) },
                maxTokens: maxTokens, temperature: job.temperature, extra: requestOptions(job))
        ) { progress.append($0) }
    }

    @inline(never)
    static func streamedOutcome(
        _ response: Result<HTTPResponse, any Error>, call: StreamedCall, job: Job, model: String,
        startedAt started: String
    ) -> (CallOutcome, ProviderBudget?) {
        var result = Result { try call.completion(from: response) }
        if case .success(var c) = result, c.usage == nil {
            // No usage from the server: estimate, so the tenant's budget is still charged; the result says so.
            let prompt = Prompt.messages(job).reduce(0) { $0 + Prompt.estimateTokens($1.content) }
            let completion = Prompt.estimateTokens(c.content ?? "")
            c.usage = TokenUsage(promptTokens: prompt, completionTokens: completion, totalTokens: prompt + completion)
            result = .success(c)
            var outcome = outcome(result, model: model, startedAt: started)
            if case .answer(var a) = outcome.0 {
                a.usage?.estimated = true
                outcome.0 = .answer(a)
            }
            return outcome
        }
        return outcome(result, model: model, startedAt: started)
    }

    @inline(never)
    static func request(_ client: ChatClient, _ job: Job, model: String, maxTokens: Int?) -> HTTPRequest {
        client.httpRequest(
            for: ChatRequest(
                model: model,
                messages: Prompt.messages(job).map { ChatMessage(role: $0.role, content: $0.content) },
                maxTokens: maxTokens, temperature: job.temperature, extra: requestOptions(job)))
    }

    /// Members of the job's `request` object (a Batch API line's other request fields, docs/batch.md),
    /// sent as they are — but never ones that would change how the answer is read or multiply it.
    static func requestOptions(_ job: Job) -> JSONObject {
        guard case .object(let o)? = job.extra.first(where: { $0.key == "request" })?.value else { return JSONObject() }
        return JSONObject(o.members.filter { !["stream", "stream_options", "n", "model", "messages"].contains($0.key) })
    }

    @inline(never)
    static func outcome(
        _ response: Result<HTTPResponse, any Error>, client: ChatClient, model: String, startedAt started: String
    )
        -> (CallOutcome, ProviderBudget?)
    {
        outcome(
            response.flatMap { r in Result { () throws(LLMError) in try client.completion(from: r) }.mapError { $0 as any Error } },
            model: model, startedAt: started)
    }

    @inline(never)
    static func outcome(
        _ result: Result<ChatCompletion, any Error>, model: String, startedAt started: String
    )
        -> (CallOutcome, ProviderBudget?)
    {
        switch result {
        case .success(let c):
            guard let content = c.content else {
                return (
                    .failure(
                        CallFailure(
                            kind: .malformedResponse, message: "the completion has no message content",
                            httpStatus: c.httpStatus, cause: .permanent)), ChatResponder.budget(c.rateLimits)
                )
            }
            let usage = c.usage.map { Usage(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens, totalTokens: $0.totalTokens) }
            return (
                .answer(
                    Answer(
                        response: content, model: c.model ?? model, finishReason: c.finishReason, usage: usage,
                        startedAt: started)), ChatResponder.budget(c.rateLimits)
            )
        case .failure(let e as LLMError):
            return (
                .failure(
                    CallFailure(
                        kind: CallFailure.Kind(e.kind), message: e.message, httpStatus: e.httpStatus, cause: e.cause,
                        retryAfterMs: e.retryAfter.map(ChatResponder.milliseconds))), nil
            )
        case .failure:
            return (.failure(CallFailure(kind: .cancelled, message: "the call was cancelled (worker stopping)", cause: .transient)), nil)
        }
    }

    public func shutdown() async { engine.shutdown() }

    static func milliseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1000 + atto / 1_000_000_000_000_000
    }

    static func budget(_ r: RateLimitSnapshot) -> ProviderBudget? {
        if r.requests.isEmpty && r.tokens.isEmpty { return nil }
        return ProviderBudget(
            remainingRequests: r.requests.remaining, remainingTokens: r.tokens.remaining,
            resetRequestsMs: r.requests.reset.map(milliseconds), resetTokensMs: r.tokens.reset.map(milliseconds))
    }
}
