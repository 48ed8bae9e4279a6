public import JSON
public import Spool

/// One error of a batch's input, in the shape of the OpenAI Batch API's `errors.data[]`.
public struct BatchLineError: Sendable, Equatable {
    public var code: String
    public var message: String
    public var param: String?
    /// 1-based line number in the input file.
    public var line: Int?

    public var json: JSONValue {
        .object([
            "code": .string(code), "message": .string(message), "param": param.map(JSONValue.string) ?? .null,
            "line": line.map(JSONValue.integer) ?? .null,
        ])
    }
}

/// Why a batch's input was refused: every line at fault (up to ``BatchInput/maxReportedErrors``).
public struct BatchInvalid: Error, Sendable, Equatable {
    public var errors: [BatchLineError]
}

/// A batch input file (JSONL, one request per line) checked and turned into jobs, or every
/// reason it cannot be (up to ``maxReportedErrors``). Nothing is enqueued from a file with an error.
public enum BatchInput {
    /// The most requests one batch may hold (as the OpenAI Batch API).
    public static let maxRequests = 50_000
    /// The longest `custom_id`, in bytes.
    public static let maxCustomIDBytes = 512
    public static let maxReportedErrors = 100
    /// The only endpoint llmspool serves in a batch.
    public static let endpoint = "/v1/chat/completions"
    /// Request members llmspool maps onto the job's own fields.
    static let mapped: Set<String> = ["messages", "model", "max_tokens", "max_completion_tokens", "temperature"]

    /// The jobs of `bytes`, with ids `BATCH.N` (N = 0-based line index), or the errors.
    public static func jobs(_ bytes: [UInt8], batchID: String, identity: Identity, limits: Limits) -> Result<[Job], BatchInvalid> {
        var jobs: [Job] = []
        var errors: [BatchLineError] = []
        var seen = Set<String>()
        var lineNumber = 0
        var start = 0
        func fail(_ code: String, _ message: String, _ param: String? = nil) {
            if errors.count < maxReportedErrors { errors.append(BatchLineError(code: code, message: message, param: param, line: lineNumber)) }
        }
        while start < bytes.count {
            var end = start
            while end < bytes.count, bytes[end] != 0x0A { end += 1 }
            lineNumber += 1
            defer { start = end + 1 }
            var line = bytes[start..<end]
            if line.last == 0x0D { line = line.dropLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }  // blank lines (a trailing newline) are not requests
            guard jobs.count < maxRequests else {
                fail("too_many_requests", "a batch holds at most \(maxRequests) requests")
                break
            }
            let value: JSONValue
            do { value = try JSONParser.parse(Array(line)) } catch {
                fail("invalid_json_line", "this line is not valid JSON: \(error)")
                continue
            }
            guard case .object(let o) = value else { fail("invalid_json_line", "each line must be a JSON object"); continue }
            for key in o.keys where !["custom_id", "method", "url", "body"].contains(key) {
                fail("invalid_request", "unknown member \"\(key)\"; a line has custom_id, method, url and body", key)
            }
            guard let cid = o["custom_id"]?.stringValue, !cid.isEmpty else {
                fail("missing_required_parameter", "custom_id must be a non-empty string", "custom_id")
                continue
            }
            guard cid.utf8.count <= maxCustomIDBytes else {
                fail("invalid_request", "custom_id is \(cid.utf8.count) bytes; the limit is \(maxCustomIDBytes)", "custom_id")
                continue
            }
            guard seen.insert(cid).inserted else {
                fail("duplicate_custom_id", "custom_id \"\(cid.prefix(80))\" is used by an earlier line", "custom_id")
                continue
            }
            guard o["method"]?.stringValue == "POST" else { fail("invalid_method", "method must be POST", "method"); continue }
            guard o["url"]?.stringValue == endpoint else {
                fail("invalid_url", "url must be \(endpoint) (the batch's endpoint)", "url")
                continue
            }
            guard case .object(let body)? = o["body"] else { fail("missing_required_parameter", "body must be an object", "body"); continue }
            switch job(
                body, id: "\(batchID).\(jobs.count)", batchID: batchID, customID: cid, line: lineNumber,
                identity: identity, limits: limits)
            {
            case .success(let j): jobs.append(j)
            case .failure(let e): fail("invalid_request", e.message, "body" + (e.field.isEmpty ? "" : "." + e.field))
            }
        }
        if jobs.isEmpty, errors.isEmpty {
            errors.append(BatchLineError(code: "empty_file", message: "the input file holds no requests", param: nil, line: nil))
        }
        if !errors.isEmpty { return .failure(BatchInvalid(errors: errors)) }
        return .success(jobs)
    }

    /// One request body as a job: `messages`, `model`, `max_tokens` (or `max_completion_tokens`)
    /// and `temperature` become the job's fields; the rest go in `request`, sent as they are.
    static func job(
        _ body: JSONObject, id: String, batchID: String, customID: String, line: Int, identity: Identity,
        limits: Limits
    ) -> Result<Job, DocumentError> {
        var doc = JSONObject()
        doc["jobId"] = .string(id)
        guard let messages = body["messages"] else { return .failure(DocumentError(field: "messages", "is required")) }
        doc["messages"] = messages
        if let m = body["model"] { doc["model"] = m }
        if body["max_tokens"] != nil, body["max_completion_tokens"] != nil {
            return .failure(DocumentError(field: "max_completion_tokens", "give max_tokens or max_completion_tokens, not both"))
        }
        if let t = body["max_tokens"] ?? body["max_completion_tokens"] { doc["maxTokens"] = t }
        if let t = body["temperature"] { doc["temperature"] = t }
        doc["userId"] = .string(identity.userId)
        if let t = identity.tenantId { doc["tenantId"] = .string(t) }
        var rest = JSONObject()
        for m in body.members where !mapped.contains(m.key) {
            switch m.key {
            case "stream", "stream_options":
                if m.value != .bool(false), m.key == "stream" { return .failure(DocumentError(field: "stream", "a batch request cannot stream")) }
            case "n":
                if m.value.intValue != 1 { return .failure(DocumentError(field: "n", "a batch request asks for one choice (n = 1)")) }
            default: rest[m.key] = m.value
            }
        }
        doc["batch"] = .object(["id": .string(batchID), "customId": .string(customID), "line": .integer(line)])
        if !rest.isEmpty { doc["request"] = .object(rest) }
        do throws(DocumentError) {
            let job = try Job(json: .object(doc), limits: limits)
            return .success(job)
        } catch {
            var e = error
            if e.field == "maxTokens" { e.field = "max_tokens" }
            return .failure(e)
        }
    }
}
