/// Jobs out: the life of each job this bridge holds in `new/` for Kafka, from held to let go.
/// This machine is the one owner of a held job's transitions — produced, confirmed, handed to the
/// mover, moved — and results-in asks it before it settles a held job:
///
/// * a job not yet with the mover (awaiting its report, or waiting to be produced again) may be
///   settled at once; it is marked settled, and when it is confirmed the mover retires its copy
///   in `new/` instead of moving it (or, if its delivery failed, it is retired all the same:
///   its result is home, it need not go out again);
/// * a job with the mover is not touched: results-in waits until the mover is done (the job is
///   then in `forwarded/` and is settled from there).
///
/// So the mover never works on a job whose state changes under it, and nothing is patched up
/// after a move. Pure: events in, actions out.
struct JobsOutStateMachine {
    enum HoldState: Equatable {
        /// Held; to be produced (first time, or again after a refused produce call).
        case unsent
        /// Produced as message `seq`; its delivery report is awaited.
        case awaitingReport(seq: Int)
        /// Confirmed by Kafka (or settled and failed): to hand to the mover.
        case confirmed(seq: Int)
        /// With the mover, being moved to `forwarded/` (or retired, if settled).
        case withMover
    }

    struct Entry: Equatable {
        var id: String
        var state: HoldState
        /// Its result is already in `done/` or `failed/`.
        var settled = false
    }

    /// Where a result for a job stands, for results-in.
    enum ResultPlace: Equatable {
        /// Not held here: look in `forwarded/`.
        case notHeld
        /// Held (file `name` in `new/`) and not with the mover: settle it now, then ``settled(id:)``.
        case held(name: String)
        /// With the mover: wait until ``moved(_:)`` lets it go.
        case withMover
    }

    enum Action: Equatable {
        /// Drop the hold's lock; the job stays (or is, after a move) where it is.
        case release(name: String)
        /// Produce again at the instant (a refused produce call or a failed delivery).
        case retry(at: ContinuousClock.Instant)
    }

    static let retryDelay: Duration = .seconds(1)

    let maxForwarding: Int
    private(set) var entries: [String: Entry] = [:]
    private var nameByID: [String: String] = [:]
    private var nameBySeq: [Int: String] = [:]
    private var unsent: [String] = []
    private var confirmed: [(seq: Int, name: String)] = []
    private(set) var withMover = 0

    init(maxForwarding: Int) {
        precondition(maxForwarding > 0)
        self.maxForwarding = maxForwarding
    }

    /// Held jobs, in any state: no more are held at `maxForwarding`.
    var count: Int { entries.count }
    var isFull: Bool { entries.count >= maxForwarding }
    /// Produced and not yet confirmed, or waiting to be produced again (for the gauge).
    var awaitingDelivery: Int { nameBySeq.count + unsent.count }

    func isHeld(name: String) -> Bool { entries[name] != nil }

    /// A job of `new/` was held. False if a job with the same id is held under another name (the
    /// caller lets this one go; it is dealt with once the first has left `new/`).
    mutating func held(name: String, id: String) -> Bool {
        guard nameByID[id] == nil else { return false }
        if let before = entries.updateValue(Entry(id: id, state: .unsent), forKey: name) {
            entries[name] = before  // held already (the caller asks isHeld first: not reached in practice)
            return false
        }
        nameByID[id] = name
        return true
    }

    mutating func produced(name: String, seq: Int) {
        guard let i = entries.index(forKey: name) else { return }
        entries.values[i].state = .awaitingReport(seq: seq)
        nameBySeq[seq] = name
    }

    /// librdkafka refused the produce call; with a full queue it is tried on the next turn,
    /// otherwise after a back-off.
    mutating func refused(name: String, queueFull: Bool, now: ContinuousClock.Instant) -> [Action] {
        guard let i = entries.index(forKey: name) else { return [] }
        entries.values[i].state = .unsent
        unsent.append(name)
        return queueFull ? [] : [.retry(at: now + Self.retryDelay)]
    }

    /// The held jobs to produce again, oldest first.
    mutating func takeUnsent() -> [String] {
        defer { unsent.removeAll() }
        return unsent.filter { entries[$0]?.state == .unsent }
    }

    mutating func delivered(seq: Int, ok: Bool, now: ContinuousClock.Instant) -> [Action] {
        guard let name = nameBySeq.removeValue(forKey: seq), let i = entries.index(forKey: name),
            entries.values[i].state == .awaitingReport(seq: seq)
        else {
            return []
        }
        if ok || entries.values[i].settled {
            entries.values[i].state = .confirmed(seq: seq)
            confirmed.append((seq, name))
            return []
        }
        // Still in new/: let go, and it is sent again.
        forget(name)
        return [.release(name: name), .retry(at: now + Self.retryDelay)]
    }

    /// The confirmed jobs, in the order they were produced, handed to the mover (each is
    /// ``HoldState/withMover`` from now on). Each comes with whether it is settled.
    mutating func takeConfirmed() -> [(name: String, settled: Bool)] {
        guard !confirmed.isEmpty else { return [] }
        let batch = confirmed.sorted { $0.seq < $1.seq }
        confirmed.removeAll(keepingCapacity: true)
        withMover += batch.count
        return batch.compactMap { c in
            guard let i = entries.index(forKey: c.name) else { return nil }
            entries.values[i].state = .withMover
            return (c.name, entries.values[i].settled)
        }
    }

    /// The mover is done with these (moved, retired, or failed to move: then they stay in
    /// `new/` and are sent again). Returns the ids let go, for a result waiting on one of them.
    mutating func moved(_ names: [String]) -> (actions: [Action], ids: [String]) {
        var actions: [Action] = [], ids: [String] = []
        for name in names {
            guard let i = entries.index(forKey: name), entries.values[i].state == .withMover else { continue }
            withMover -= 1
            ids.append(entries.values[i].id)
            forget(at: i)
            actions.append(.release(name: name))
        }
        return (actions, ids)
    }

    func place(ofResult id: String) -> ResultPlace {
        guard let name = nameByID[id], let e = entries[name] else { return .notHeld }
        return e.state == .withMover ? .withMover : .held(name: name)
    }

    /// Its result is now in `done/` or `failed/`.
    mutating func settled(id: String) {
        guard let name = nameByID[id], entries[name]?.state != .withMover else { return }
        entries[name]?.settled = true
    }

    /// At a stop, everything not with the mover: let go (they stay in `new/`).
    mutating func releaseAll() -> [Action] {
        let names = entries.filter { $0.value.state != .withMover }.map(\.key).sorted()
        for name in names { forget(name) }
        return names.map { .release(name: $0) }
    }

    /// Jobs produced and awaiting their reports.
    var inFlight: Int { nameBySeq.count }

    private mutating func forget(_ name: String) {
        if let i = entries.index(forKey: name) { forget(at: i) }
    }

    private mutating func forget(at i: Dictionary<String, Entry>.Index) {
        let (name, e) = entries.remove(at: i)
        if let k = nameByID.index(forKey: e.id), nameByID.values[k] == name { nameByID.remove(at: k) }
        if case .awaitingReport(let seq) = e.state { nameBySeq[seq] = nil }
    }
}
