import CKafka
public import Logging
import Spool
import Synchronization
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Which results `--results-out` publishes.
public enum ResultScope: String, Sendable, CaseIterable {
    /// Every result and dead letter of the spool.
    case all
    /// Only those of jobs that came in from Kafka (`--jobs-in`, marked with `origin.kafka`).
    case kafka
}

/// What a bridge does: which topics it consumes and produces, and how it reaches Kafka.
public struct BridgeConfiguration: Sendable {
    public var spoolPath: String
    public var brokers: String
    /// Consumer group of `jobsIn` (default `llmspool-bridge`).
    public var group: String?
    /// Consume jobs from this topic into `new/`.
    public var jobsIn: String?
    /// Publish the jobs arriving in `new/` to this topic; they wait in `forwarded/` for their results.
    public var jobsOut: String?
    /// Consume results from this topic; those of jobs in `forwarded/` settle them.
    public var resultsIn: String?
    /// Consumer group of `resultsIn` (default `llmspool-results.HOSTNAME`: every host reads every result).
    public var resultsGroup: String?
    /// The consumers' static group membership (`group.instance.id`): nil = derived from the host
    /// name and the spool (``Bridge/defaultInstanceID(spoolPath:)``), "" = none (dynamic
    /// membership). The results consumer adds `.results`.
    public var instanceID: String?
    /// Publish the results in `done/` and dead letters in `failed/` to this topic.
    public var resultsOut: String?
    public var resultScope: ResultScope
    /// Where invalid messages from `jobsIn` go (default Spring's `error.<topic>.<group>`); "" turns it off.
    public var deadLetterTopic: String?
    /// librdkafka properties (`-X key=value`), applied after the bridge's defaults.
    public var properties: [(String, String)]
    /// Most jobs held for `jobsOut` and not yet in `forwarded/` (each holds a descriptor; the
    /// bridge raises its open-file limit and stays below it).
    public var maxForwarding: Int
    /// Enough to keep full batches going to Kafka while earlier ones are confirmed and moved.
    public static let defaultMaxForwarding = 5000
    /// The longest a stop may take, from the stop request to the end of ``Bridge/run()`` (ms):
    /// closing the consumers, flushing the producer, putting back what was held. What is not done
    /// by then is left (and said so); see ``BridgeStopIncomplete``.
    public var stopTimeoutMs: Int64
    /// Below systemd's `TimeoutStopSec=20s` in `llmspool-bridge.service`.
    public static let defaultStopTimeoutMs: Int64 = 15_000

    public init(spoolPath: String, brokers: String, group: String? = nil, jobsIn: String? = nil, jobsOut: String? = nil,
                resultsIn: String? = nil, resultsGroup: String? = nil, instanceID: String? = nil, resultsOut: String? = nil,
                resultScope: ResultScope = .all, deadLetterTopic: String? = nil,
                properties: [(String, String)] = [], maxForwarding: Int = BridgeConfiguration.defaultMaxForwarding,
                stopTimeoutMs: Int64 = BridgeConfiguration.defaultStopTimeoutMs) {
        self.spoolPath = spoolPath
        self.brokers = brokers
        self.group = group
        self.jobsIn = jobsIn
        self.jobsOut = jobsOut
        self.resultsIn = resultsIn
        self.resultsGroup = resultsGroup
        self.instanceID = instanceID
        self.resultsOut = resultsOut
        self.resultScope = resultScope
        self.deadLetterTopic = deadLetterTopic
        self.properties = properties
        self.maxForwarding = maxForwarding
        self.stopTimeoutMs = stopTimeoutMs
    }
}

/// A stop that could not do everything within ``BridgeConfiguration/stopTimeoutMs`` (or found the
/// spool gone): what was left, one item per part. Nothing is lost — each item says what happens
/// to it on the next start — but the exit should not look clean.
public struct BridgeStopIncomplete: Error, CustomStringConvertible, Sendable {
    public var left: [String]
    public var description: String { "the bridge stopped with work left: " + left.joined(separator: "; ") }
}

/// Ends a bridge's ``Bridge/run()`` from any thread (a signal handler's queue, a test).
public final class BridgeStopper: Sendable {
    private let flag = Atomic<Bool>(false)
    private let requested = Atomic<Int64>(0)
    private let step = Mutex<String>("running")
    private let watcher: SpoolWatcher

    init(watcher: SpoolWatcher) { self.watcher = watcher }

    public func stop() {
        _ = requested.compareExchange(expected: 0, desired: Bridge.nowMs(), ordering: .relaxed)
        flag.store(true, ordering: .releasing)
        watcher.wake()
    }

    public var isStopping: Bool { flag.load(ordering: .acquiring) }

    /// When ``stop()`` was first called (monotonic ms), or 0.
    var requestedAt: Int64 { requested.load(ordering: .relaxed) }

    /// What the bridge is doing now, for a line logged by whoever gives up waiting for it
    /// (a watchdog after a stop request): e.g. "closing the Kafka consumers".
    public var currentStep: String { step.withLock { $0 } }

    func note(_ what: String) { step.withLock { $0 = what } }
}

/// Mirrors a spool to and from Kafka. ``run()`` runs on the calling thread until ``stopper`` is told to stop.
///
/// One thread, one `poll(2)`: librdkafka's queues write to the spool watcher's eventfd when they
/// turn non-empty, and inotify reports files arriving in `new/`, `done/` and `failed/`, so an idle
/// bridge sleeps (a rescan every few seconds is the safety net). Directions, each optional:
///
/// * jobs in: a message becomes a durable job in `new/` (a known id counts as done), and only then
///   is offset+1 stored (`enable.auto.offset.store=false`): a crash re-delivers, never loses.
/// * jobs out: a job in `new/` is claimed (so no local worker takes it), produced, and moved to
///   `forwarded/` once its delivery report confirms it.
/// * results in: a result whose job is in `forwarded/` settles it into `done/` or `failed/`.
/// * results out: each `done/ID.json` and `failed/ID.json` is produced, and recorded in
///   `SPOOL/.published/` once confirmed.
public final class Bridge {
    var configuration: BridgeConfiguration
    let logger: Logger
    let spool: Spool
    let watcher: SpoolWatcher
    /// Stops ``run()`` from another thread.
    public let stopper: BridgeStopper

    var producer: OpaquePointer?
    var jobsConsumer: OpaquePointer?
    var resultsConsumer: OpaquePointer?
    private var queues: [OpaquePointer] = []
    var contexts: [ClientContext] = []
    var producerContext: ClientContext?

    /// The producer's topic handles, by name. Made right after the producer so that its first
    /// metadata request names them: a topic first named later waits for librdkafka's once-a-second
    /// topic scan before its first message can go out.
    var topicHandles: [String: OpaquePointer] = [:]
    /// Produced messages awaiting their delivery reports, by sequence number.
    var pending: [Int: Pending] = [:]
    var nextSeq = 1
    /// Results (by id) being sent or already sent.
    var sendingResults: Set<String> = []
    var publishedResults: Set<String> = []
    /// Results not to publish (they came in from Kafka, or are out of `resultScope`).
    var ignoredResults: Set<String> = []
    /// Names listed in `new/` for `jobsOut`, worked through from `backlogNext` before listing again.
    var backlog: [String] = []
    var backlogNext = 0
    /// Names in `new/` this bridge holds (produced or about to be).
    var held: Set<String> = []
    /// Held jobs whose produce call must be retried.
    var unsent: [Hold] = []
    /// Held jobs whose delivery reports confirmed them (with their produce sequence numbers), to
    /// move to `forwarded/` together.
    var confirmed: [(seq: Int, hold: Hold)] = []
    /// Confirmed jobs handed to the mover and not yet collected.
    var moving = 0
    /// Held jobs produced and not yet let go (awaiting their reports, confirmed or being moved),
    /// by id: where a result that comes back first finds its job.
    var sent: [String: Hold] = [:]
    /// The mover: moves confirmed jobs to `forwarded/` off the loop's thread.
    let mover = DispatchQueue(label: "llmspool.bridge.forward")
    let moved = MovedBatches()
    /// When a failed produce or delivery may be tried again (monotonic ms).
    var retryAt: Int64 = 0
    /// Called once the Kafka clients exist and the loop is about to start (systemd's READY=1).
    public var onReady: (() -> Void)?
    /// Called on every turn of the loop (systemd's watchdog), which turns at least every
    /// `tickMilliseconds` (default: the 5 s rescan).
    public var onTick: (() -> Void)?
    public var tickMilliseconds: Int64 = Bridge.rescanMilliseconds
    /// Counts for the stop line and the tests.
    public internal(set) var counts = Counts()

    public struct Counts: Sendable {
        public var enqueued = 0, duplicates = 0, skipped = 0, published = 0
        public var forwarded = 0, resultsSettled = 0, resultsIgnored = 0
    }

    enum Pending {
        case result(id: String, state: SpoolState)
        case job(Hold)
        case deadLetter
    }

    var group: String { configuration.group ?? "llmspool-bridge" }
    var resultsGroup: String { configuration.resultsGroup ?? "llmspool-results.\(Spool.hostName)" }

    /// The consumers' `group.instance.id` base, or nil for dynamic membership.
    var instanceID: String? {
        let id = configuration.instanceID ?? Self.defaultInstanceID(spoolPath: configuration.spoolPath)
        return id.isEmpty ? nil : id
    }

    /// `llmspool.HOST.XXXXXXXX`: the host name (characters Kafka refuses in an instance id made
    /// `-`) and a hash of the spool's real path, so that it stays the same across restarts and
    /// differs between the spools of one host.
    public static func defaultInstanceID(spoolPath: String) -> String {
        let host = String(Spool.hostName.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") ? $0 : "-" }.prefix(200))
        var path = spoolPath
        if let r = realpath(spoolPath, nil) {
            path = String(cString: r)
            free(r)
        }
        var h: UInt32 = 2_166_136_261  // FNV-1a
        for b in path.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        let hex = String(h, radix: 16)
        return "llmspool.\(host.isEmpty ? "host" : host).\(String(repeating: "0", count: 8 - hex.count))\(hex)"
    }

    /// The DLQ topic of `jobsIn`, or nil when there is none.
    var dlqTopic: String? {
        guard let topic = configuration.jobsIn else { return nil }
        guard let t = configuration.deadLetterTopic else { return "error.\(topic).\(group)" }
        return t.isEmpty ? nil : t
    }

    public init(configuration: BridgeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        if configuration.jobsOut != nil || configuration.resultsIn != nil {
            try Spool.makeForwardedDirectory(at: configuration.spoolPath)
        }
        spool = try Spool(path: configuration.spoolPath)
        var watched: [SpoolState] = []
        if configuration.jobsOut != nil { watched.append(.new) }
        if configuration.resultsOut != nil { watched += [.done, .failed] }
        // Arrivals only: the bridge's own moves out of new/ must not wake it.
        watcher = try SpoolWatcher(spool, states: watched, events: .arrivals)
        stopper = BridgeStopper(watcher: watcher)
    }

    /// The side-record area of `resultsOut`'s markers (docs/spool-format.md).
    static let publishedArea = ".published"
    var publishedDir: String { spool.path + "/" + Self.publishedArea }

    /// How often the spool is rescanned when nothing woke the bridge (inotify's safety net).
    static let rescanMilliseconds: Int64 = 5_000
    /// How often `jobsOut` runs crash recovery (dead claims go back to `new/`).
    static let recoveryMilliseconds: Int64 = 60_000
    static let gaugeMilliseconds: Int64 = 5_000

    /// Descriptors kept for everything but holds: directories, the watcher, librdkafka's sockets.
    static let reservedDescriptors = 256

    /// Runs until stopped; then stops within ``BridgeConfiguration/stopTimeoutMs`` of the stop
    /// request, throwing ``BridgeStopIncomplete`` if anything was left.
    public func run() throws {
        do { try serve() } catch {
            _ = shutdown()
            throw error
        }
        let left = shutdown()
        if !left.isEmpty {
            let e = BridgeStopIncomplete(left: left)
            logger.error("\(e)")
            throw e
        }
    }

    private func serve() throws {
        if configuration.jobsOut != nil {
            let limit = Spool.raiseOpenFileLimit().after
            let most = max(1, limit - Self.reservedDescriptors)
            if configuration.maxForwarding > most {
                logger.notice("the open-file limit (\(limit)) allows \(most) jobs held for Kafka at once, fewer than --max-forwarding; raise LimitNOFILE",
                              metadata: ["maxForwarding": "\(configuration.maxForwarding)"])
                configuration.maxForwarding = most
            }
        }
        try start()
        var scanDue = true
        var lastScan: Int64 = 0, lastRecovery: Int64 = 0, lastGauges: Int64 = 0
        onReady?()
        while !stopper.isStopping {
            onTick?()
            var busy = false
            if let c = jobsConsumer { busy = drain(c, handle: ingestJobs) || busy }
            if let c = resultsConsumer { busy = drain(c) { $0.forEach(handleResult) } || busy }
            if let p = producer {
                _ = rd_kafka_poll(p, 0)
                settleDeliveries()
                collectMoved()
            }
            if let dead = contexts.first(where: { $0.fatal.load(ordering: .acquiring) }) {
                throw KafkaError("the Kafka \(dead.role) client hit a fatal error (see the log); exiting so that it restarts clean")
            }
            let now = Self.nowMs()
            if now - lastScan >= Self.rescanMilliseconds { scanDue = true }
            if configuration.jobsOut != nil || configuration.resultsIn != nil, now - lastRecovery >= Self.recoveryMilliseconds {
                lastRecovery = now
                recover()
            }
            if scanDue, now >= retryAt {
                lastScan = now
                scanDue = false
                if configuration.jobsOut != nil, !forwardWaiting() { scanDue = true }
                if configuration.resultsOut != nil, !publishResults() { scanDue = true }
            }
            if now - lastGauges >= Self.gaugeMilliseconds {
                lastGauges = now
                recordGauges()
            }
            var timeout = Int32(clamping: max(1, min(Self.rescanMilliseconds, tickMilliseconds)))
            if busy { timeout = 0 } else if scanDue { timeout = Int32(clamping: max(10, min(1_000, retryAt - now))) }
            if !pending.isEmpty { timeout = min(timeout, 1_000) }
            if case .changed = watcher.wait(timeoutMilliseconds: timeout) { scanDue = true }
        }
        logger.notice("stopping", metadata: ["awaitingDelivery": "\(pending.count)", "limitMs": "\(configuration.stopTimeoutMs)"])
    }

    // MARK: start and stop

    private func start() throws {
        let base: [(String, String)] = [("bootstrap.servers", configuration.brokers), ("client.id", "llmspool-bridge")]
        if configuration.resultsOut != nil || configuration.jobsOut != nil || dlqTopic != nil {
            if configuration.resultsOut != nil {
                try Self.makeDirectory(publishedDir)
                publishedResults = Set(try spool.recordNames(in: Self.publishedArea))
            }
            let ctx = ClientContext(role: "producer", logger: logger)
            let conf = try Kafka.configuration(base + [("enable.idempotence", "true"), ("acks", "all")] + configuration.properties, context: ctx)
            rd_kafka_conf_set_dr_msg_cb(conf, ClientContext.deliveryCallback)
            let p = try Kafka.client(RD_KAFKA_PRODUCER, conf)
            producer = p
            producerContext = ctx
            contexts.append(ctx)
            for topic in [configuration.jobsOut, configuration.resultsOut, dlqTopic].compactMap({ $0 }) where topicHandles[topic] == nil {
                guard let rkt = rd_kafka_topic_new(p, topic, nil) else {
                    throw KafkaError("topic \(topic): \(Kafka.errorString(rd_kafka_last_error()))")
                }
                topicHandles[topic] = rkt
            }
            listen(rd_kafka_queue_get_main(p))
            if let t = configuration.resultsOut {
                logger.info("producing results", metadata: ["topic": "\(t)", "of": "\(configuration.resultScope.rawValue)",
                                                            "published": "\(publishedResults.count)"])
            }
            if let t = configuration.jobsOut { logger.info("forwarding jobs", metadata: ["topic": "\(t)"]) }
        }
        if let topic = configuration.jobsIn {
            jobsConsumer = try consumer(base, role: "jobs-consumer", group: group, instance: instanceID, topic: topic)
            logger.info("consuming jobs", metadata: ["topic": "\(topic)", "group": "\(group)", "instance": "\(instanceID ?? "none")",
                                                     "dlq": "\(dlqTopic ?? "none")"])
        }
        if let topic = configuration.resultsIn {
            let instance = instanceID.map { $0 + ".results" }
            resultsConsumer = try consumer(base, role: "results-consumer", group: resultsGroup, instance: instance, topic: topic)
            logger.info("consuming results", metadata: ["topic": "\(topic)", "group": "\(resultsGroup)", "instance": "\(instance ?? "none")"])
        }
        if configuration.jobsOut != nil || configuration.resultsIn != nil { recover() }
    }

    private func consumer(_ base: [(String, String)], role: String, group: String, instance: String?, topic: String) throws -> OpaquePointer {
        let ctx = ClientContext(role: role, logger: logger)
        let conf = try Kafka.configuration(base + [
            ("group.id", group), ("enable.auto.offset.store", "false"), ("enable.auto.commit", "true"),
            ("auto.offset.reset", "earliest"),
        ] + (instance.map { [("group.instance.id", $0)] } ?? []) + configuration.properties, context: ctx)
        rd_kafka_conf_set_rebalance_cb(conf, ClientContext.rebalanceCallback)
        let c = try Kafka.client(RD_KAFKA_CONSUMER, conf)
        contexts.append(ctx)
        rd_kafka_poll_set_consumer(c)
        listen(rd_kafka_queue_get_consumer(c))
        try Kafka.subscribe(c, topic: topic)
        return c
    }

    private func listen(_ queue: OpaquePointer?) {
        guard let queue else { return }
        Kafka.wake(queue, eventFD: watcher.wakeDescriptor)
        queues.append(queue)
    }

    /// Time kept at the end of a stop for putting back what was held and the last log lines.
    static let stopMarginMilliseconds: Int64 = 1_000

    /// Closes the consumers (committing the stored offsets, leaving the group), flushes the
    /// producer and puts back what was held — each step bounded, so the whole ends by the stop
    /// request plus ``BridgeConfiguration/stopTimeoutMs``. Returns what was left undone.
    ///
    /// librdkafka 2.0's `rd_kafka_consumer_close()` can wait for good when no broker is left to
    /// answer: the consumers are closed on threads of their own, and one still closing when its
    /// time is up is abandoned (its offsets stored since the last commit are consumed again
    /// after a restart; their jobs are then known and skipped).
    private func shutdown() -> [String] {
        let begun = Self.nowMs()
        let asked = stopper.requestedAt
        let deadline = max(begun, (asked > 0 ? asked : begun) + configuration.stopTimeoutMs - Self.stopMarginMilliseconds)
        var left: [String] = []
        for q in queues { rd_kafka_queue_destroy(q) }
        queues.removeAll()
        let consumers = [(jobsConsumer, "jobs"), (resultsConsumer, "results")].compactMap { c, role in c.map { (KafkaHandle($0), role) } }
        if !consumers.isEmpty {
            stopper.note("closing the Kafka consumers (committing offsets, leaving the group)")
            // Half the time left at most, so that the producer's flush gets the rest.
            let closeBy = begun + max(0, deadline - begun) / 2
            let logger = self.logger
            let closing = consumers.map { handle, role in
                Self.onThread {
                    let err = rd_kafka_consumer_close(handle.rk)
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR { logger.warning("\(role) consumer close: \(Kafka.errorString(err))") }
                    rd_kafka_destroy(handle.rk)
                }
            }
            for (done, (_, role)) in zip(closing, consumers) where !Self.wait(done, untilMs: closeBy) {
                left.append("the \(role) consumer did not close within \(closeBy - begun) ms (no broker answering?): offsets stored since its last commit were not committed, so those messages are consumed again after a restart")
            }
        }
        jobsConsumer = nil
        resultsConsumer = nil
        if let p = producer {
            stopper.note("flushing the producer (\(pending.count) messages awaiting delivery)")
            let flushMs = Int32(clamping: min(10_000, max(0, deadline - Self.nowMs())))
            let err = rd_kafka_flush(p, flushMs)
            _ = rd_kafka_poll(p, 0)
            settleDeliveries()
            if err != RD_KAFKA_RESP_ERR_NO_ERROR || !pending.isEmpty {
                var jobs = 0, results = 0, deadLetters = 0
                for p in pending.values {
                    switch p {
                    case .job: jobs += 1
                    case .result: results += 1
                    case .deadLetter: deadLetters += 1
                    }
                }
                left.append("\(pending.count) messages not confirmed by Kafka within \(flushMs) ms: \(jobs) jobs (they stay in new/ and are sent again), \(results) results (sent again after a restart), \(deadLetters) dead letters")
                // Drop what is queued, so that destroying the producer does not wait for it.
                _ = rd_kafka_purge(p, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
            }
            for rkt in topicHandles.values { rd_kafka_topic_destroy(rkt) }
            topicHandles.removeAll()
            stopper.note("closing the producer")
            let handle = KafkaHandle(p)
            if !Self.wait(Self.onThread { rd_kafka_destroy(handle.rk) }, untilMs: max(deadline, Self.nowMs() + 200)) {
                left.append("the producer did not close")
            }
            producer = nil
            stopper.note("moving confirmed jobs to forwarded/")
            let mover = self.mover
            if Self.wait(Self.onThread { mover.sync {} }, untilMs: max(deadline, Self.nowMs() + 200)) {
                collectMoved()
            } else {
                left.append("\(moving) confirmed jobs were still being moved to forwarded/ (recovery finishes or undoes each move)")
            }
        }
        // Jobs never confirmed stay in new/ (they may reach Kafka twice: at-least-once).
        stopper.note("putting back held jobs")
        for case .job(let hold) in pending.values { unhold(hold) }
        for hold in unsent { unhold(hold) }
        pending.removeAll()
        unsent.removeAll()
        if access(spool.path + "/" + SpoolState.new.rawValue, F_OK) != 0 {
            left.append("the spool \(spool.path) is gone (\(String(cString: strerror(errno)))): nothing could be written to it")
        }
        if !left.isEmpty {
            // A client abandoned mid-close may still call back into its context: keep them all alive.
            for ctx in contexts { _ = Unmanaged.passRetained(ctx) }
        }
        stopper.note("stopped")
        let c = counts
        logger.notice("stopped", metadata: ["enqueued": "\(c.enqueued)", "duplicates": "\(c.duplicates)",
                                            "skipped": "\(c.skipped)", "published": "\(c.published)",
                                            "forwarded": "\(c.forwarded)", "resultsSettled": "\(c.resultsSettled)",
                                            "resultsIgnored": "\(c.resultsIgnored)", "stopMs": "\(Self.nowMs() - (asked > 0 ? asked : begun))"])
        return left
    }

    /// Runs `work` on a thread of its own; the semaphore is signalled when it ends.
    static func onThread(_ work: @escaping @Sendable () -> Void) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            work()
            done.signal()
        }
        return done
    }

    /// Waits for `done` until `untilMs` (monotonic); false if it had not been signalled by then.
    static func wait(_ done: DispatchSemaphore, untilMs: Int64) -> Bool {
        done.wait(timeout: .now() + .milliseconds(Int(max(0, untilMs - nowMs())))) == .success
    }

    // MARK: the event loop's pieces

    /// Serves a consumer's queue until it is empty (its eventfd wake fires only on empty → non-empty),
    /// at most 500 messages (waiting up to 5 ms for more once one has come), and hands them to
    /// `handle` as one batch; returns true if more may be
    /// waiting. The offsets `handle` stored are then committed (asynchronously), not only by the
    /// 5-second auto-commit: a member joining the group starts right after them, even when the
    /// commit a revocation attempts is refused because the rebalance has begun.
    private func drain(_ c: OpaquePointer, handle: ([Consumed]) -> Void) -> Bool {
        var batch: [Consumed] = []
        var more = true
        let started = Self.nowMs()
        for _ in 0..<500 {
            var next = rd_kafka_consumer_poll(c, 0)
            // A batch shares one group commit: give the fetcher a few milliseconds to fill it.
            if next == nil, !batch.isEmpty, Self.nowMs() - started < 5 { next = rd_kafka_consumer_poll(c, 2) }
            guard let m = next else { more = false; break }
            defer { rd_kafka_message_destroy(m) }
            if m.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.pointee.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    logger.warning("consumer: \(String(cString: rd_kafka_message_errstr(m)))")
                }
                continue
            }
            batch.append(Consumed(m))
        }
        if !batch.isEmpty {
            handle(batch)
            _ = rd_kafka_commit(c, nil, 1)
        }
        return more && !stopper.isStopping
    }

    /// Produces one message to `topic`, one of the producer's topics (see ``topicHandles``).
    func produce(_ p: OpaquePointer, topic: String, key: [UInt8], value: [UInt8], headers: [(String, [UInt8])],
                 opaque: Int) -> rd_kafka_resp_err_t {
        guard let rkt = topicHandles[topic] else { return RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC }
        return Kafka.produce(p, topic: rkt, key: key, value: value, headers: headers, opaque: opaque)
    }

    /// Reads the delivery reports served by the last `rd_kafka_poll` and acts on each.
    func settleDeliveries() {
        guard let ctx = producerContext else { return }
        var jobsDelivered = 0
        defer { BridgeMetrics.delivered(topic: configuration.jobsOut ?? "", kind: "job", count: jobsDelivered) }
        for (seq, err) in ctx.takeReports() {
            guard let what = pending.removeValue(forKey: seq) else { continue }
            switch what {
            case .deadLetter:
                deadLetterReports[seq] = err
            case .result(let id, let state):
                sendingResults.remove(id)
                if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    markPublished(id)
                    counts.published += 1
                    BridgeMetrics.delivered(topic: configuration.resultsOut ?? "", kind: "result")
                    logger.info("published", metadata: ["jobId": "\(id)", "state": "\(state.rawValue)"])
                } else {
                    BridgeMetrics.deliveryError(topic: configuration.resultsOut ?? "", kind: "result")
                    logger.error("result delivery failed, will retry: \(Kafka.errorString(err))", metadata: ["jobId": "\(id)"])
                    retryAt = Self.nowMs() + 1_000
                }
            case .job(let hold):
                if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    confirmed.append((seq, hold))
                    jobsDelivered += 1
                } else {
                    BridgeMetrics.deliveryError(topic: configuration.jobsOut ?? "", kind: "job")
                    logger.error("job delivery failed; it stays in new/ and is sent again: \(Kafka.errorString(err))", metadata: ["jobId": "\(hold.id)"])
                    unhold(hold)
                    retryAt = Self.nowMs() + 1_000
                }
            }
        }
        moveConfirmed()
    }

    /// The gauges, every few seconds (not on every turn: counting what awaits delivery walks
    /// every pending message): consumer lag over the assigned partitions, high watermark (cached)
    /// minus position, and the messages awaiting their delivery reports.
    private func recordGauges() {
        var jobs = 0, results = 0
        for p in pending.values {
            switch p {
            case .job: jobs += 1
            case .result: results += 1
            case .deadLetter: break
            }
        }
        BridgeMetrics.awaitingDelivery(kind: "job", jobs + unsent.count)
        BridgeMetrics.awaitingDelivery(kind: "result", results)
        for (c, topic) in [(jobsConsumer, configuration.jobsIn), (resultsConsumer, configuration.resultsIn)] {
            guard let c, let topic else { continue }
            var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
            guard rd_kafka_assignment(c, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { continue }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            _ = rd_kafka_position(c, list)
            var lag: Int64 = 0
            for i in 0..<Int(list.pointee.cnt) {
                let e = list.pointee.elems[i]
                var low: Int64 = 0, high: Int64 = 0
                guard rd_kafka_get_watermark_offsets(c, e.topic, e.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                      high >= 0 else { continue }
                let position = e.offset >= 0 ? e.offset : low
                lag += max(0, high - position)
                BridgeMetrics.lag(topic: topic, partition: e.partition, max(0, high - position))
            }
            BridgeMetrics.lag(topic: topic, lag)
        }
    }

    var deadLetterReports: [Int: rd_kafka_resp_err_t] = [:]

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

    static func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8] {
        pointer.map { Array(UnsafeRawBufferPointer(start: $0, count: count)) } ?? []
    }
}

/// A librdkafka client handle passed to the thread that closes it (librdkafka's calls are thread-safe).
struct KafkaHandle: @unchecked Sendable {
    let rk: OpaquePointer
    init(_ rk: OpaquePointer) { self.rk = rk }
}

/// A consumed message, copied out of librdkafka's buffers.
struct Consumed {
    var topic: String
    var partition: Int32
    var offset: Int64
    var key: [UInt8]?
    var value: [UInt8]
    var headers: [(String, [UInt8])]

    init(_ m: UnsafeMutablePointer<rd_kafka_message_t>) {
        let msg = m.pointee
        topic = String(cString: rd_kafka_topic_name(msg.rkt))
        partition = msg.partition
        offset = msg.offset
        key = msg.key.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.key_len)) }
        value = Bridge.bytes(msg.payload, msg.len)
        headers = Kafka.headers(of: m)
    }

    var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }

    /// The last value of header `name`, as text.
    func header(_ name: String) -> String? {
        headers.last { $0.0 == name }.map { String(decoding: $0.1, as: UTF8.self) }
    }

    /// Topic, partition and offset, for log metadata.
    var position: Logger.Metadata { ["topic": "\(topic)", "partition": "\(partition)", "offset": "\(offset)"] }
}
