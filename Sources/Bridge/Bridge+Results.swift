import CKafka
import JSON
import Logging
import Spool
#if canImport(Glibc)
import Glibc
#endif

/// Results out (`done/` and `failed/` to `--results-out`) and results in (`--results-in` settling
/// jobs in `forwarded/`).
extension Bridge {
    // MARK: results out

    /// Produces every result and dead letter not yet published, in flight or ignored. Returns false
    /// if it stopped early (the producer queue is full, an error) and should run again soon.
    func publishResults() -> Bool {
        guard let p = producer, let topic = configuration.resultsOut else { return true }
        for state in [SpoolState.done, .failed] {
            let dir = spool.path + "/" + state.rawValue
            let names: [String]
            do { names = try spool.names(in: state) } catch {
                logger.error("cannot list \(state.rawValue)/: \(error)")
                retryAt = Self.nowMs() + 1_000
                return false
            }
            for name in names where name.hasSuffix(".json") {
                let id = String(name.dropLast(5))
                if publishedResults.contains(id) || sendingResults.contains(id) || ignoredResults.contains(id) { continue }
                let bytes: [UInt8]
                do { bytes = try Spool.readInput(dir + "/" + name, limit: 8 << 20) } catch {
                    logger.warning("cannot read result: \(error)", metadata: ["jobId": "\(id)"])
                    continue
                }
                let doc = try? JSONParser.parse(bytes)
                // Only a job's own result: not a rejected file's dead letter (its key is not the
                // id it names), not one that came in from Kafka, and in scope.
                guard let doc, doc["jobId"]?.stringValue == id, doc["receivedFrom"] == nil,
                      configuration.resultScope == .all || doc["job"]?["origin"]?["kafka"] != nil
                else {
                    ignoredResults.insert(id)
                    continue
                }
                var headers: [(String, [UInt8])] = [("contentType", Array("application/json".utf8)), ("jobId", Array(id.utf8))]
                if let u = doc["userId"]?.stringValue { headers.append(("userId", Array(u.utf8))) }
                if let t = doc["tenantId"]?.stringValue { headers.append(("tenantId", Array(t.utf8))) }
                let seq = nextSeq
                let err = produce(p, topic: topic, key: Array(id.utf8), value: bytes, headers: headers, opaque: seq)
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    _ = rd_kafka_poll(p, 100)
                    settleDeliveries()
                    return false
                }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    BridgeMetrics.deliveryError(topic: topic, kind: "result")
                    logger.error("produce failed: \(Kafka.errorString(err))", metadata: ["jobId": "\(id)"])
                    retryAt = Self.nowMs() + 1_000
                    return false
                }
                nextSeq += 1
                pending[seq] = .result(id: id, state: state)
                sendingResults.insert(id)
            }
        }
        return true
    }

    func markPublished(_ id: String) {
        publishedResults.insert(id)
        // An empty file: creating it is atomic, so no tmp/ step is needed. Not fsynced: losing a
        // marker in a power loss only re-sends the result (at-least-once).
        let fd = open(publishedDir + "/" + id, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        if fd < 0 {
            logger.warning("cannot record \(id) as published: \(String(cString: strerror(errno))); it will be sent again after a restart")
        } else {
            close(fd)
        }
    }

    // MARK: results in

    func handleResult(_ message: Consumed) {
        let topic = message.topic, position = message.position
        defer { storeOffsets(resultsConsumer, [(topic, message.partition, message.offset + 1)]) }

        let decoded: DecodedResult
        switch Self.decodeResult(message.value, key: message.keyString, jobIdHeader: message.header("jobId"),
                                 contentType: message.header("contentType")) {
        case .failure(let why):
            counts.resultsIgnored += 1
            BridgeMetrics.consumed(topic: topic, outcome: "invalid")
            logger.error("skipping an invalid result: \(why)", metadata: position)
            return
        case .success(let d): decoded = d
        }
        var meta = position
        meta["jobId"] = "\(decoded.id)"
        // A job still held for its hand-over (its delivery report not yet served, or being moved)
        // is settled here; forward(batch:) then retires its copy in new/ (or, if the mover got there
        // first, collectMoved retires the copy it moved).
        let heldHold = sent[decoded.id]
        let heldJob = heldHold?.job
        while true {
            do {
                let lookup = try heldJob.map { ForwardedLookup.waiting($0) } ?? spool.lookForwarded(decoded.id)
                switch lookup {
                case .unknown:
                    counts.resultsIgnored += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "not-ours")
                    logger.debug("a result for a job this spool did not forward", metadata: meta)
                case .settled(let state):
                    counts.resultsIgnored += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "duplicate")
                    logger.info("result already in \(state.rawValue)/", metadata: meta)
                case .waiting(let job):
                    let doc = decoded.document(for: job, topic: topic, partition: message.partition, offset: message.offset)
                    if try spool.settleForwarded(decoded.id, document: doc, into: decoded.state) {
                        heldHold?.markSettled()
                        counts.resultsSettled += 1
                        BridgeMetrics.consumed(topic: topic, outcome: "settled")
                        logger.info("result received", metadata: meta.merging(["state": "\(decoded.state.rawValue)"]) { a, _ in a })
                    } else {
                        counts.resultsIgnored += 1
                        BridgeMetrics.consumed(topic: topic, outcome: "duplicate")
                    }
                }
                return
            } catch {
                // Disk full, I/O error: keep the offset and try again.
                logger.error("cannot store the result, retrying in 1 s: \(error)", metadata: meta)
                if !pause(1_000) { return }
            }
        }
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

    static func decodeResult(_ value: [UInt8], key: String?, jobIdHeader: String?, contentType: String?) -> Result<DecodedResult, DecodeFailure> {
        if let failure = checkContentType(contentType) { return .failure(failure) }
        let parsed: JSONValue
        do { parsed = try JSONParser.parse(value) } catch { return .failure(DecodeFailure(message: "invalid-json: \(error)")) }
        guard case .object(var o) = parsed else { return .failure(DecodeFailure(message: "a result must be a JSON object")) }
        guard let id = o["jobId"]?.stringValue ?? jobIdHeader ?? key, !id.isEmpty else {
            return .failure(DecodeFailure(message: "no jobId in the value, the jobId header or the key"))
        }
        if let problem = JobID.problem(id) { return .failure(DecodeFailure(message: "jobId \"\(id.prefix(100))\" \(problem)")) }
        let failed = o["status"]?.stringValue == "failed" || o["error"] != nil
        if failed {
            if o["error"]?.objectValue == nil {
                let text = o["error"]?.stringValue ?? "failed on another host"
                o["error"] = .object(["kind": .string("remote"), "message": .string(text)])
            }
            return .success(DecodedResult(id: id, state: .failed, fields: o))
        }
        guard o["response"]?.stringValue != nil else {
            return .failure(DecodeFailure(message: "result of \(id) has neither a string response nor an error"))
        }
        return .success(DecodedResult(id: id, state: .done, fields: o))
    }
}
