import Basics
import CKafka
import Dispatch
public import Logging
import Spool

#if canImport(Glibc)
import Glibc
#endif

/// Mirrors a spool to and from Kafka. ``run()`` runs on the calling thread until ``stopper`` is
/// told to stop (``BridgeService`` runs it under swift-service-lifecycle).
///
/// One thread, one `poll(2)`: librdkafka's queues write to the spool watcher's eventfd when they
/// turn non-empty, and inotify reports files arriving in `new/`, `done/` and `failed/` (and, for
/// deltas, partial files created in `cur/` and written), so an idle bridge sleeps (a rescan every
/// few seconds is the safety net). Each direction is a type of its own with a state machine of
/// its own, and each is optional:
///
/// * ``JobsIn`` (``JobsInStateMachine``): a message becomes a durable job in `new/` (a known id
///   counts as done), and only then is offset+1 stored; invalid ones go to the ``DeadLetters``
///   (``DeadLetterStateMachine``) first; with `maxQueued`, back-pressure.
/// * ``JobsOut`` (``JobsOutStateMachine``): a job in `new/` is held (so no local worker takes it),
///   produced, and moved to `forwarded/` once its delivery report confirms it.
/// * ``ResultsIn`` (``ResultsInStateMachine``): a result whose job is in `forwarded/` (or held by
///   jobs-out) settles it into `done/` or `failed/`.
/// * ``ResultsOut`` (``ResultsOutStateMachine``): each `done/ID.json` and `failed/ID.json` is
///   produced, and recorded in `SPOOL/.published/` once confirmed.
/// * ``DeltasOut`` (``DeltasOutStateMachine``): the partial answers of streamed jobs
///   (`cur/.ID.json.partial`) are produced as they are written, one message per delta, restart
///   and end.
///
/// librdkafka's callbacks (delivery reports, rebalances, fatal errors) become ``KafkaEvent``s,
/// handled in one place (``handle(_:now:)``) after each turn's polls.
public final class Bridge {
    var configuration: BridgeConfiguration
    let logger: Logger
    let spool: Spool
    let watcher: SpoolWatcher
    /// Stops ``run()`` from another thread.
    public let stopper: BridgeStopper

    private var producer: KafkaProducer?
    private var jobsIn: JobsIn?
    private var jobsOut: JobsOut?
    private var resultsIn: ResultsIn?
    private var resultsOut: ResultsOut?
    private var deltasOut: DeltasOut?
    private var deadLetters: DeadLetters?
    private var contexts: [ClientContext] = []
    /// Jobs confirmed by delivery reports this turn (one metric update per turn).
    private var jobsDelivered = 0

    /// Called once the Kafka clients exist and the loop is about to start (systemd's READY=1).
    public var onReady: (() -> Void)?
    /// Called on every turn of the loop (systemd's watchdog), which turns at least every
    /// `tickMilliseconds` (default: the 5 s rescan).
    public var onTick: (() -> Void)?
    public var tickMilliseconds: Int64 = Bridge.rescanMilliseconds

    public struct Counts: Sendable {
        public var enqueued = 0, duplicates = 0, skipped = 0, published = 0
        public var forwarded = 0, resultsSettled = 0, resultsIgnored = 0
        /// Messages of `--deltas-out` confirmed.
        public var deltas = 0
    }

    /// Counts for the stop line and the tests.
    public var counts: Counts {
        var c = Counts()
        c.enqueued = jobsIn?.enqueued ?? final.enqueued
        c.duplicates = jobsIn?.duplicates ?? final.duplicates
        c.skipped = jobsIn?.skipped ?? final.skipped
        c.published = resultsOut?.published ?? 0
        c.forwarded = jobsOut?.forwarded ?? 0
        c.resultsSettled = resultsIn?.settled ?? final.resultsSettled
        c.resultsIgnored = resultsIn?.ignored ?? final.resultsIgnored
        c.deltas = deltasOut?.published ?? 0
        return c
    }

    /// The consumers' counts, kept when they are closed.
    private var final = Counts()

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
        var watched: [(state: SpoolState, events: SpoolWatcher.Events)] = []
        // Arrivals only: the bridge's own moves out of new/ must not wake it.
        if configuration.jobsOut != nil { watched.append((.new, .arrivals)) }
        // Results out publishes what arrives in done/ and failed/; back-pressure counts what left;
        // deltas out ends a stream when its result arrives.
        if configuration.resultsOut != nil || (configuration.jobsIn != nil && configuration.maxQueued != nil) || configuration.deltasOut != nil {
            watched += [(.done, .arrivals), (.failed, .arrivals)]
        }
        // Deltas out: partial files created in cur/ (claims arrive by rename and do not wake it).
        if configuration.deltasOut != nil { watched.append((.cur, .creations)) }
        watcher = try SpoolWatcher(spool, watching: watched)
        stopper = BridgeStopper(watcher: watcher)
    }

    /// How often the spool is rescanned when nothing woke the bridge (inotify's safety net).
    static let rescanMilliseconds: Int64 = 5_000
    /// How often `jobsOut` runs crash recovery (dead claims go back to `new/`).
    static let recoveryMilliseconds: Int64 = 60_000
    static let gaugeMilliseconds: Int64 = 5_000

    /// Descriptors kept for everything but holds: directories, the watcher, librdkafka's sockets.
    static let reservedDescriptors = 256

    /// Runs until stopped; then stops within ``BridgeConfiguration/stopTimeout`` of the stop
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
        if configuration.deltasOut != nil, configuration.jobsOut == nil {
            // Each followed stream holds its partial file open.
            _ = Spool.raiseOpenFileLimit()
        }
        if configuration.jobsOut != nil {
            let limit = Spool.raiseOpenFileLimit().after
            let most = max(1, limit - Self.reservedDescriptors)
            if configuration.maxForwarding > most {
                logger.notice(
                    "the open-file limit (\(limit)) allows \(most) jobs held for Kafka at once, fewer than --max-forwarding; raise LimitNOFILE",
                    metadata: ["maxForwarding": "\(configuration.maxForwarding)"])
                configuration.maxForwarding = most
            }
        }
        try start()
        var scanDue = true
        var lastScan: Int64 = 0, lastRecovery = Self.nowMs(), lastGauges: Int64 = 0
        onReady?()
        while !stopper.isStopping {
            onTick?()
            let now = ContinuousClock.now
            var busy = false
            if let j = jobsIn { busy = j.serve(now: now) || busy }
            if let r = resultsIn { busy = r.serve(now: now, jobsOut: jobsOut) || busy }
            producer?.poll()
            try handleEvents(now: now)
            if let d = deltasOut { busy = d.serve(now: now) || busy }
            deadLetters?.produceDue(now: now)
            jobsIn?.count(now: now)
            let ms = Self.nowMs()
            if ms - lastScan >= Self.rescanMilliseconds {
                scanDue = true
                jobsIn?.spoolChanged()
                if let d = deltasOut {
                    d.rescan()
                    busy = d.machine.hasQueued || busy
                }
            }
            if configuration.jobsOut != nil || configuration.resultsIn != nil, ms - lastRecovery >= Self.recoveryMilliseconds {
                lastRecovery = ms
                recover()
            }
            if scanDue {
                lastScan = ms
                scanDue = false
                if let o = jobsOut, !o.forwardWaiting(now: now, stopping: { stopper.isStopping }) { scanDue = true }
                if let r = resultsOut, !r.publish(now: now) { scanDue = true }
            }
            if ms - lastGauges >= Self.gaugeMilliseconds {
                lastGauges = ms
                recordGauges()
            }
            var timeout = Int32(clamping: max(1, min(Self.rescanMilliseconds, tickMilliseconds)))
            if busy {
                timeout = 0
            } else if scanDue {
                let retry = [jobsOut?.retryAt, resultsOut?.retryAt].compactMap { $0 }.min()
                timeout = Int32(clamping: max(10, min(1_000, retry.map { Self.milliseconds($0 - now) } ?? 0)))
            }
            if awaitingDelivery > 0 { timeout = min(timeout, 1_000) }
            if let at = [jobsIn?.nextWake(now: now), deadLetters?.nextDue, resultsIn?.retryAt, deltasOut?.retryAt].compactMap({ $0 }).min() {
                timeout = min(timeout, Int32(clamping: max(0, Self.milliseconds(at - now))))
            }
            if case .changed(let arrived, let overflow) = watcher.wait(timeoutMilliseconds: timeout) {
                deltasOut?.spoolChanged(arrived, overflow: overflow)
                // Writes to partial files concern deltas out alone: they do not make the others rescan.
                if overflow || arrived.isEmpty || arrived.keys.contains(where: { $0 != .cur }) {
                    scanDue = true
                    jobsIn?.spoolChanged()
                }
            }
        }
        logger.notice("stopping", metadata: ["awaitingDelivery": "\(awaitingDelivery)", "limitMs": "\(configuration.stopTimeout.wholeMilliseconds)"])
    }

    /// Messages produced and not yet confirmed, of every kind.
    private var awaitingDelivery: Int {
        (jobsOut?.machine.inFlight ?? 0) + (resultsOut?.machine.inFlight ?? 0) + (deadLetters?.inFlight ?? 0)
            + (deltasOut?.machine.inFlight ?? 0)
    }

    // MARK: events

    /// Takes the events librdkafka's callbacks left in every client's context, and the mover's
    /// finished batches, and hands each to its direction.
    private func handleEvents(now: ContinuousClock.Instant) throws {
        for ctx in contexts {
            for event in ctx.takeEvents() { try handle(event, now: now) }
        }
        if jobsDelivered > 0 {
            BridgeMetrics.delivered(topic: configuration.jobsOut ?? "", kind: "job", count: jobsDelivered)
            jobsDelivered = 0
        }
        if let o = jobsOut {
            o.moveConfirmed()
            let ids = o.collectMoved(now: now)
            if !ids.isEmpty { resultsIn?.released(ids: ids, now: now, jobsOut: o) }
        }
    }

    /// The one place librdkafka's callbacks act: a delivery report goes to the direction its tag
    /// names, a rebalance of the jobs consumer to jobs-in (back-pressure waits for it), a fatal
    /// error ends the bridge.
    func handle(_ event: KafkaEvent, now: ContinuousClock.Instant) throws {
        switch event {
        case .delivered(let raw, let code):
            guard let tag = DeliveryTag(raw: raw) else { return }
            switch tag.owner {
            case .jobsOut:
                if jobsOut?.delivered(tag, code: code, now: now) == true { jobsDelivered += 1 }
            case .resultsOut:
                resultsOut?.delivered(tag, code: code, now: now)
            case .deltasOut:
                deltasOut?.delivered(tag, code: code)
            case .deadLetters:
                if deadLetters?.delivered(tag, code: code, now: now) == true { jobsIn?.deadLetterConfirmed() }
            }
        case .assigned(let role, _):
            if role == Self.jobsRole { jobsIn?.assigned() }
        case .revoked(let role, _):
            if role == Self.jobsRole { jobsIn?.revoked() }
        case .fatal(let role, let error):
            logger.critical("the Kafka \(role) client hit a fatal error; exiting so that it restarts clean: \(error)")
            throw error
        }
    }

    static let jobsRole = "jobs-consumer", resultsRole = "results-consumer"

    // MARK: start and stop

    private func start() throws {
        let base: [(String, String)] = [("bootstrap.servers", configuration.brokers), ("client.id", "llmspool-bridge")]
        let fd = watcher.wakeDescriptor
        if configuration.resultsOut != nil || configuration.jobsOut != nil || dlqTopic != nil || configuration.deltasOut != nil {
            let p = try KafkaProducer(
                properties: base + [("enable.idempotence", "true"), ("acks", "all")] + configuration.properties,
                logger: logger, eventFD: fd)
            producer = p
            contexts.append(p.client.context)
            // Topic handles right after the producer (see KafkaProducer.topic).
            if let t = configuration.jobsOut {
                jobsOut = try JobsOut(
                    topic: t, producer: p, spool: spool, watcher: watcher, logger: logger,
                    maxForwarding: configuration.maxForwarding)
                logger.info("forwarding jobs", metadata: ["topic": "\(t)"])
            }
            if let t = configuration.resultsOut {
                resultsOut = try ResultsOut(topic: t, scope: configuration.resultScope, producer: p, spool: spool, logger: logger)
            }
            if let t = configuration.deltasOut {
                deltasOut = try DeltasOut(
                    topic: t, scope: configuration.resultScope, producer: p, spool: spool, watcher: watcher, logger: logger)
            }
            if let t = dlqTopic { deadLetters = try DeadLetters(topic: t, producer: p, logger: logger) }
        }
        if let topic = configuration.jobsIn {
            let c = try consumer(base, role: Self.jobsRole, group: group, instance: instanceID, topic: topic)
            logger.info(
                "consuming jobs",
                metadata: [
                    "topic": "\(topic)", "group": "\(group)", "instance": "\(instanceID ?? "none")",
                    "dlq": "\(dlqTopic ?? "none")",
                ])
            jobsIn = JobsIn(consumer: c, spool: spool, logger: logger, deadLetters: deadLetters, maxQueued: configuration.maxQueued)
        }
        if let topic = configuration.resultsIn {
            let instance = instanceID.map { $0 + ".results" }
            let c = try consumer(base, role: Self.resultsRole, group: resultsGroup, instance: instance, topic: topic)
            resultsIn = ResultsIn(consumer: c, spool: spool, logger: logger)
            logger.info("consuming results", metadata: ["topic": "\(topic)", "group": "\(resultsGroup)", "instance": "\(instance ?? "none")"])
        }
        if configuration.jobsOut != nil || configuration.resultsIn != nil { recover() }
        // Streams of jobs still running are sent from their start (consumers drop what they had by offset).
        deltasOut?.rescan()
    }

    private func consumer(_ base: [(String, String)], role: String, group: String, instance: String?, topic: String) throws -> KafkaConsumer {
        let c = try KafkaConsumer(
            properties: base + [
                ("group.id", group), ("enable.auto.offset.store", "false"), ("enable.auto.commit", "true"),
                ("auto.offset.reset", "earliest"),
            ] + (instance.map { [("group.instance.id", $0)] } ?? []) + configuration.properties,
            role: role, topic: topic, logger: logger, eventFD: watcher.wakeDescriptor)
        contexts.append(c.client.context)
        return c
    }

    /// One pass of crash recovery: dead workers' claims back to `new/`, `forwarded/` copies whose
    /// result won retired.
    private func recover() {
        do {
            let r = try spool.recover()
            if !r.givenBack.isEmpty || !r.deadLettered.isEmpty || !r.alreadySettled.isEmpty {
                logger.notice(
                    "recovered",
                    metadata: [
                        "givenBack": "\(r.givenBack.count)", "deadLettered": "\(r.deadLettered.count)",
                        "alreadySettled": "\(r.alreadySettled.count)",
                    ])
            }
        } catch {
            logger.error("recovery failed: \(error)")
        }
    }

    /// Time kept at the end of a stop for putting back what was held and the last log lines.
    static let stopMarginMilliseconds: Int64 = 1_000

    /// Closes the consumers (committing the stored offsets, leaving the group), flushes the
    /// producer and puts back what was held — each step bounded, so the whole ends by the stop
    /// request plus ``BridgeConfiguration/stopTimeout``. Returns what was left undone.
    ///
    /// librdkafka 2.0's `rd_kafka_consumer_close()` can wait for good when no broker is left to
    /// answer: the consumers are closed on threads of their own, and one still closing when its
    /// time is up is abandoned (its offsets stored since the last commit are consumed again
    /// after a restart; their jobs are then known and skipped).
    private func shutdown() -> [String] {
        let begun = Self.nowMs()
        let asked = stopper.requestedAt
        let deadline = max(begun, (asked > 0 ? asked : begun) + configuration.stopTimeout.wholeMilliseconds - Self.stopMarginMilliseconds)
        var left: [String] = []
        producer?.quiet()
        let consumers = [(jobsIn?.consumer, "jobs"), (resultsIn?.consumer, "results")].compactMap { c, role in c.map { ($0, role) } }
        if !consumers.isEmpty {
            stopper.note("closing the Kafka consumers (committing offsets, leaving the group)")
            // Half the time left at most, so that the producer's flush gets the rest.
            let closeBy = begun + max(0, deadline - begun) / 2
            let closing = consumers.map { c, _ in
                c.quiet()
                return c.client.beginClose(consumer: true, logger: logger)
            }
            for (done, (c, role)) in zip(closing, consumers) where !Self.wait(done, untilMs: closeBy) {
                c.client.abandon()
                left.append(
                    "the \(role) consumer did not close within \(closeBy - begun) ms (no broker answering?): offsets stored since its last commit were not committed, so those messages are consumed again after a restart"
                )
            }
        }
        final = counts
        jobsIn = nil
        resultsIn = nil
        if let p = producer {
            stopper.note("flushing the producer (\(awaitingDelivery) messages awaiting delivery)")
            let flushMs = Int32(clamping: min(10_000, max(0, deadline - Self.nowMs())))
            let err = rd_kafka_flush(p.client.rk, flushMs)
            p.poll()
            // Delivery reports only now: the consumers are gone, and a fatal error changes nothing here.
            try? handleEvents(now: .now)
            let jobs = jobsOut?.machine.awaitingDelivery ?? 0, results = resultsOut?.machine.inFlight ?? 0
            let letters = deadLetters?.inFlight ?? 0, deltas = deltasOut?.machine.inFlight ?? 0
            if err != RD_KAFKA_RESP_ERR_NO_ERROR || jobs + results + letters + deltas > 0 {
                left.append(
                    "\(jobs + results + letters + deltas) messages not confirmed by Kafka within \(flushMs) ms: \(jobs) jobs (they stay in new/ and are sent again), \(results) results (sent again after a restart), \(letters) dead letters, \(deltas) deltas (a running job's are sent again from its start after a restart)"
                )
                // Drop what is queued, so that destroying the producer does not wait for it.
                _ = rd_kafka_purge(p.client.rk, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
            }
            jobsOut?.dropTopic()
            resultsOut?.dropTopic()
            deltasOut?.dropTopic()
            deadLetters?.dropTopic()
            stopper.note("closing the producer")
            if !Self.wait(p.client.beginClose(consumer: false, logger: logger), untilMs: max(deadline, Self.nowMs() + 200)) {
                p.client.abandon()
                left.append("the producer did not close")
            }
            producer = nil
            if let o = jobsOut {
                stopper.note("moving confirmed jobs to forwarded/")
                if o.waitForMover(untilMs: max(deadline, Self.nowMs() + 200)) {
                    _ = o.collectMoved(now: .now)
                } else {
                    left.append("\(o.machine.withMover) confirmed jobs were still being moved to forwarded/ (recovery finishes or undoes each move)")
                }
            }
        }
        // Jobs never confirmed stay in new/ (they may reach Kafka twice: at-least-once).
        stopper.note("putting back held jobs")
        jobsOut?.releaseAll()
        if access(spool.path + "/" + SpoolState.new.rawValue, F_OK) != 0 {
            left.append("the spool \(spool.path) is gone (\(String(cString: strerror(errno)))): nothing could be written to it")
        }
        stopper.note("stopped")
        let c = counts
        logger.notice(
            "stopped",
            metadata: [
                "enqueued": "\(c.enqueued)", "duplicates": "\(c.duplicates)",
                "skipped": "\(c.skipped)", "published": "\(c.published)",
                "forwarded": "\(c.forwarded)", "resultsSettled": "\(c.resultsSettled)",
                "resultsIgnored": "\(c.resultsIgnored)", "deltas": "\(c.deltas)",
                "stopMs": "\(Self.nowMs() - (asked > 0 ? asked : begun))",
            ])
        return left
    }

    /// The gauges, every few seconds: consumer lag over the assigned partitions, high watermark
    /// (cached) minus position, and the messages awaiting their delivery reports.
    private func recordGauges() {
        BridgeMetrics.awaitingDelivery(kind: "job", jobsOut?.machine.awaitingDelivery ?? 0)
        BridgeMetrics.awaitingDelivery(kind: "result", resultsOut?.machine.inFlight ?? 0)
        if let d = deltasOut { BridgeMetrics.awaitingDelivery(kind: "delta", d.machine.inFlight) }
        for consumer in [jobsIn?.consumer, resultsIn?.consumer].compactMap({ $0 }) {
            let c = consumer.client.rk
            var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
            guard rd_kafka_assignment(c, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { continue }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            _ = rd_kafka_position(c, list)
            var lag: Int64 = 0
            for i in 0..<Int(list.pointee.cnt) {
                let e = list.pointee.elems[i]
                var low: Int64 = 0, high: Int64 = 0
                guard rd_kafka_get_watermark_offsets(c, e.topic, e.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                    high >= 0
                else { continue }
                let position = e.offset >= 0 ? e.offset : low
                lag += max(0, high - position)
                BridgeMetrics.lag(topic: consumer.topic, partition: e.partition, max(0, high - position))
            }
            BridgeMetrics.lag(topic: consumer.topic, lag)
        }
    }

    // MARK: helpers

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

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
