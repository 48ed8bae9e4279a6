public import JSON

/// Token counts reported by the LLM.
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    /// The provider sent no usage (a stream without `include_usage` support): these are llmspool's
    /// estimate (about 4 bytes a token), written as `"estimated": true`.
    public var estimated: Bool

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil, estimated: Bool = false) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens ?? promptTokens + completionTokens
        self.estimated = estimated
    }

    public func json() -> JSONValue {
        var o: JSONObject = [
            "promptTokens": .integer(promptTokens), "completionTokens": .integer(completionTokens),
            "totalTokens": .integer(totalTokens),
        ]
        if estimated { o["estimated"] = .bool(true) }
        return .object(o)
    }
}

/// What a worker learned from the LLM; the spool adds the job's own fields to make the result document.
public struct Answer: Sendable, Equatable {
    public var response: String
    public var model: String?
    public var finishReason: String?
    public var usage: Usage?
    /// When the call that produced this answer started (RFC 3339); defaults to the claim time.
    public var startedAt: String?
    /// Where the answer came from when not from a live call (the result's `source` member),
    /// e.g. `{"kind": "provider-batch", "batchId": …}`.
    public var source: JSONValue?

    public init(
        response: String, model: String? = nil, finishReason: String? = nil, usage: Usage? = nil, startedAt: String? = nil,
        source: JSONValue? = nil
    ) {
        self.response = response
        self.model = model
        self.finishReason = finishReason
        self.usage = usage
        self.startedAt = startedAt
        self.source = source
    }
}

/// Why a job failed for good. `kind` is a short stable word (`http`, `timeout`, `invalid-job`, …).
public struct Failure: Sendable, Equatable {
    public var kind: String
    public var message: String
    public var httpStatus: Int?

    public init(kind: String, message: String, httpStatus: Int? = nil) {
        self.kind = kind
        self.message = message
        self.httpStatus = httpStatus
    }

    public func json() -> JSONValue {
        var o: JSONObject = ["kind": .string(kind), "message": .string(message)]
        if let httpStatus { o["httpStatus"] = .integer(httpStatus) }
        return .object(o)
    }
}

enum Documents {
    /// The result document written to `done/ID.json` (a superset of Spring's `JobResult {jobId, response}`).
    static func result(id: String, job: Job, answer: Answer, claimedAt: String) -> JSONValue {
        var o: JSONObject = ["jobId": .string(id), "status": .string("done"), "response": .string(answer.response)]
        if let m = answer.model ?? job.model { o["model"] = .string(m) }
        if let f = answer.finishReason { o["finishReason"] = .string(f) }
        if let u = answer.usage { o["usage"] = u.json() }
        o["attempts"] = .integer(job.attempts + 1)
        if let u = job.userId { o["userId"] = .string(u) }
        if let t = job.tenantId { o["tenantId"] = .string(t) }
        if let s = job.submittedAt { o["submittedAt"] = .string(s) }
        o["startedAt"] = .string(answer.startedAt ?? claimedAt)
        o["finishedAt"] = .string(Timestamp.now())
        if let s = answer.source { o["source"] = s }
        o["job"] = job.json()
        return .object(o)
    }

    /// The dead letter written to `failed/KEY.json`.
    static func deadLetter(
        id: String?, error: Failure, history: [JSONValue], job: Job?, original: JSONValue?
    ) -> JSONValue {
        var o = JSONObject()
        if let id { o["jobId"] = .string(id) }
        o["status"] = .string("failed")
        o["error"] = error.json()
        o["history"] = .array(history)
        if let job {
            if let u = job.userId { o["userId"] = .string(u) }
            if let t = job.tenantId { o["tenantId"] = .string(t) }
            o["job"] = job.json()
        }
        if let original { o["original"] = original }
        o["failedAt"] = .string(Timestamp.now())
        return .object(o)
    }

    static func event(_ kind: String, _ message: String) -> JSONValue {
        .object([
            "at": .string(Timestamp.now()), "kind": .string(kind), "message": .string(message),
            "host": .string(Sys.hostName()), "pid": .integer(Int(Sys.processID())),
        ])
    }
}
