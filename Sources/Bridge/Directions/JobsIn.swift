import JSON
import Logging
import Spool

/// Jobs in: messages of `--jobs-in` become durable jobs in `new/` (one group commit per batch),
/// and only then are their offsets stored. The decisions are ``JobsInStateMachine``'s; this type
/// runs them against the consumer, the spool and the DLQ.
final class JobsIn {
    let consumer: KafkaConsumer
    private let spool: Spool
    private let logger: Logger
    private let deadLetters: DeadLetters?
    private(set) var machine: JobsInStateMachine
    /// A batch the spool refused, written again when the machine says so.
    private var refused: [Consumed]?
    /// With back-pressure: the ids of the jobs it brought in that may still be waiting.
    private var brought: Set<String> = []
    private var lastCount: ContinuousClock.Instant?
    /// Results arrived (or the rescan came round) since the last count.
    private var countWanted = false
    /// Counts are looked at no more often than this (each costs a `stat` or two per job).
    static let countInterval: Duration = .milliseconds(100)

    private(set) var enqueued = 0, duplicates = 0, skipped = 0, dropped = 0

    init(consumer: KafkaConsumer, spool: Spool, logger: Logger, deadLetters: DeadLetters?, maxQueued: Int?) {
        self.consumer = consumer
        self.spool = spool
        self.logger = logger
        self.deadLetters = deadLetters
        machine = JobsInStateMachine(backPressure: maxQueued.map(JobsInStateMachine.BackPressure.init(limit:)))
        if machine.backPressure != nil { seedBrought() }
    }

    /// With back-pressure, after a restart: the jobs from Kafka still waiting in `new/` and `cur/`
    /// count against the limit (a job carries `origin.kafka` when this bridge enqueued it).
    private func seedBrought() {
        for state in [SpoolState.new, .cur] {
            guard let names = try? spool.names(in: state) else { continue }
            for name in names where name.hasSuffix(".json") {
                guard let bytes = try? Spool.readInput(spool.path(of: name, in: state), limit: spool.limits.maxFileBytes),
                    let doc = try? JSONParser.parse(bytes), doc["origin"]?["kafka"] != nil
                else { continue }
                brought.insert(String(name.dropLast(5)))
            }
        }
        perform(machine.counted(queued: brought.count))
        logger.info(
            "back-pressure",
            metadata: [
                "maxQueued": "\(machine.backPressure!.high)", "resumeBelow": "\(machine.backPressure!.low)",
                "queued": "\(brought.count)",
            ])
    }

    /// Takes what the machine allows from the consumer and writes it; true if more may be waiting.
    func serve(now: ContinuousClock.Instant) -> Bool {
        if machine.retryDue(now: now), let batch = refused {
            refused = nil
            write(batch, now: now)
        }
        switch machine.membership {
        case .leaving, .left:
            let n = consumer.serveDropping()
            if n > 0 {
                dropped += n
                logger.debug("dropped messages fetched before leaving the group (their next owner reads them)", metadata: ["messages": "\(n)"])
            }
            return false
        case .joined:
            let budget = machine.budget
            guard budget > 0 else { return false }
            let (batch, more) = consumer.take(budget)
            if !batch.isEmpty { write(batch, now: now) }
            return more
        }
    }

    /// Decodes a batch, enqueues its jobs (one group commit) and hands the invalid messages to
    /// the DLQ; if the spool cannot take the batch (disk full, I/O error), nothing of it is done
    /// and it is written again a second later.
    private func write(_ batch: [Consumed], now: ContinuousClock.Instant) {
        var jobs: [Job] = []
        var slots: [Int] = []
        var invalid: [(Int, String)] = []
        for (k, message) in batch.enumerated() {
            switch MessageDecoding.job(
                message.value, key: message.keyString, contentType: message.header("contentType"),
                userId: message.header("userId"), tenantId: message.header("tenantId"), limits: spool.limits)
            {
            case .failure(let why):
                invalid.append((k, why.message))
            case .success(var job):
                job.extra.removeAll { $0.key == "origin" }
                job.extra.append(
                    .init(
                        "origin",
                        .object([
                            "kafka": .object([
                                "topic": .string(message.topic), "partition": .integer(Int(message.partition)),
                                "offset": .integer(Int(message.offset)),
                            ])
                        ])))
                jobs.append(job)
                slots.append(k)
            }
        }
        var outcomes: [EnqueueOutcome] = []
        if !jobs.isEmpty {
            do { outcomes = try spool.enqueue(each: jobs) } catch {
                logger.error("enqueue of \(jobs.count) jobs failed, retrying in 1 s: \(error)", metadata: batch[slots[0]].position)
                refused = batch
                perform(machine.enqueueFailed(now: now))
                return
            }
        }
        var fresh = 0
        for (outcome, k) in zip(outcomes, slots) {
            let message = batch[k]
            switch outcome {
            case .enqueued(let id):
                enqueued += 1
                fresh += 1
                if machine.backPressure != nil { brought.insert(id) }
                BridgeMetrics.consumed(topic: message.topic, outcome: "enqueued")
                logger.info("enqueued", metadata: message.position.merging(["jobId": "\(id)"]) { a, _ in a })
            case .duplicate(let id, let state):
                duplicates += 1
                BridgeMetrics.consumed(topic: message.topic, outcome: "duplicate")
                logger.info("already in the spool", metadata: message.position.merging(["jobId": "\(id)", "state": "\(state.rawValue)"]) { a, _ in a })
            case .invalid(let e):
                invalid.append((k, e.message))
            }
        }
        var letters = 0
        for (k, why) in invalid.sorted(by: { $0.0 < $1.0 }) {
            let message = batch[k]
            skipped += 1
            BridgeMetrics.consumed(topic: message.topic, outcome: "invalid")
            logger.error("skipping an invalid message: \(why)", metadata: message.position)
            if let deadLetters {
                deadLetters.add(message, reason: why, now: now)
                letters += 1
            }
        }
        perform(machine.batchWritten(enqueued: fresh, deadLetters: letters, offsets: KafkaConsumer.nextOffsets(batch)))
        logger.debug("batch enqueued", metadata: ["messages": "\(batch.count)", "jobs": "\(jobs.count)"])
    }

    /// A dead letter of the batch in hand was confirmed.
    func deadLetterConfirmed() { perform(machine.deadLetterConfirmed()) }

    func assigned() { machine.assigned() }
    func revoked() { perform(machine.revoked()) }

    /// Something arrived in `done/` or `failed/` (or the rescan came round): a job it brought in
    /// may have been answered.
    func spoolChanged() { countWanted = true }

    /// With back-pressure, after a change, when the count matters (near the limit) and not more
    /// often than ``countInterval``: which of the jobs it brought in are still in `new/` or `cur/`.
    func count(now: ContinuousClock.Instant) {
        guard countWanted, machine.wantsCount else { return }
        if let last = lastCount, now - last < Self.countInterval { return }
        lastCount = now
        countWanted = false
        brought = brought.filter { id in
            guard let state = try? spool.state(of: id) else { return true }
            return state == .new || state == .cur
        }
        perform(machine.counted(queued: brought.count))
    }

    /// When ``serve(now:)`` or ``count(now:)`` next has something to do without a wake-up.
    func nextWake(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        var at: ContinuousClock.Instant?
        if case .retryingEnqueue(let t) = machine.phase { at = t }
        if countWanted, machine.wantsCount, let last = lastCount {
            let t = last + Self.countInterval
            at = at.map { min($0, t) } ?? t
        }
        return at
    }

    private func perform(_ actions: [JobsInStateMachine.Action]) {
        for action in actions {
            switch action {
            case .storeOffsets(let offsets):
                consumer.store(offsets, commit: true)
            case .leaveGroup:
                logger.notice(
                    "leaving the consumer group: this host holds enough jobs from Kafka; the other members take its partitions",
                    metadata: ["queued": "\(machine.queued)", "maxQueued": "\(machine.backPressure?.high ?? 0)"])
                BridgeMetrics.backPressure(topic: consumer.topic, left: true)
                consumer.unsubscribe()
            case .rejoinGroup:
                logger.notice(
                    "joining the consumer group again", metadata: ["queued": "\(machine.queued)", "resumeBelow": "\(machine.backPressure?.low ?? 0)"])
                BridgeMetrics.backPressure(topic: consumer.topic, left: false)
                do { try consumer.subscribe() } catch {
                    logger.error("\(error)")
                }
            case .retryEnqueue:
                break  // nextWake(now:) has it
            }
        }
        if machine.backPressure != nil { BridgeMetrics.queued(topic: consumer.topic, machine.queued) }
    }
}
