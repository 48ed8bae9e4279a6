import CKafka
import Logging
import Spool
#if canImport(Glibc)
import Glibc
#endif

/// Jobs in: messages of `--jobs-in` become durable jobs in `new/`.
extension Bridge {
    func handleJob(_ m: UnsafeMutablePointer<rd_kafka_message_t>) {
        let msg = m.pointee
        let (topic, position) = Self.position(m)
        let value = Self.bytes(msg.payload, msg.len)
        let key = msg.key.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: msg.key_len), as: UTF8.self) }
        var headers: OpaquePointer?
        if rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR { headers = nil }
        let header = { (name: String) in Kafka.header(headers, name).map { String(decoding: $0, as: UTF8.self) } }

        switch Self.decodeJob(value, key: key, contentType: header("contentType"),
                              userId: header("userId"), tenantId: header("tenantId"), limits: spool.limits) {
        case .failure(let why):
            counts.skipped += 1
            BridgeMetrics.consumed(topic: topic, outcome: "invalid")
            logger.error("skipping an invalid message: \(why)", metadata: position)
            if !deadLetter(m, topic: topic, reason: why.message) { return }
        case .success(var job):
            job.extra.removeAll { $0.key == "origin" }
            job.extra.append(.init("origin", .object(["kafka": .object([
                "topic": .string(topic), "partition": .integer(Int(msg.partition)), "offset": .integer(Int(msg.offset)),
            ])])))
            while true {
                do {
                    let id = try spool.enqueue(job)
                    counts.enqueued += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "enqueued")
                    logger.info("enqueued", metadata: position.merging(["jobId": "\(id)"]) { a, _ in a })
                } catch .idExists(let id, let state) {
                    counts.duplicates += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "duplicate")
                    logger.info("already in the spool", metadata: position.merging(["jobId": "\(id)", "state": "\(state.rawValue)"]) { a, _ in a })
                } catch .invalidJob(let e) {
                    counts.skipped += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "invalid")
                    logger.error("skipping an invalid job: \(e.message)", metadata: position)
                    if !deadLetter(m, topic: topic, reason: e.message) { return }
                } catch {
                    // The spool cannot take it now (disk full, I/O error): keep the offset, retry.
                    logger.error("enqueue failed, retrying in 1 s: \(error)", metadata: position)
                    if !pause(1_000) { return }
                    continue
                }
                break
            }
        }
        storeOffset(jobsConsumer, topic: topic, partition: msg.partition, next: msg.offset + 1)
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
    func deadLetter(_ m: UnsafeMutablePointer<rd_kafka_message_t>, topic: String, reason: String) -> Bool {
        guard let dlq = dlqTopic, let p = producer else { return true }
        let msg = m.pointee
        let value = Self.bytes(msg.payload, msg.len)
        let key = msg.key.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.key_len)) } ?? []
        let headers = Kafka.headers(of: m) + [
            ("x-original-topic", Array(topic.utf8)),
            ("x-original-partition", withUnsafeBytes(of: msg.partition.bigEndian) { Array($0) }),
            ("x-original-offset", withUnsafeBytes(of: msg.offset.bigEndian) { Array($0) }),
            ("x-exception-fqcn", Array("llmspool.InvalidJob".utf8)),
            ("x-exception-message", Array(reason.utf8)),
        ]
        while true {
            let seq = nextSeq
            nextSeq += 1
            let err = Kafka.produce(p, topic: dlq, key: key, value: value, headers: headers, opaque: seq)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                pending[seq] = .deadLetter
                while deadLetterReports[seq] == nil {
                    _ = rd_kafka_poll(p, 100)
                    settleDeliveries()
                    if stopper.isStopping, deadLetterReports[seq] == nil { return false }
                }
                if deadLetterReports.removeValue(forKey: seq) == RD_KAFKA_RESP_ERR_NO_ERROR {
                    BridgeMetrics.delivered(topic: dlq, kind: "dead-letter")
                    logger.notice("sent to the DLQ", metadata: ["dlq": "\(dlq)", "topic": "\(topic)",
                                                            "partition": "\(msg.partition)", "offset": "\(msg.offset)"])
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

    /// Stores offset `next` of a partition, to be committed (only after the message's work is durable).
    func storeOffset(_ consumer: OpaquePointer?, topic: String, partition: Int32, next: Int64) {
        guard let c = consumer else { return }
        let list = rd_kafka_topic_partition_list_new(1)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_topic_partition_list_add(list, topic, partition).pointee.offset = next
        let err = rd_kafka_offsets_store(c, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // E.g. the partition was revoked by a rebalance: its new owner re-delivers the message.
            logger.warning("offset store: \(Kafka.errorString(err))", metadata: ["topic": "\(topic)", "partition": "\(partition)"])
        }
    }
}
