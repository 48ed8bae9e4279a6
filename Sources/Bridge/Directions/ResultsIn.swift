import JSON
import Logging
import Spool

/// Results in: a result whose job this spool forwarded settles it into `done/` or `failed/`.
/// A result for a job jobs-out still holds is settled through jobs-out's machine, the one owner
/// of held jobs (``JobsOutStateMachine/ResultPlace``); results are handled in order and each
/// offset is stored once its result is durable (``ResultsInStateMachine``).
final class ResultsIn {
    let consumer: KafkaConsumer
    private let spool: Spool
    private let logger: Logger
    private(set) var machine = ResultsInStateMachine()
    /// The batch in hand, handled from `next`.
    private var batch: [Consumed] = []
    private var next = 0
    private(set) var settled = 0, ignored = 0

    init(consumer: KafkaConsumer, spool: Spool, logger: Logger) {
        self.consumer = consumer
        self.spool = spool
        self.logger = logger
    }

    /// Handles what is in hand, then takes more; true if more may be waiting.
    func serve(now: ContinuousClock.Instant, jobsOut: JobsOut?) -> Bool {
        _ = machine.retryDue(now: now)
        handleInHand(now: now, jobsOut: jobsOut)
        guard machine.isReady, next >= batch.count else { return false }
        let (taken, more) = consumer.take(JobsInStateMachine.batchLimit)
        guard !taken.isEmpty else { return more }
        batch = taken
        next = 0
        handleInHand(now: now, jobsOut: jobsOut)
        return more
    }

    /// The mover let these jobs go.
    func released(ids: [String], now: ContinuousClock.Instant, jobsOut: JobsOut?) {
        if machine.released(ids: ids) { handleInHand(now: now, jobsOut: jobsOut) }
    }

    var retryAt: ContinuousClock.Instant? { machine.retryAt }

    private func handleInHand(now: ContinuousClock.Instant, jobsOut: JobsOut?) {
        guard next < batch.count else { return }
        while machine.isReady, next < batch.count {
            if !handle(batch[next], now: now, jobsOut: jobsOut) { return }
            consumer.store([.init(topic: batch[next].topic, partition: batch[next].partition, next: batch[next].offset + 1)], commit: false)
            next += 1
        }
        if next >= batch.count {
            batch = []
            next = 0
            consumer.commitAsync()
        }
    }

    /// Handles one result; false if it must wait (its job is with the mover, or the spool refused it).
    private func handle(_ message: Consumed, now: ContinuousClock.Instant, jobsOut: JobsOut?) -> Bool {
        let topic = message.topic, position = message.position
        let decoded: MessageDecoding.DecodedResult
        switch MessageDecoding.result(
            message.value, key: message.keyString, jobIdHeader: message.header("jobId"),
            contentType: message.header("contentType"))
        {
        case .failure(let why):
            ignored += 1
            BridgeMetrics.consumed(topic: topic, outcome: "invalid")
            logger.error("skipping an invalid result: \(why)", metadata: position)
            return true
        case .success(let d): decoded = d
        }
        var meta = position
        meta["jobId"] = "\(decoded.id)"
        var heldJob: Job?
        switch jobsOut?.machine.place(ofResult: decoded.id) ?? .notHeld {
        case .withMover:
            machine.waitForMover(id: decoded.id)
            return false
        case .held(let name):
            heldJob = jobsOut?.job(held: name)
        case .notHeld:
            break
        }
        do {
            let lookup = try heldJob.map { ForwardedLookup.waiting($0) } ?? spool.lookForwarded(decoded.id)
            switch lookup {
            case .unknown:
                ignored += 1
                BridgeMetrics.consumed(topic: topic, outcome: "not-ours")
                logger.debug("a result for a job this spool did not forward", metadata: meta)
            case .settled(let state):
                ignored += 1
                BridgeMetrics.consumed(topic: topic, outcome: "duplicate")
                logger.info("result already in \(state.rawValue)/", metadata: meta)
            case .waiting(let job):
                let doc = decoded.document(for: job, topic: topic, partition: message.partition, offset: message.offset)
                if try spool.settleForwarded(decoded.id, document: doc, into: decoded.state) {
                    if heldJob != nil { jobsOut?.settled(id: decoded.id) }
                    settled += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "settled")
                    logger.info("result received", metadata: meta.merging(["state": "\(decoded.state.rawValue)"]) { a, _ in a })
                } else {
                    ignored += 1
                    BridgeMetrics.consumed(topic: topic, outcome: "duplicate")
                }
            }
            return true
        } catch {
            // Disk full, I/O error: keep the offset and try again.
            let at = machine.storeFailed(now: now)
            logger.error("cannot store the result, retrying in \(at - now): \(error)", metadata: meta)
            return false
        }
    }
}
