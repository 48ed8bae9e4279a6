public import JSON
public import Spool

/// The OpenAI Batch API over a spool (docs/batch.md): uploaded files and batch records live in
/// `SPOOL/.batches/`, each batch's requests are ordinary jobs named `BATCH.N`, and a batch's
/// status, counts and output are read off the states of its jobs.
///
/// `owner` nil acts for the spool's administrator (the CLI): every record is visible.
public struct BatchStore: Sendable {
    public let spool: Spool
    public let owner: Identity?
    /// The largest upload, in bytes.
    public let maxFileBytes: Int
    /// A batch left `validating` this long (its creator died mid-enqueue) is finished by its next reader.
    static let resumeAfterMilliseconds: Int64 = 120_000
    static let area = Spool.batchArea
    /// Accepted `completion_window`s, in seconds.
    static let windows: [String: Int64] = ["24h": 86_400]

    public init(spool: Spool, owner: Identity?, maxFileBytes: Int) {
        self.spool = spool
        self.owner = owner
        self.maxFileBytes = maxFileBytes
    }

    // MARK: files

    /// Stores an upload durably (content, then its description) and returns the file object.
    public func createFile(_ bytes: [UInt8], filename: String, purpose: String) throws(Problem) -> JSONValue {
        guard purpose == "batch" else {
            throw Problem(
                .badRequest, "invalid-purpose", "The file's purpose is not supported.",
                detail: "purpose must be \"batch\" (got \"\(purpose.prefix(40))\")", field: "purpose")
        }
        guard bytes.count <= maxFileBytes else { throw tooLarge(bytes.count) }
        let id = "file-" + JobID.generate()
        var meta: JSONObject = [
            "id": .string(id), "object": .string("file"), "bytes": .integer(bytes.count),
            "created_at": .integer(BatchStore.nowSeconds()),
            "filename": .string(String(filename.prefix(256))), "purpose": .string(purpose), "status": .string("processed"),
        ]
        stamp(&meta)
        try write(id, bytes)
        try write(id + ".meta", JSONValue.object(meta).serialized())
        return view(.object(meta))
    }

    public func fileObject(_ id: String) throws(Problem) -> JSONValue { view(try fileMeta(id)) }

    public func fileContent(_ id: String) throws(Problem) -> [UInt8] {
        _ = try fileMeta(id)
        guard let found = try read(id, limit: max(maxFileBytes, 1 << 30)) else { throw Problem.notFound(id) }
        return found
    }

    public func deleteFile(_ id: String) throws(Problem) -> JSONValue {
        _ = try fileMeta(id)
        do {
            try spool.removeRecord(id + ".meta", in: BatchStore.area)
            try spool.removeRecord(id, in: BatchStore.area)
        } catch {
            throw unavailable(error)
        }
        return .object(["id": .string(id), "object": .string("file"), "deleted": .bool(true)])
    }

    func fileMeta(_ id: String) throws(Problem) -> JSONValue {
        guard id.hasPrefix("file-"), JobID.isValid(id), let bytes = try read(id + ".meta"), let doc = try? JSONParser.parse(bytes),
            visible(doc)
        else { throw Problem.notFound(id) }
        return doc
    }

    // MARK: batches

    /// Creates a batch from an uploaded file: validates every line first (an error fails the
    /// batch and enqueues nothing), writes the record as `validating`, enqueues every request
    /// with one group commit, then records `in_progress`.
    public func createBatch(_ params: JSONObject) throws(Problem) -> JSONValue {
        guard let input = params["input_file_id"]?.stringValue else {
            throw Problem(.badRequest, "invalid-request", "input_file_id is required.", detail: "give the id of an uploaded file", field: "input_file_id")
        }
        guard params["endpoint"]?.stringValue == BatchInput.endpoint else {
            throw Problem(
                .badRequest, "invalid-request", "The endpoint is not supported.",
                detail: "endpoint must be \(BatchInput.endpoint)", field: "endpoint")
        }
        let window = params["completion_window"]?.stringValue ?? "24h"
        guard let seconds = BatchStore.windows[window] else {
            throw Problem(
                .badRequest, "invalid-request", "The completion window is not supported.",
                detail: "completion_window must be 24h", field: "completion_window")
        }
        if let m = params["metadata"], m != .null {
            guard case .object(let o) = m, o.members.count <= 16,
                o.members.allSatisfy({ $0.key.utf8.count <= 64 && ($0.value.stringValue?.utf8.count ?? 513) <= 512 })
            else {
                throw Problem(
                    .badRequest, "invalid-request", "The metadata is not valid.",
                    detail: "metadata holds at most 16 string pairs (keys ≤ 64, values ≤ 512 characters)", field: "metadata")
            }
        }
        let file = try fileMeta(input)
        guard file["purpose"]?.stringValue == "batch" else {
            throw Problem(.badRequest, "invalid-request", "The input file's purpose is not batch.", field: "input_file_id")
        }
        let content = try fileContent(input)
        let id = "batch_" + JobID.generate()
        let now = BatchStore.nowSeconds()
        var record: JSONObject = [
            "id": .string(id), "object": .string("batch"), "endpoint": .string(BatchInput.endpoint), "errors": .null,
            "input_file_id": .string(input), "completion_window": .string(window), "status": .string("validating"),
            "output_file_id": .null, "error_file_id": .null, "created_at": .integer(now),
            "expires_at": .integer(now + Int(seconds)), "metadata": params["metadata"] ?? .null,
        ]
        stamp(&record)
        let who = Identity(userId: record["userId"]?.stringValue ?? "admin", tenantId: record["tenantId"]?.stringValue)
        switch BatchInput.jobs(content, batchID: id, identity: who, limits: spool.limits) {
        case .failure(let invalid):
            record["status"] = .string("failed")
            record["failed_at"] = .integer(now)
            record["errors"] = .object(["object": .string("list"), "data": .array(invalid.errors.map(\.json))])
            record["request_counts"] = counts(total: 0, completed: 0, failed: 0)
            try write(id, JSONValue.object(record).serialized())
            return view(.object(record))
        case .success(let jobs):
            record["total"] = .integer(jobs.count)
            record["request_counts"] = counts(total: jobs.count, completed: 0, failed: 0)
            try write(id, JSONValue.object(record).serialized())
            do { _ = try spool.enqueue(batch: jobs) } catch {
                throw Problem(
                    .unavailable, "spool-unwritable", "The batch could not be stored.",
                    detail: "the spool cannot take the requests now; the batch resumes from its file when read again"
                ).logged("\(error)")
            }
            record["status"] = .string("in_progress")
            record["in_progress_at"] = .integer(BatchStore.nowSeconds())
            try write(id, JSONValue.object(record).serialized(), replacing: true)
            return view(.object(record))
        }
    }

    /// The batch, brought up to date: counts from its jobs' states; when every job has settled
    /// (or the batch was cancelled or expired and the rest have), the output and error files are
    /// written once and the batch is `completed` (`cancelled`, `expired`).
    public func batch(_ id: String) throws(Problem) -> JSONValue {
        view(.object(try refresh(try record(id))))
    }

    public func list(after: String?, limit: Int) throws(Problem) -> JSONValue {
        let names: [String]
        do { names = try spool.recordNames(in: BatchStore.area) } catch { throw unavailable(error) }
        // Ids are UUIDv7 after the prefix: newest first is reverse name order.
        var ids = names.filter { $0.hasPrefix("batch_") }.sorted(by: >)
        if let after, let k = ids.firstIndex(of: after) { ids = Array(ids[(k + 1)...]) }
        var data: [JSONValue] = []
        var more = false
        for id in ids {
            guard let bytes = try read(id), let doc = try? JSONParser.parse(bytes), visible(doc), case .object(let o) = doc else { continue }
            if data.count == limit { more = true; break }
            data.append(view(.object(try refresh(o))))
        }
        return .object([
            "object": .string("list"), "data": .array(data), "first_id": data.first?["id"] ?? .null,
            "last_id": data.last?["id"] ?? .null, "has_more": .bool(more),
        ])
    }

    /// Cancels a batch: its waiting jobs are dead-lettered at once; it is `cancelling` until
    /// the running ones settle, then `cancelled` with the output of what was done.
    public func cancel(_ id: String) throws(Problem) -> JSONValue {
        var o = try record(id)
        let status = o["status"]?.stringValue ?? ""
        guard ["validating", "in_progress", "finalizing"].contains(status) else {
            if status == "cancelling" || status == "cancelled" { return view(.object(try refresh(o))) }
            throw Problem(.conflict, "batch-finished", "The batch has already ended.", detail: "batch \(id) is \(status)")
        }
        o["status"] = .string("cancelling")
        o["cancelling_at"] = .integer(BatchStore.nowSeconds())
        try write(id, JSONValue.object(o).serialized(), replacing: true)
        return view(.object(try refresh(o)))
    }

    // MARK: bringing a batch up to date

    func record(_ id: String) throws(Problem) -> JSONObject {
        guard id.hasPrefix("batch_"), JobID.isValid(id), let bytes = try read(id), let doc = try? JSONParser.parse(bytes),
            visible(doc), case .object(let o) = doc
        else { throw Problem.notFound(id) }
        return o
    }

    func refresh(_ start: JSONObject) throws(Problem) -> JSONObject {
        var o = start
        guard let id = o["id"]?.stringValue, let total = o["total"]?.intValue else { return o }
        var status = o["status"]?.stringValue ?? ""
        let now = BatchStore.nowSeconds()
        if status == "validating" {
            // Its creator died between the record and the enqueue (or is still at it).
            guard let age = try? spool.readRecord(id, in: BatchStore.area)?.modifiedMilliseconds,
                Timestamp.nowMilliseconds() - age > BatchStore.resumeAfterMilliseconds
            else { return o }
            try resume(o)
            status = "in_progress"
            o["status"] = .string(status)
            o["in_progress_at"] = .integer(now)
            try write(id, JSONValue.object(o).serialized(), replacing: true)
        }
        guard ["in_progress", "finalizing", "cancelling"].contains(status) else { return o }
        if status == "in_progress", let expires = o["expires_at"]?.intValue, now >= expires {
            status = "expiring"
        }
        // Stop what has not started: cancel or expiry.
        if status == "cancelling" || status == "expiring" {
            let why = status == "cancelling" ? "the batch was cancelled" : "the batch's completion window ended"
            for k in 0..<total where (try? spool.state(of: "\(id).\(k)")) == .new {
                _ = try? spool.cancelWaiting("\(id).\(k).json", Failure(kind: status == "cancelling" ? "batch_cancelled" : "batch_expired", message: why))
            }
        }
        var completed = 0, failed = 0, open = 0
        for k in 0..<total {
            switch try? spool.state(of: "\(id).\(k)") {
            case .done?: completed += 1
            case .failed?: failed += 1
            default: open += 1
            }
        }
        o["request_counts"] = counts(total: total, completed: completed, failed: failed)
        guard open == 0 else { return o }
        // Every request has settled: assemble the output once (deterministic ids, written no-replace).
        let (output, errors) = try assemble(id, total: total)
        let outputID = "file-" + id.dropFirst("batch_".count) + "-output", errorID = "file-" + id.dropFirst("batch_".count) + "-errors"
        var ids: (JSONValue, JSONValue) = (.null, .null)
        if !output.isEmpty { try storeResultFile(outputID, output, name: "\(id)_output.jsonl"); ids.0 = .string(outputID) }
        if !errors.isEmpty { try storeResultFile(errorID, errors, name: "\(id)_error.jsonl"); ids.1 = .string(errorID) }
        o["output_file_id"] = ids.0
        o["error_file_id"] = ids.1
        o["finalizing_at"] = o["finalizing_at"] ?? .integer(now)
        switch status {
        case "cancelling": o["status"] = .string("cancelled"); o["cancelled_at"] = .integer(now)
        case "expiring": o["status"] = .string("expired"); o["expired_at"] = .integer(now)
        default: o["status"] = .string("completed"); o["completed_at"] = .integer(now)
        }
        try write(id, JSONValue.object(o).serialized(), replacing: true)
        return o
    }

    /// Enqueues the requests of a batch that are in no state yet (its creator died mid-way).
    func resume(_ o: JSONObject) throws(Problem) {
        guard let id = o["id"]?.stringValue, let input = o["input_file_id"]?.stringValue,
            let content = try read(input, limit: max(maxFileBytes, 1 << 30))
        else { return }
        let who = Identity(userId: o["userId"]?.stringValue ?? "admin", tenantId: o["tenantId"]?.stringValue)
        guard case .success(let jobs) = BatchInput.jobs(content, batchID: id, identity: who, limits: spool.limits) else { return }
        let missing = jobs.filter { j in (try? spool.state(of: j.jobId ?? "")) == nil }
        do { _ = try spool.enqueue(each: missing) } catch { throw unavailable(error) }
    }

    /// The output and error files' lines, in request order.
    func assemble(_ id: String, total: Int) throws(Problem) -> (output: [UInt8], errors: [UInt8]) {
        var output: [UInt8] = [], errors: [UInt8] = []
        for k in 0..<total {
            let jobID = "\(id).\(k)"
            guard let loc = try? spool.find(jobID), let doc = try? JSONParser.parse(loc.bytes) else { continue }
            let customID = doc["job"]?["batch"]?["customId"] ?? .null
            let requestID = "req_" + jobID.dropFirst("batch_".count)
            var line: JSONObject = ["id": .string("batch_req_" + jobID.dropFirst("batch_".count)), "custom_id": customID]
            if loc.state == .done {
                let finished = doc["finishedAt"]?.stringValue.flatMap(Timestamp.parse).map { Int($0 / 1000) } ?? 0
                var body: JSONObject = [
                    "id": .string("chatcmpl-" + jobID.dropFirst("batch_".count)), "object": .string("chat.completion"),
                    "created": .integer(finished), "model": doc["model"] ?? .null,
                ]
                body["choices"] = .array([
                    .object([
                        "index": .integer(0),
                        "message": .object(["role": .string("assistant"), "content": doc["response"] ?? .null]),
                        "finish_reason": doc["finishReason"] ?? .string("stop"),
                    ])
                ])
                if let u = doc["usage"] {
                    body["usage"] = .object([
                        "prompt_tokens": u["promptTokens"] ?? .null, "completion_tokens": u["completionTokens"] ?? .null,
                        "total_tokens": u["totalTokens"] ?? .null,
                    ])
                }
                line["response"] = .object(["status_code": .integer(200), "request_id": .string(requestID), "body": .object(body)])
                line["error"] = .null
                output += JSONValue.object(line).serialized() + [0x0A]
            } else {
                let err = doc["error"]
                let status = err?["httpStatus"]?.intValue
                line["response"] =
                    status.map { s in
                        .object([
                            "status_code": .integer(s), "request_id": .string(requestID),
                            "body": .object(["error": .object(["message": err?["message"] ?? .null, "type": err?["kind"] ?? .null])]),
                        ])
                    } ?? .null
                line["error"] = .object(["code": err?["kind"] ?? .string("failed"), "message": err?["message"] ?? .null])
                errors += JSONValue.object(line).serialized() + [0x0A]
            }
        }
        return (output, errors)
    }

    func storeResultFile(_ id: String, _ bytes: [UInt8], name: String) throws(Problem) {
        if try read(id + ".meta") != nil { return }  // another reader assembled it first
        var meta: JSONObject = [
            "id": .string(id), "object": .string("file"), "bytes": .integer(bytes.count),
            "created_at": .integer(BatchStore.nowSeconds()), "filename": .string(name),
            "purpose": .string("batch_output"), "status": .string("processed"),
        ]
        stamp(&meta)
        _ = try write(id, bytes, replacing: true)
        _ = try write(id + ".meta", JSONValue.object(meta).serialized(), replacing: true)
    }

    // MARK: helpers

    /// Unix seconds, as OpenAI's objects give times.
    static func nowSeconds() -> Int { Int(Timestamp.nowMilliseconds() / 1000) }

    func counts(total: Int, completed: Int, failed: Int) -> JSONValue {
        .object(["total": .integer(total), "completed": .integer(completed), "failed": .integer(failed)])
    }

    /// Records carry their owner, as jobs do; the API's objects do not show it.
    func stamp(_ o: inout JSONObject) {
        if let owner {
            o["userId"] = .string(owner.userId)
            if let t = owner.tenantId { o["tenantId"] = .string(t) }
        }
    }

    func visible(_ doc: JSONValue) -> Bool { owner.map { $0.owns(doc) } ?? true }

    func view(_ doc: JSONValue) -> JSONValue {
        guard case .object(var o) = doc else { return doc }
        for key in ["userId", "tenantId", "total"] { o[key] = nil }
        return .object(o)
    }

    func tooLarge(_ n: Int) -> Problem {
        Problem(.contentTooLarge, "file-too-large", "The file is too large.", detail: "the file is \(n) bytes; the limit is \(maxFileBytes) bytes")
    }

    func unavailable(_ error: SpoolError) -> Problem {
        Problem(.unavailable, "spool-unavailable", "The batch store is unavailable.", detail: "try again later").logged("\(error)")
    }

    func read(_ name: String, limit: Int = 1 << 20) throws(Problem) -> [UInt8]? {
        do { return try spool.readRecord(name, in: BatchStore.area, limit: limit)?.bytes } catch { throw unavailable(error) }
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8], replacing: Bool = false) throws(Problem) -> Bool {
        do { return try spool.writeRecord(name, in: BatchStore.area, bytes: bytes, replacing: replacing) } catch { throw unavailable(error) }
    }
}
