public import Spool

public import enum LLM.FailureCause
public import struct LLM.LLMError

/// What a call to the LLM produced.
public enum CallOutcome: Sendable {
    case answer(Answer)
    case failure(CallFailure)
}

/// A failed call: what went wrong, which retry budget it draws on, and when the provider asked us to try again.
public struct CallFailure: Error, Sendable, Equatable {
    /// What went wrong, as a short stable word (its raw value: the `error.kind` of a dead letter,
    /// the `kind` label of the metrics).
    public enum Kind: String, Sendable, Equatable, CaseIterable, CustomStringConvertible {
        /// The transport failures of ``LLMError/Kind``, one for one.
        case http, timeout, connection, tls
        case malformedResponse = "malformed-response"
        case responseTooLarge = "response-too-large"
        case invalidRequest = "invalid-request"
        case configuration, shutdown
        /// A streamed answer broke off (an `error` event, an end before `[DONE]`); a stall is a `timeout`.
        case stream = "stream-error"
        /// The call's task was cancelled: the worker is stopping (its job is given back, not failed).
        case cancelled
        /// The job's `deadline` passed before the call could start.
        case deadlinePassed = "deadline-passed"

        public var description: String { rawValue }

        public init(_ kind: LLMError.Kind) {
            switch kind {
            case .http: self = .http
            case .timeout: self = .timeout
            case .connection: self = .connection
            case .tls: self = .tls
            case .malformedResponse: self = .malformedResponse
            case .responseTooLarge: self = .responseTooLarge
            case .invalidRequest: self = .invalidRequest
            case .configuration: self = .configuration
            case .shutdown: self = .shutdown
            case .stream: self = .stream
            }
        }
    }

    public var kind: Kind
    public var message: String
    public var httpStatus: Int?
    public var cause: FailureCause
    /// The provider's `retry-after-ms` / `retry-after`, in milliseconds.
    public var retryAfterMs: Int64?

    public init(kind: Kind, message: String, httpStatus: Int? = nil, cause: FailureCause, retryAfterMs: Int64? = nil) {
        self.kind = kind
        self.message = message
        self.httpStatus = httpStatus
        self.cause = cause
        self.retryAfterMs = retryAfterMs
    }

    /// Whether trying again may help (a rate limit or a transient failure).
    public var transient: Bool { cause != .permanent }

    public var failure: Failure { Failure(kind: kind.rawValue, message: message, httpStatus: httpStatus) }
}

/// Provider-wide pacing learned from `x-ratelimit-*` headers.
public struct ProviderBudget: Sendable, Equatable {
    public var remainingRequests: Int?
    public var remainingTokens: Int?
    /// Milliseconds until the request and token windows reset.
    public var resetRequestsMs: Int64?
    public var resetTokensMs: Int64?

    public init(remainingRequests: Int? = nil, remainingTokens: Int? = nil, resetRequestsMs: Int64? = nil, resetTokensMs: Int64? = nil) {
        self.remainingRequests = remainingRequests
        self.remainingTokens = remainingTokens
        self.resetRequestsMs = resetRequestsMs
        self.resetTokensMs = resetTokensMs
    }
}

/// Where a streamed answer's text goes as it is written (the job's partial file). Called from any
/// thread (the HTTP engine's), so it must not block for long.
public protocol AnswerProgress: Sendable {
    func append(_ text: String)
}

extension PartialWriter: AnswerProgress {}

/// Something that answers jobs: an OpenAI-compatible endpoint, or the built-in echo.
public protocol Responder: Sendable {
    /// A short description for logs (never contains a key).
    var description: String { get }
    /// Calls the model for one job. Must return (not throw) on every failure, and return
    /// promptly with a `cancelled` failure when the task is cancelled.
    func respond(to job: Job, model: String, maxTokens: Int?) async -> (CallOutcome, ProviderBudget?)
    /// As above, streaming: each piece of text goes to `progress` as it comes (when it is not nil),
    /// and an answer's `response` is exactly the concatenation of those pieces. A responder that
    /// cannot stream ignores `progress` (the default).
    func respond(to job: Job, model: String, maxTokens: Int?, progress: (any AnswerProgress)?) async -> (CallOutcome, ProviderBudget?)
    /// Releases connections and threads.
    func shutdown() async
}

extension Responder {
    public func respond(
        to job: Job, model: String, maxTokens: Int?, progress: (any AnswerProgress)?
    ) async
        -> (CallOutcome, ProviderBudget?)
    {
        let result = await respond(to: job, model: model, maxTokens: maxTokens)
        if let progress, case .answer(let a) = result.0 { progress.append(a.response) }
        return result
    }
}

/// `builtin:echo` — answers every job with its own prompt, after an optional delay. It is not
/// a model; it exists so the whole pipeline runs with no network and no key, and says so.
public struct EchoResponder: Responder {
    public static let label = "builtin:echo (not a model: repeats the prompt)"
    public let delayMs: Int

    public init(delayMs: Int = 0) { self.delayMs = delayMs }

    public var description: String { "builtin:echo" + (delayMs > 0 ? "?delay=\(delayMs)ms" : "") }

    public func respond(to job: Job, model: String, maxTokens: Int?) async -> (CallOutcome, ProviderBudget?) {
        await respond(to: job, model: model, maxTokens: maxTokens, progress: nil)
    }

    /// Streaming, the echo comes word by word (each word with the spaces before it), the delay
    /// spread evenly over the words; without `progress`, all at once after the delay.
    public func respond(
        to job: Job, model: String, maxTokens: Int?, progress: (any AnswerProgress)?
    ) async
        -> (CallOutcome, ProviderBudget?)
    {
        let started = Timestamp.now()
        let text = Prompt.flatten(job)
        let words = progress == nil ? [Substring(text)] : Self.words(text)
        let pause = delayMs > 0 ? max(1, delayMs / max(1, words.count)) : 0
        for word in words {
            if pause > 0 {
                do { try await Task.sleep(for: .milliseconds(pause)) } catch {
                    return (.failure(CallFailure(kind: .cancelled, message: "shutting down", cause: .transient)), nil)
                }
            }
            progress?.append(String(word))
        }
        let promptTokens = Prompt.estimateTokens(text)
        return (
            .answer(
                Answer(
                    response: text, model: EchoResponder.label, finishReason: "stop",
                    usage: Usage(promptTokens: promptTokens, completionTokens: promptTokens),
                    startedAt: started)), nil
        )
    }

    public func shutdown() async {}

    /// `text` cut before each run of spaces that follows a word: concatenated, the pieces are `text`.
    static func words(_ text: String) -> [Substring] {
        var pieces: [Substring] = []
        var start = text.startIndex
        var i = text.startIndex
        var inWord = false
        while i < text.endIndex {
            let space = text[i] == " " || text[i] == "\n"
            if space && inWord && i > start {
                pieces.append(text[start..<i])
                start = i
            }
            inWord = !space
            i = text.index(after: i)
        }
        if start < text.endIndex { pieces.append(text[start...]) }
        return pieces
    }
}

/// How a job becomes chat messages, and a cheap token estimate.
public enum Prompt {
    /// The job's messages, then its prompt as a last user message.
    public static func messages(_ job: Job) -> [Job.Message] {
        var m = job.messages ?? []
        if let p = job.prompt { m.append(Job.Message(role: "user", content: p)) }
        return m
    }

    /// The text of all messages, for the echo responder.
    public static func flatten(_ job: Job) -> String {
        messages(job).map(\.content).joined(separator: "\n")
    }

    /// About four bytes of English per token; never less than one token per message.
    public static func estimateTokens(_ text: String) -> Int { max(1, (text.utf8.count + 3) / 4) }

    /// Tokens to reserve before a call: the prompt's estimate plus the most it may generate.
    public static func reservation(_ job: Job, defaultMaxTokens: Int) -> Int {
        messages(job).reduce(0) { $0 + estimateTokens($1.content) + 4 } + (job.maxTokens ?? defaultMaxTokens)
    }
}
