import CKafka
import Logging
import Spool
#if canImport(Glibc)
import Glibc
#endif

/// Jobs in: messages of `--jobs-in` become durable jobs in `new/`.
extension Bridge {
    /// Enqueues a batch of consumed jobs with one group commit (write all, one `syncfs`, rename
    /// each, one `fsync(new/)`), then stores each partition's next offset. Invalid messages go to
    /// the DLQ first. If the spool cannot take the batch (disk full, I/O error) it is retried every
    /// second, and no offset moves meanwhile.
    func ingestJobs(_ batch: [Consumed]) {
        var jobs: [Job] = []
        var slots: [Int] = []  // index in `batch` of each job
        for (k, message) in batch.enumerated() {
            switch Self.decodeJob(message.value, key: message.keyString, contentType: message.header("contentType"),
                                  userId: message.header("userId"), tenantId: message.header("tenantId"), limits: spool.limits) {
            case .failure(let why):
                counts.skipped += 1
                BridgeMetrics.consumed(topic: message.topic, outcome: "invalid")
                logger.error("skipping an invalid message: \(why)", metadata: message.position)
                if !deadLetter(message, reason: why.message) { return }
            case .success(var job):
                job.extra.removeAll { $0.key == "origin" }
                job.extra.append(.init("origin", .object(["kafka": .object([
                    "topic": .string(message.topic), "partition": .integer(Int(message.partition)),
                    "offset": .integer(Int(message.offset)),
                ])])))
                jobs.append(job)
                slots.append(k)
            }
        }
        var outcomes: [EnqueueOutcome] = []
        while !jobs.isEmpty {
            do {
                outcomes = try spool.enqueue(each: jobs)
                break
            } catch {
                logger.error("enqueue of \(jobs.count) jobs failed, retrying in 1 s: \(error)", metadata: batch[slots[0]].position)
                if !pause(1_000) { return }
            }
        }
        for (outcome, k) in zip(outcomes, slots) {
            let message = batch[k]
            switch outcome {
            case .enqueued(let id):
                counts.enqueued += 1
                BridgeMetrics.consumed(topic: message.topic, outcome: "enqueued")
                logger.info("enqueued", metadata: message.position.merging(["jobId": "\(id)"]) { a, _ in a })
            case .duplicate(let id, let state):
                counts.duplicates += 1
                BridgeMetrics.consumed(topic: message.topic, outcome: "duplicate")
                logger.info("already in the spool", metadata: message.position.merging(["jobId": "\(id)", "state": "\(state.rawValue)"]) { a, _ in a })
            case .invalid(let e):
                counts.skipped += 1
                BridgeMetrics.consumed(topic: message.topic, outcome: "invalid")
                logger.error("skipping an invalid job: \(e.message)", metadata: message.position)
                if !deadLetter(message, reason: e.message) { return }
            }
        }
        // Everything in the batch is durable (or dead-lettered): move each partition past it.
        var next: [String: (topic: String, partition: Int32, offset: Int64)] = [:]
        for m in batch {
            let key = "\(m.topic)\u{0}\(m.partition)"
            if (next[key]?.offset ?? -1) < m.offset + 1 { next[key] = (m.topic, m.partition, m.offset + 1) }
        }
        storeOffsets(jobsConsumer, Array(next.values))
        logger.debug("batch enqueued", metadata: ["messages": "\(batch.count)", "jobs": "\(jobs.count)"])
    }

    /// Sleeps `ms` on the watcher (a stop ends it early); false if the bridge is stopping.
    func pause(_ ms: Int32) -> Bool {
        if stopper.isStopping { return false }
        let deadline = Self.nowMs() + Int64(ms)
        while !stopper.isStopping, Self.nowMs() < deadline {
            _ = watcher.wait(timeoutMilliseconds: Int32(clamping: deadline - Self.nowMs()))
        }
        return !stopper.isStopping
    }

    /// Turns a message into a job: JSON value (Spring's `JobEvent {jobId, prompt, userId}` or a
    /// full llmspool job), `contentType` possibly JSON-quoted, jobId from the key and
    /// userId/tenantId from headers when the payload has none.
    static func decodeJob(_ value: [UInt8], key: String?, contentType: String?, userId: String?, tenantId: String?,
                          limits: Limits) -> Result<Job, DecodeFailure> {
        if let failure = checkContentType(contentType) { return .failure(failure) }
        var job: Job
        do { job = try Job.decode(value, limits: limits) } catch { return .failure(DecodeFailure(message: error.description)) }
        if job.jobId == nil, let key, !key.isEmpty { job.jobId = key }
        if job.userId == nil, let userId, !userId.isEmpty { job.userId = userId }
        if job.tenantId == nil, let tenantId, !tenantId.isEmpty { job.tenantId = tenantId }
        return .success(job)
    }

    /// A `contentType` header other than JSON (Spring may send it JSON-quoted: `"application/json"`).
    static func checkContentType(_ contentType: String?) -> DecodeFailure? {
        guard var ct = contentType else { return nil }
        if ct.count >= 2, ct.hasPrefix("\""), ct.hasSuffix("\"") { ct = String(ct.dropFirst().dropLast()) }
        return ct.lowercased().hasPrefix("application/json") ? nil : DecodeFailure(message: "contentType \(ct) is not application/json")
    }

    struct DecodeFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Sends an invalid message to the DLQ with the original key, value and headers plus Spring's
    /// `x-original-*` and `x-exception-message` headers, and waits for its delivery report (so the
    /// offset is stored only once the dead letter is safe). Returns false if stopped before that.
    func deadLetter(_ message: Consumed, reason: String) -> Bool {
        guard let dlq = dlqTopic, let p = producer else { return true }
        let headers = message.headers + [
            ("x-original-topic", Array(message.topic.utf8)),
            ("x-original-partition", withUnsafeBytes(of: message.partition.bigEndian) { Array($0) }),
            ("x-original-offset", withUnsafeBytes(of: message.offset.bigEndian) { Array($0) }),
            ("x-exception-fqcn", Array("llmspool.InvalidJob".utf8)),
            ("x-exception-message", Array(reason.utf8)),
        ]
        while true {
            let seq = nextSeq
            nextSeq += 1
            let err = produce(p, topic: dlq, key: message.key ?? [], value: message.value, headers: headers, opaque: seq)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                pending[seq] = .deadLetter
                while deadLetterReports[seq] == nil {
                    _ = rd_kafka_poll(p, 100)
                    settleDeliveries()
                    if stopper.isStopping, deadLetterReports[seq] == nil { return false }
                }
                if deadLetterReports.removeValue(forKey: seq) == RD_KAFKA_RESP_ERR_NO_ERROR {
                    BridgeMetrics.delivered(topic: dlq, kind: "dead-letter")
                    logger.notice("sent to the DLQ", metadata: message.position.merging(["dlq": "\(dlq)"]) { a, _ in a })
                    return true
                }
                logger.error("DLQ delivery failed, retrying", metadata: ["dlq": "\(dlq)"])
            } else {
                logger.error("DLQ produce failed: \(Kafka.errorString(err))", metadata: ["dlq": "\(dlq)"])
            }
            BridgeMetrics.deliveryError(topic: dlq, kind: "dead-letter")
            if !pause(1_000) { return false }
        }
    }

    /// Stores the next offsets of partitions, to be committed (only after the messages' work is durable).
    func storeOffsets(_ consumer: OpaquePointer?, _ offsets: [(topic: String, partition: Int32, offset: Int64)]) {
        guard let c = consumer, !offsets.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for o in offsets { rd_kafka_topic_partition_list_add(list, o.topic, o.partition).pointee.offset = o.offset }
        let err = rd_kafka_offsets_store(c, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // E.g. a partition was revoked by a rebalance: its new owner re-delivers the messages.
            logger.warning("offset store: \(Kafka.errorString(err))", metadata: ["partitions": "\(offsets.count)"])
        }
    }
}
