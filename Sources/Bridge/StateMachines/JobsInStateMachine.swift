/// Jobs in: when the consumer may be read, when offsets are stored, and when this host leaves
/// its consumer group because it holds enough jobs (back-pressure, `--max-queued`).
///
/// A consumed batch is written to the spool (one group commit); its invalid messages go to the
/// DLQ. The batch's offsets are stored only when every job is durable and every dead letter
/// confirmed, so until then the machine takes no more messages (`awaitingDeadLetters`); a batch
/// the spool refused (disk full) is tried again a second later (`retryingEnqueue`).
///
/// Back-pressure: with a limit, the machine counts the jobs it brought in that are still waiting
/// in `new/` or `cur/` (``queued``). It never takes more messages than fit below the limit, and
/// at the limit it leaves the group (`leaveGroup`: unsubscribe), so that the group gives this
/// host's partitions to the other members; below the low-water mark it joins again. Leaving
/// waits until the batch in hand is settled, so its offsets are stored (and committed by the
/// revocation) before the partitions go.
///
/// Pure: events in, actions out; instants come in with the events.
struct JobsInStateMachine {
    /// The next offset to store for a partition.
    struct Offset: Hashable, Sendable {
        var topic: String
        var partition: Int32
        var next: Int64
    }

    /// Leave the group at `high` queued jobs, join again below `low`.
    struct BackPressure: Equatable, Sendable {
        var high: Int
        var low: Int

        /// Resumes below half the limit: room for a few batches before leaving again, so a host
        /// whose worker keeps up does not leave and join (two rebalances of the group) too often.
        init(limit: Int) {
            precondition(limit > 0)
            high = limit
            low = max(1, limit / 2)
        }

        init(high: Int, low: Int) {
            precondition(high > 0 && low > 0 && low <= high)
            self.high = high
            self.low = low
        }
    }

    enum Phase: Equatable {
        /// Messages may be consumed.
        case ready
        /// A batch is written; its dead letters are in flight. Its offsets wait for them.
        case awaitingDeadLetters(outstanding: Int, offsets: [Offset])
        /// The spool refused the batch; it is written again at the instant.
        case retryingEnqueue(at: ContinuousClock.Instant)
    }

    enum Membership: Equatable {
        case joined
        /// Unsubscribed by back-pressure; its partitions are not revoked yet. Messages the
        /// consumer still returns are dropped unstored.
        case leaving
        /// Unsubscribed, partitions revoked: the other members have them.
        case left
    }

    enum Action: Equatable {
        /// Store (then commit) these offsets: their messages' jobs are durable.
        case storeOffsets([Offset])
        /// Unsubscribe: the group gives this host's partitions to the others.
        case leaveGroup
        /// Subscribe again.
        case rejoinGroup
        /// Write the refused batch again at the instant.
        case retryEnqueue(at: ContinuousClock.Instant)
    }

    /// Most messages taken from the consumer at once.
    static let batchLimit = 500
    static let retryDelay: Duration = .seconds(1)

    let backPressure: BackPressure?
    private(set) var phase = Phase.ready
    private(set) var membership = Membership.joined
    /// Jobs this bridge brought in that are still in `new/` or `cur/` (counted only with a limit).
    private(set) var queued = 0
    /// Whether the group has given this consumer partitions (and not revoked them).
    private(set) var hasPartitions = false

    init(backPressure: BackPressure? = nil) {
        self.backPressure = backPressure
    }

    /// How many messages may be taken now: 0 while a batch is unsettled or the host has left
    /// the group (the consumer is still served, for its rebalances; a message it returns then is
    /// dropped unstored, and the partition's next owner reads it).
    var budget: Int {
        guard phase == .ready, membership == .joined else { return 0 }
        guard let bp = backPressure else { return Self.batchLimit }
        return max(0, min(Self.batchLimit, bp.high - queued))
    }

    /// Whether the count of queued jobs matters now (it is near or past the low-water mark).
    var wantsCount: Bool {
        guard let bp = backPressure else { return false }
        return queued >= bp.low || membership != .joined
    }

    /// A batch was written: `enqueued` new jobs, `deadLetters` handed to the DLQ.
    mutating func batchWritten(enqueued: Int, deadLetters: Int, offsets: [Offset]) -> [Action] {
        queued += enqueued
        var actions: [Action] = []
        if deadLetters > 0 {
            phase = .awaitingDeadLetters(outstanding: deadLetters, offsets: offsets)
        } else {
            phase = .ready
            if !offsets.isEmpty { actions.append(.storeOffsets(offsets)) }
        }
        return actions + pressure()
    }

    /// The spool could not take the batch (disk full, I/O error): no offset moves.
    mutating func enqueueFailed(now: ContinuousClock.Instant) -> [Action] {
        let at = now + Self.retryDelay
        phase = .retryingEnqueue(at: at)
        return [.retryEnqueue(at: at)]
    }

    /// True (and ready again) if a refused batch is due to be written again.
    mutating func retryDue(now: ContinuousClock.Instant) -> Bool {
        guard case .retryingEnqueue(let at) = phase, at <= now else { return false }
        phase = .ready
        return true
    }

    /// One dead letter of the batch in hand is confirmed.
    mutating func deadLetterConfirmed() -> [Action] {
        guard case .awaitingDeadLetters(let outstanding, let offsets) = phase else { return [] }
        if outstanding > 1 {
            phase = .awaitingDeadLetters(outstanding: outstanding - 1, offsets: offsets)
            return []
        }
        phase = .ready
        return (offsets.isEmpty ? [] : [.storeOffsets(offsets)]) + pressure()
    }

    /// The jobs it brought in still waiting, counted again (some were answered, or it restarted).
    mutating func counted(queued n: Int) -> [Action] {
        queued = max(0, n)
        return pressure()
    }

    mutating func assigned() { hasPartitions = true }

    /// The consumer's partitions were revoked: after a leave, it has now left (and may join
    /// again at once if enough jobs were answered meanwhile). A join is never asked for before
    /// the revocation, so a message dropped while leaving is never skipped by this consumer.
    mutating func revoked() -> [Action] {
        hasPartitions = false
        guard membership == .leaving else { return [] }
        membership = .left
        return pressure()
    }

    private mutating func pressure() -> [Action] {
        guard let bp = backPressure else { return [] }
        switch membership {
        case .joined where queued >= bp.high && phase == .ready:
            membership = hasPartitions ? .leaving : .left
            return [.leaveGroup]
        case .left where queued < bp.low:
            membership = .joined
            return [.rejoinGroup]
        default:
            return []
        }
    }
}
