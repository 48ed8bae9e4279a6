public import JSON

extension Job {
    /// One chat message of a job (the LLM module has its own request type; the worker maps one to the other).
    public struct Message: Sendable, Equatable {
        public static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool"]
        public var role: String
        public var content: String

        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }
}

/// A job's own retry settings (the `retry` member), over the worker's.
public struct JobRetry: Sendable, Equatable {
    /// Most calls that may fail transiently before the job is dead-lettered (1–100).
    public var maxAttempts: Int?
    /// How long after its first attempt the job may still be retried, in milliseconds (1 ms to 7 days).
    public var timeBudgetMs: Int64?

    public init(maxAttempts: Int? = nil, timeBudgetMs: Int64? = nil) {
        self.maxAttempts = maxAttempts
        self.timeBudgetMs = timeBudgetMs
    }

    public static let maxTimeBudgetSeconds = 7 * 86_400

    /// Reads `{"maxAttempts": N, "timeBudgetSeconds": S}`; every member is optional, no other is allowed.
    init(json raw: JSONValue) throws(DocumentError) {
        guard case .object(let o) = raw else { throw DocumentError(field: "retry", "expected an object, found \(raw.typeName)") }
        var d = FieldReader(o, prefix: "retry.")
        maxAttempts = try d.int("maxAttempts", in: 1...100)
        if let b = d.take("timeBudgetSeconds"), b != .null {
            guard case .number = b, let seconds = b.doubleValue, seconds.isFinite else {
                throw DocumentError(field: "retry.timeBudgetSeconds", "expected a number of seconds, found \(b.typeName)")
            }
            guard seconds >= 0.001, seconds <= Double(JobRetry.maxTimeBudgetSeconds) else {
                throw DocumentError(field: "retry.timeBudgetSeconds", "must be from 0.001 to \(JobRetry.maxTimeBudgetSeconds) (7 days)")
            }
            timeBudgetMs = Int64((seconds * 1000).rounded())
        }
        if let unknown = d.remaining.first {
            throw DocumentError(field: "retry." + unknown.key, "unknown field (allowed: maxAttempts, timeBudgetSeconds)")
        }
    }

    func json() -> JSONValue {
        var o = JSONObject()
        if let maxAttempts { o["maxAttempts"] = .integer(maxAttempts) }
        if let timeBudgetMs { o["timeBudgetSeconds"] = timeBudgetMs % 1000 == 0 ? .integer(Int(timeBudgetMs / 1000)) : .double(Double(timeBudgetMs) / 1000) }
        return .object(o)
    }
}

/// A job document (a superset of Spring Cloud Stream's `JobEvent {jobId, prompt, userId}`).
///
/// Known fields are validated strictly. Unknown top-level fields are kept verbatim and carried
/// into the result, never interpreted — except a near miss of a known name (`max_tokens`,
/// `JobID`), which is refused so a typo cannot silently drop a setting.
public struct Job: Sendable, Equatable {
    public var jobId: String?
    public var prompt: String?
    public var messages: [Message]?
    public var userId: String?
    public var tenantId: String?
    public var model: String?
    public var maxTokens: Int?
    public var temperature: Double?
    public var metadata: JSONObject?
    public var submittedAt: String?
    /// No call of this job starts after this RFC 3339 time; a job not answered by then is dead-lettered.
    public var deadline: String?
    /// This job's retry settings over the worker's.
    public var retry: JobRetry?
    /// Whether the answer is streamed as it is written (the partial file beside the claim, the
    /// CGI's `delta` events). Absent means false.
    public var stream: Bool = false
    /// Claims of this job that ended without an answer (its worker died). Absent means 0.
    public var attempts: Int = 0
    /// What happened to earlier claims and attempts, oldest first; written by llmspool.
    public var history: [JSONValue] = []
    /// Unknown top-level members, kept in order.
    public var extra: [JSONObject.Member] = []

    public init(prompt: String? = nil, messages: [Message]? = nil) {
        self.prompt = prompt
        self.messages = messages
    }

    static let knownFields: [String] = [
        "jobId", "prompt", "messages", "userId", "tenantId", "model", "maxTokens", "temperature",
        "metadata", "submittedAt", "deadline", "retry", "attempts", "history", "stream",
    ]
    private static let knownFieldSet = Set(knownFields)
    /// Each known field by its folded form, to find near misses with one lookup per unknown key.
    private static let knownByFolded = Dictionary(knownFields.map { (fold($0), $0) }, uniquingKeysWith: { a, _ in a })

    /// The id a job has in a spool: its `jobId`, else its file name without `.json`.
    public static func id(fromFileName name: String) -> String {
        name.hasSuffix(".json") ? String(name.dropLast(5)) : name
    }

    /// Decodes and validates a job. Every error names the field at fault.
    public init(json: JSONValue, limits: Limits = .default) throws(DocumentError) {
        guard case .object(let object) = json else {
            throw DocumentError(field: "", "a job must be a JSON object, found \(json.typeName)")
        }
        // A near miss of a known name (`max_tokens`, `Prompt`) is refused before anything else,
        // so the message points at the typo rather than at the field it hid.
        for member in object.members where !Job.knownFieldSet.contains(member.key) {
            if let near = Job.knownByFolded[Job.fold(member.key)] {
                throw DocumentError(field: member.key, "unknown field; did you mean \"\(near)\"?")
            }
        }
        var d = FieldReader(object)
        jobId = try d.string("jobId") { v throws(DocumentError) in
            if let p = JobID.problem(v) { throw DocumentError(field: "jobId", p) }
        }
        prompt = try d.string("prompt")
        if let raw = d.take("messages") {
            guard case .array(let items) = raw else {
                throw DocumentError(field: "messages", "expected an array, found \(raw.typeName)")
            }
            if items.isEmpty { throw DocumentError(field: "messages", "must not be empty") }
            if items.count > limits.maxMessages {
                throw DocumentError(field: "messages", "has \(items.count) messages; the limit is \(limits.maxMessages)")
            }
            var parsed: [Message] = []
            for (k, item) in items.enumerated() {
                let at = "messages[\(k)]"
                guard case .object(let m) = item else {
                    throw DocumentError(field: at, "expected an object, found \(item.typeName)")
                }
                var md = FieldReader(m, prefix: at + ".")
                guard let role = try md.string("role") else { throw DocumentError(field: at + ".role", "is required") }
                guard Message.roles.contains(role) else {
                    throw DocumentError(field: at + ".role", "must be one of system, developer, user, assistant, tool; found \"\(role)\"")
                }
                guard let content = try md.string("content") else {
                    throw DocumentError(field: at + ".content", "is required")
                }
                if let unknown = md.remaining.first {
                    throw DocumentError(field: at + "." + unknown.key, "unknown field in a message (allowed: role, content)")
                }
                parsed.append(Message(role: role, content: content))
            }
            messages = parsed
        }
        if prompt == nil && messages == nil {
            throw DocumentError(field: "prompt", "a job needs a prompt or messages")
        }
        let promptBytes = (prompt?.utf8.count ?? 0) + (messages ?? []).reduce(0) { $0 + $1.content.utf8.count }
        if promptBytes > limits.maxPromptBytes {
            throw DocumentError(
                field: prompt != nil ? "prompt" : "messages",
                "is \(promptBytes) bytes; the limit is \(limits.maxPromptBytes)")
        }
        if let p = prompt, p.isEmpty, messages == nil { throw DocumentError(field: "prompt", "must not be empty") }
        userId = try d.string("userId") { v throws(DocumentError) in try Job.checkName(v, field: "userId") }
        tenantId = try d.string("tenantId") { v throws(DocumentError) in try Job.checkName(v, field: "tenantId") }
        model = try d.string("model") { v throws(DocumentError) in
            if v.isEmpty || v.utf8.count > 256 || v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                throw DocumentError(field: "model", "must be 1 to 256 bytes without control characters")
            }
        }
        maxTokens = try d.int("maxTokens", in: 1...limits.maxTokens)
        if let raw = d.take("temperature") {
            guard case .number = raw, let t = raw.doubleValue else {
                throw DocumentError(field: "temperature", "expected a number, found \(raw.typeName)")
            }
            guard (0...2).contains(t) else { throw DocumentError(field: "temperature", "must be between 0 and 2") }
            temperature = t
        }
        if let raw = d.take("metadata") {
            guard case .object(let m) = raw else {
                throw DocumentError(field: "metadata", "expected an object, found \(raw.typeName)")
            }
            let size = raw.serialized().count
            if size > limits.maxMetadataBytes {
                throw DocumentError(field: "metadata", "is \(size) bytes; the limit is \(limits.maxMetadataBytes)")
            }
            metadata = m
        }
        submittedAt = try d.string("submittedAt") { v throws(DocumentError) in
            if Timestamp.parse(v) == nil {
                throw DocumentError(field: "submittedAt", "must be an RFC 3339 date-time such as 2026-11-26T10:00:00Z")
            }
        }
        deadline = try d.string("deadline") { v throws(DocumentError) in
            if Timestamp.parse(v) == nil {
                throw DocumentError(field: "deadline", "must be an RFC 3339 date-time such as 2026-11-26T10:00:00Z")
            }
        }
        if let raw = d.take("retry"), raw != .null { retry = try JobRetry(json: raw) }
        if let raw = d.take("stream") {
            guard case .bool(let b) = raw else {
                throw DocumentError(field: "stream", "expected true or false, found \(raw.typeName)")
            }
            stream = b
        }
        attempts = try d.int("attempts", in: 0...1_000_000) ?? 0
        if let raw = d.take("history") {
            guard case .array(let h) = raw else {
                throw DocumentError(field: "history", "expected an array, found \(raw.typeName)")
            }
            history = h
        }
        extra = d.remaining
    }

    /// Case- and separator-insensitive form of a field name, to catch `max_tokens` for `maxTokens`.
    static func fold(_ key: String) -> String {
        String(key.lowercased().filter { $0 != "_" && $0 != "-" })
    }

    /// Users and tenants: 1–128 bytes of `[A-Za-z0-9._@+-]`, starting with a letter or digit.
    public static func checkName(_ v: String, field: String) throws(DocumentError) {
        let u = v.utf8
        guard let first = u.first, u.count <= 128, JobID.isAlnum(first),
            u.allSatisfy({ JobID.isAlnum($0) || "._@+-".utf8.contains($0) })
        else { throw DocumentError(field: field, "must be 1 to 128 characters of [A-Za-z0-9._@+-], starting with a letter or digit") }
    }

    /// The job as JSON: known fields in a fixed order, then unknown ones as they came.
    public func json() -> JSONValue {
        var o = JSONObject()
        if let jobId { o["jobId"] = .string(jobId) }
        if let prompt { o["prompt"] = .string(prompt) }
        if let messages {
            o["messages"] = .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) })
        }
        if let userId { o["userId"] = .string(userId) }
        if let tenantId { o["tenantId"] = .string(tenantId) }
        if let model { o["model"] = .string(model) }
        if let maxTokens { o["maxTokens"] = .integer(maxTokens) }
        if let temperature { o["temperature"] = .double(temperature) }
        if let metadata { o["metadata"] = .object(metadata) }
        if let submittedAt { o["submittedAt"] = .string(submittedAt) }
        if let deadline { o["deadline"] = .string(deadline) }
        if let retry { o["retry"] = retry.json() }
        if stream { o["stream"] = .bool(true) }
        if attempts > 0 { o["attempts"] = .integer(attempts) }
        if !history.isEmpty { o["history"] = .array(history) }
        for member in extra { o[member.key] = member.value }
        return .object(o)
    }

    /// Parses and validates job bytes in one step.
    public static func decode(_ bytes: [UInt8], limits: Limits = .default) throws(IntakeError) -> Job {
        if bytes.count > limits.maxFileBytes {
            throw IntakeError(kind: .tooLarge, message: "file is over the \(limits.maxFileBytes)-byte limit")
        }
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch {
            if bytes.isEmpty { throw IntakeError(kind: .invalidJSON, message: "file is empty", truncated: true) }
            throw IntakeError(kind: .invalidJSON, message: "not valid JSON: \(error)", truncated: error.truncated)
        }
        do { return try Job(json: value, limits: limits) } catch {
            throw IntakeError(kind: .invalidJob, message: error.description, field: error.field)
        }
    }
}

/// Why a file in the spool could not become a job. `kind` is stable and machine-readable.
public struct IntakeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case invalidJSON = "invalid-json"
        case invalidJob = "invalid-job"
        case tooLarge = "too-large"
        case badId = "bad-id"
        case idClash = "id-clash"
        case notRegularFile = "not-a-regular-file"
        case abandoned = "abandoned"
    }

    public var kind: Kind
    public var message: String
    public var field: String?
    /// The input ended early: a file that may still be being written.
    public var truncated = false

    public init(kind: Kind, message: String, field: String? = nil, truncated: Bool = false) {
        self.kind = kind
        self.message = message
        self.field = field
        self.truncated = truncated
    }

    public var description: String { "\(kind.rawValue): \(message)" }

    /// The message led by the field at fault, named once (`maxTokens: expected an integer, …`).
    public var fieldAndMessage: String {
        guard let field, !field.isEmpty, !message.hasPrefix(field) else { return message }
        return "\(field): \(message)"
    }
}

/// Takes members out of an object one by one, so what is left at the end is the unknown ones.
/// Each take is a hash lookup, so reading a few known fields out of a large object stays linear.
struct FieldReader {
    private let object: JSONObject
    private var taken: Set<Int> = []
    let prefix: String

    init(_ object: JSONObject, prefix: String = "") {
        self.object = object
        self.prefix = prefix
    }

    /// The members not taken, in order.
    var remaining: [JSONObject.Member] {
        taken.isEmpty ? object.members : object.members.indices.filter { !taken.contains($0) }.map { object.members[$0] }
    }

    mutating func take(_ key: String) -> JSONValue? {
        guard let i = object.position(of: key), taken.insert(i).inserted else { return nil }
        return object.members[i].value
    }

    /// A string member; `null` counts as absent.
    mutating func string(
        _ key: String, check: (String) throws(DocumentError) -> Void = { _ in }
    ) throws(DocumentError) -> String? {
        guard let raw = take(key) else { return nil }
        if case .null = raw { return nil }
        guard case .string(let s) = raw else {
            throw DocumentError(field: prefix + key, "expected a string, found \(raw.typeName)")
        }
        try check(s)
        return s
    }

    mutating func int(_ key: String, in range: ClosedRange<Int>) throws(DocumentError) -> Int? {
        guard let raw = take(key) else { return nil }
        if case .null = raw { return nil }
        guard case .number = raw else {
            throw DocumentError(field: prefix + key, "expected an integer, found \(raw.typeName)")
        }
        guard let v = raw.intValue else { throw DocumentError(field: prefix + key, "expected an integer") }
        guard range.contains(v) else {
            throw DocumentError(field: prefix + key, "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return v
    }
}
