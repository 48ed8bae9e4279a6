import CKafka
public import Logging
import Spool
#if canImport(Glibc)
import Glibc
#endif

/// What a bridge does: which topics it consumes and produces, and how it reaches Kafka.
public struct BridgeConfiguration: Sendable {
    public var spoolPath: String
    public var brokers: String
    public var group: String?
    /// Consume jobs from this topic into `new/`.
    public var jobsIn: String?
    /// Publish results in `done/` to this topic.
    public var resultsOut: String?
    /// Where invalid messages from `jobsIn` go (default Spring's `error.<topic>.<group>`); "" turns it off.
    public var deadLetterTopic: String?
    /// librdkafka properties (`-X key=value`), applied after the bridge's defaults.
    public var properties: [(String, String)]

    public init(spoolPath: String, brokers: String, group: String? = nil, jobsIn: String? = nil,
                resultsOut: String? = nil, deadLetterTopic: String? = nil, properties: [(String, String)] = []) {
        self.spoolPath = spoolPath
        self.brokers = brokers
        self.group = group
        self.jobsIn = jobsIn
        self.resultsOut = resultsOut
        self.deadLetterTopic = deadLetterTopic
        self.properties = properties
    }
}

/// Mirrors a spool to and from Kafka. Runs on the calling thread until `shouldStop` returns true.
///
/// * jobs in: each message is decoded as a job and enqueued durably in `new/`; a job id already
///   in the spool counts as done. Only then is offset+1 stored (`enable.auto.offset.store=false`),
///   so a crash re-delivers rather than loses (at-least-once).
/// * results out: each `done/ID.json` is produced with key = jobId by an idempotent producer;
///   when its delivery report confirms it, `SPOOL/.published/ID` is created so it is not sent again.
public final class Bridge {
    let configuration: BridgeConfiguration
    let logger: Logger
    let spool: Spool
    private var consumer: OpaquePointer?
    private var producer: OpaquePointer?
    private let deliveries = Deliveries()
    private var inFlight: [Int: String] = [:]
    private var sending: Set<String> = []
    private var published: Set<String> = []
    private var nextSeq = 1
    private var retryScanAt: Int64 = 0
    public private(set) var enqueued = 0
    public private(set) var duplicates = 0
    public private(set) var skipped = 0
    public private(set) var delivered = 0

    var group: String { configuration.group ?? "llmspool-bridge" }

    /// The DLQ topic of `jobsIn`, or nil when there is none.
    var dlqTopic: String? {
        guard let topic = configuration.jobsIn else { return nil }
        guard let t = configuration.deadLetterTopic else { return "error.\(topic).\(group)" }
        return t.isEmpty ? nil : t
    }

    public init(configuration: BridgeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.spool = try Spool(path: configuration.spoolPath)
    }

    var publishedDir: String { spool.path + "/.published" }

    public func run(shouldStop: () -> Bool) throws {
        defer { shutdown() }
        try start()
        let watcher = configuration.resultsOut != nil ? try SpoolWatcher(spool, states: [.done]) : nil
        var scanDue = true
        var lastScan: Int64 = 0
        while !shouldStop() {
            if let c = consumer {
                if let m = rd_kafka_consumer_poll(c, producer == nil ? 500 : 100) {
                    handle(m, shouldStop: shouldStop)
                    rd_kafka_message_destroy(m)
                }
            }
            if let p = producer, watcher == nil {
                _ = rd_kafka_poll(p, 0)
                settleDeliveries()
            }
            guard let p = producer, let watcher else { continue }
            _ = rd_kafka_poll(p, 0)
            settleDeliveries()
            let wait: Int32 = consumer != nil ? 0 : (inFlight.isEmpty ? 500 : 20)
            if case .changed = watcher.wait(timeoutMilliseconds: wait) { scanDue = true }
            let now = Self.nowMs()
            if now - lastScan > 5_000 { scanDue = true }
            if scanDue, now >= retryScanAt {
                scanDue = !scanResults(p)
                lastScan = now
            }
        }
        logger.notice("stopping", metadata: ["inFlight": "\(inFlight.count)"])
    }

    // MARK: start and stop

    private func start() throws {
        let base: [(String, String)] = [("bootstrap.servers", configuration.brokers), ("client.id", "llmspool-bridge")]
        if configuration.resultsOut != nil || dlqTopic != nil {
            if configuration.resultsOut != nil {
                try Self.makeDirectory(publishedDir)
                published = Set(Self.list(publishedDir))
            }
            let conf = try Kafka.configuration(base + [("enable.idempotence", "true"), ("acks", "all")] + configuration.properties)
            rd_kafka_conf_set_dr_msg_cb(conf, Deliveries.callback)
            rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(deliveries).toOpaque())
            producer = try Kafka.client(RD_KAFKA_PRODUCER, conf)
            if let t = configuration.resultsOut { logger.info("producing results", metadata: ["topic": "\(t)", "published": "\(published.count)"]) }
        }
        if let topic = configuration.jobsIn {
            let conf = try Kafka.configuration(base + [
                ("group.id", group), ("enable.auto.offset.store", "false"), ("enable.auto.commit", "true"),
                ("auto.offset.reset", "earliest"),
            ] + configuration.properties)
            let c = try Kafka.client(RD_KAFKA_CONSUMER, conf)
            consumer = c
            rd_kafka_poll_set_consumer(c)
            let list = rd_kafka_topic_partition_list_new(1)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
            let err = rd_kafka_subscribe(c, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("subscribe to \(topic): \(Kafka.errorString(err))") }
            logger.info("consuming jobs", metadata: ["topic": "\(topic)", "group": "\(group)", "dlq": "\(dlqTopic ?? "none")"])
        }
    }

    private func shutdown() {
        if let c = consumer {
            // Commits the stored offsets and leaves the group.
            let err = rd_kafka_consumer_close(c)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { logger.warning("consumer close: \(Kafka.errorString(err))") }
            rd_kafka_destroy(c)
            consumer = nil
        }
        if let p = producer {
            let err = rd_kafka_flush(p, 10_000)
            settleDeliveries()
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("flush: \(Kafka.errorString(err)); \(inFlight.count) results will be sent again on restart")
            }
            rd_kafka_destroy(p)
            producer = nil
        }
        logger.notice("stopped", metadata: ["enqueued": "\(enqueued)", "duplicates": "\(duplicates)",
                                            "skipped": "\(skipped)", "published": "\(delivered)"])
    }

    // MARK: jobs in

    private func handle(_ m: UnsafeMutablePointer<rd_kafka_message_t>, shouldStop: () -> Bool) {
        let msg = m.pointee
        if msg.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if msg.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                logger.warning("consumer: \(String(cString: rd_kafka_message_errstr(m)))")
            }
            return
        }
        let topic = String(cString: rd_kafka_topic_name(msg.rkt))
        let position: Logger.Metadata = ["topic": "\(topic)", "partition": "\(msg.partition)", "offset": "\(msg.offset)"]
        let value = msg.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.len)) } ?? []
        let key = msg.key.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: msg.key_len), as: UTF8.self) }
        var headers: OpaquePointer?
        if rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR { headers = nil }
        let header = { (name: String) in Kafka.header(headers, name).map { String(decoding: $0, as: UTF8.self) } }

        switch Self.decodeJob(value, key: key, contentType: header("contentType"),
                              userId: header("userId"), tenantId: header("tenantId"), limits: spool.limits) {
        case .failure(let why):
            skipped += 1
            logger.error("skipping an invalid message: \(why)", metadata: position)
            if !deadLetter(m, topic: topic, reason: why.message, shouldStop: shouldStop) { return }
        case .success(let job):
            while true {
                do {
                    let id = try spool.enqueue(job)
                    enqueued += 1
                    logger.info("enqueued", metadata: position.merging(["jobId": "\(id)"]) { a, _ in a })
                } catch .idExists(let id, let state) {
                    duplicates += 1
                    logger.info("already in the spool", metadata: position.merging(["jobId": "\(id)", "state": "\(state.rawValue)"]) { a, _ in a })
                } catch .invalidJob(let e) {
                    skipped += 1
                    logger.error("skipping an invalid job: \(e.message)", metadata: position)
                    if !deadLetter(m, topic: topic, reason: e.message, shouldStop: shouldStop) { return }
                } catch {
                    // The spool cannot take it now (disk full, I/O error): keep the offset, retry.
                    logger.error("enqueue failed, retrying in 1 s: \(error)", metadata: position)
                    if shouldStop() { return }
                    usleep(1_000_000)
                    if shouldStop() { return }
                    continue
                }
                break
            }
        }
        storeOffset(topic: topic, partition: msg.partition, next: msg.offset + 1)
    }

    /// Turns a message into a job: JSON value (Spring's `JobEvent {jobId, prompt, userId}` or a
    /// full llmspool job), `contentType` possibly JSON-quoted, jobId from the key and
    /// userId/tenantId from headers when the payload has none.
    static func decodeJob(_ value: [UInt8], key: String?, contentType: String?, userId: String?, tenantId: String?,
                          limits: Limits) -> Result<Job, DecodeFailure> {
        if var ct = contentType {
            if ct.count >= 2, ct.hasPrefix("\""), ct.hasSuffix("\"") { ct = String(ct.dropFirst().dropLast()) }
            if !ct.lowercased().hasPrefix("application/json") {
                return .failure(DecodeFailure(message: "contentType \(ct) is not application/json"))
            }
        }
        var job: Job
        do { job = try Job.decode(value, limits: limits) } catch { return .failure(DecodeFailure(message: error.description)) }
        if job.jobId == nil, let key, !key.isEmpty { job.jobId = key }
        if job.userId == nil, let userId, !userId.isEmpty { job.userId = userId }
        if job.tenantId == nil, let tenantId, !tenantId.isEmpty { job.tenantId = tenantId }
        return .success(job)
    }

    struct DecodeFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Sends an invalid message to the DLQ with the original key, value and headers plus Spring's
    /// `x-original-*` and `x-exception-message` headers, and waits for its delivery report (so the
    /// offset is stored only once the dead letter is safe). Returns false if stopped before that.
    private func deadLetter(_ m: UnsafeMutablePointer<rd_kafka_message_t>, topic: String, reason: String,
                            shouldStop: () -> Bool) -> Bool {
        guard let dlq = dlqTopic, let p = producer else { return true }
        let msg = m.pointee
        let value = msg.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.len)) } ?? []
        let key = msg.key.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.key_len)) } ?? []
        var headers: [(String, [UInt8])] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var i = 0
            var name: UnsafePointer<CChar>?
            var v: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, i, &name, &v, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                if let name { headers.append((String(cString: name), v.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? [])) }
                i += 1
            }
        }
        headers += [
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
                deadLetters[seq] = nil
                waitingDeadLetter = seq
                while waitingDeadLetter == seq {
                    _ = rd_kafka_poll(p, 100)
                    settleDeliveries()
                    if shouldStop(), waitingDeadLetter == seq { return false }
                }
                if deadLetters.removeValue(forKey: seq) == true {
                    logger.notice("sent to the DLQ", metadata: ["dlq": "\(dlq)", "topic": "\(topic)",
                                                            "partition": "\(msg.partition)", "offset": "\(msg.offset)"])
                    return true
                }
            } else {
                logger.error("DLQ produce failed: \(Kafka.errorString(err))", metadata: ["dlq": "\(dlq)"])
            }
            if shouldStop() { return false }
            usleep(1_000_000)
        }
    }

    private var waitingDeadLetter = 0
    private var deadLetters: [Int: Bool] = [:]

    private func storeOffset(topic: String, partition: Int32, next: Int64) {
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

    // MARK: results out

    /// Produces every result in `done/` not yet published or in flight. Returns false if it
    /// stopped early (the producer queue is full) and should run again soon.
    private func scanResults(_ p: OpaquePointer) -> Bool {
        guard let topic = configuration.resultsOut else { return true }
        let doneDir = spool.path + "/done"
        for name in Self.list(doneDir) where name.hasSuffix(".json") {
            let id = String(name.dropLast(5))
            if published.contains(id) || sending.contains(id) { continue }
            let bytes: [UInt8]
            do { bytes = try Spool.readInput(doneDir + "/" + name, limit: 8 << 20) } catch {
                logger.warning("cannot read result: \(error)", metadata: ["jobId": "\(id)"])
                continue
            }
            let doc = try? JSONParser.parse(bytes)
            let jobId = doc?["jobId"]?.stringValue ?? id
            var headers: [(String, [UInt8])] = [("contentType", Array("application/json".utf8)), ("jobId", Array(jobId.utf8))]
            if let u = doc?["userId"]?.stringValue { headers.append(("userId", Array(u.utf8))) }
            if let t = doc?["tenantId"]?.stringValue { headers.append(("tenantId", Array(t.utf8))) }
            let seq = nextSeq
            let err = Kafka.produce(p, topic: topic, key: Array(jobId.utf8), value: bytes, headers: headers, opaque: seq)
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                _ = rd_kafka_poll(p, 100)
                settleDeliveries()
                return false
            }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.error("produce failed: \(Kafka.errorString(err))", metadata: ["jobId": "\(id)"])
                retryScanAt = Self.nowMs() + 1_000
                return false
            }
            nextSeq += 1
            inFlight[seq] = id
            sending.insert(id)
        }
        return true
    }

    /// Records the results whose delivery reports arrived: a marker in `.published/` for each success.
    private func settleDeliveries() {
        let reports = deliveries.reports
        deliveries.reports.removeAll()
        for (seq, err) in reports {
            if seq == waitingDeadLetter {
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { logger.error("DLQ delivery failed, retrying: \(Kafka.errorString(err))") }
                deadLetters[seq] = err == RD_KAFKA_RESP_ERR_NO_ERROR
                waitingDeadLetter = 0
                continue
            }
            guard let id = inFlight.removeValue(forKey: seq) else { continue }
            sending.remove(id)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                markPublished(id)
                delivered += 1
                logger.info("published", metadata: ["jobId": "\(id)"])
            } else {
                logger.error("delivery failed, will retry: \(Kafka.errorString(err))", metadata: ["jobId": "\(id)"])
                retryScanAt = Self.nowMs() + 1_000
            }
        }
    }

    private func markPublished(_ id: String) {
        published.insert(id)
        // An empty file: creating it is atomic, so no tmp/ step is needed. Not fsynced: losing a
        // marker in a power loss only re-sends the result (at-least-once).
        let fd = open(publishedDir + "/" + id, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        if fd < 0 {
            logger.warning("cannot record \(id) as published: \(String(cString: strerror(errno))); it will be sent again after a restart")
        } else {
            close(fd)
        }
    }

    // MARK: helpers

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o2770) != 0, errno != EEXIST {
            throw KafkaError("mkdir \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Names in a directory, without dot files.
    static func list(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names
    }
}
