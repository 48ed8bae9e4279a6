import JSON
import Spool

/// Consumed messages into jobs and results: pure functions of the message's bytes and headers.
enum MessageDecoding {
    struct Failure: Error, CustomStringConvertible, Equatable {
        var message: String
        var description: String { message }
    }

    /// Turns a message into a job: JSON value (Spring's `JobEvent {jobId, prompt, userId}` or a
    /// full llmspool job), `contentType` possibly JSON-quoted, jobId from the key and
    /// userId/tenantId from headers when the payload has none.
    static func job(
        _ value: [UInt8], key: String?, contentType: String?, userId: String?, tenantId: String?,
        limits: Limits
    ) -> Result<Job, Failure> {
        if let failure = checkContentType(contentType) { return .failure(failure) }
        var job: Job
        do { job = try Job.decode(value, limits: limits) } catch { return .failure(Failure(message: error.description)) }
        if job.jobId == nil, let key, !key.isEmpty { job.jobId = key }
        if job.userId == nil, let userId, !userId.isEmpty { job.userId = userId }
        if job.tenantId == nil, let tenantId, !tenantId.isEmpty { job.tenantId = tenantId }
        return .success(job)
    }

    /// A `contentType` header other than JSON (Spring may send it JSON-quoted: `"application/json"`).
    static func checkContentType(_ contentType: String?) -> Failure? {
        guard var ct = contentType else { return nil }
        if ct.count >= 2, ct.hasPrefix("\""), ct.hasSuffix("\"") { ct = String(ct.dropFirst().dropLast()) }
        return ct.lowercased().hasPrefix("application/json") ? nil : Failure(message: "contentType \(ct) is not application/json")
    }

    /// A result message: an llmspool result or dead letter (`status`, `response` or `error`), or
    /// Spring's `JobResult {jobId, response}`.
    struct DecodedResult {
        var id: String
        var state: SpoolState
        var fields: JSONObject

        /// The document stored for `job`: the received fields, with the local job's owner (never a
        /// remote's: the owner decides who may read it) and where it came from.
        func document(for job: Job, topic: String, partition: Int32, offset: Int64) -> JSONValue {
            var o = fields
            o["jobId"] = .string(id)
            o["status"] = .string(state == .done ? "done" : "failed")
            o["userId"] = job.userId.map { .string($0) }
            o["tenantId"] = job.tenantId.map { .string($0) }
            o["job"] = job.json()
            if state == .done, o["finishedAt"] == nil { o["finishedAt"] = .string(Timestamp.now()) }
            if state == .failed, o["failedAt"] == nil { o["failedAt"] = .string(Timestamp.now()) }
            o["receivedFrom"] = .object(["topic": .string(topic), "partition": .integer(Int(partition)), "offset": .integer(Int(offset))])
            return .object(o)
        }
    }

    static func result(_ value: [UInt8], key: String?, jobIdHeader: String?, contentType: String?) -> Result<DecodedResult, Failure> {
        if let failure = checkContentType(contentType) { return .failure(failure) }
        let parsed: JSONValue
        do { parsed = try JSONParser.parse(value) } catch { return .failure(Failure(message: "invalid-json: \(error)")) }
        guard case .object(var o) = parsed else { return .failure(Failure(message: "a result must be a JSON object")) }
        guard let id = o["jobId"]?.stringValue ?? jobIdHeader ?? key, !id.isEmpty else {
            return .failure(Failure(message: "no jobId in the value, the jobId header or the key"))
        }
        if let problem = JobID.problem(id) { return .failure(Failure(message: "jobId \"\(id.prefix(100))\" \(problem)")) }
        let failed = o["status"]?.stringValue == "failed" || o["error"] != nil
        if failed {
            if o["error"]?.objectValue == nil {
                let text = o["error"]?.stringValue ?? "failed on another host"
                o["error"] = .object(["kind": .string("remote"), "message": .string(text)])
            }
            return .success(DecodedResult(id: id, state: .failed, fields: o))
        }
        guard o["response"]?.stringValue != nil else {
            return .failure(Failure(message: "result of \(id) has neither a string response nor an error"))
        }
        return .success(DecodedResult(id: id, state: .done, fields: o))
    }

    /// Whether a result document of this spool is one `--results-out` publishes: a job's own
    /// result (its `jobId` is the id it is filed under: not a rejected file's dead letter), not
    /// one that came in from Kafka, and in scope.
    static func isPublishable(_ doc: JSONValue?, id: String, scope: ResultScope) -> Bool {
        guard let doc, doc["jobId"]?.stringValue == id, doc["receivedFrom"] == nil else { return false }
        return scope == .all || doc["job"]?["origin"]?["kafka"] != nil
    }
}
