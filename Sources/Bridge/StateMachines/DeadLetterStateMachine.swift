/// The DLQ's dead letters, from handed in to confirmed: each is due (to be produced, now or
/// after a failure's back-off) or in flight (produced, awaiting its delivery report). A letter
/// leaves only when Kafka confirms it; until then jobs-in waits (``JobsInStateMachine``), so the
/// offset of an invalid message is stored only once its dead letter is safe.
///
/// Pure: no librdkafka, no clock of its own (instants come in with the events).
struct DeadLetterStateMachine {
    /// The direction's number for a dead letter; its bytes are kept by the direction.
    typealias Letter = Int

    enum LetterState: Equatable {
        /// To be produced at or after the instant.
        case due(ContinuousClock.Instant)
        /// Produced as message `seq`; its delivery report is awaited.
        case inFlight(seq: Int)
    }

    /// What a delivery report did.
    enum Delivery: Equatable {
        /// The letter is safe in the DLQ.
        case confirmed(Letter)
        /// It failed; it is produced again at the instant.
        case retry(Letter, at: ContinuousClock.Instant)
        /// Not a report of this machine's (e.g. already settled).
        case unknown
    }

    /// How long a refused or failed letter waits before it is produced again.
    static let retryDelay: Duration = .seconds(1)

    private(set) var letters: [Letter: LetterState] = [:]
    private var bySeq: [Int: Letter] = [:]
    private var nextLetter = 1

    var isEmpty: Bool { letters.isEmpty }
    var count: Int { letters.count }

    /// A new letter, due at once.
    mutating func add(now: ContinuousClock.Instant) -> Letter {
        let letter = nextLetter
        nextLetter += 1
        letters[letter] = .due(now)
        return letter
    }

    /// The letters to produce now, oldest first.
    func due(now: ContinuousClock.Instant) -> [Letter] {
        letters.compactMap { letter, state in
            if case .due(let at) = state, at <= now { letter } else { nil }
        }.sorted()
    }

    /// The earliest instant a waiting letter is due, if any waits.
    var nextDue: ContinuousClock.Instant? {
        letters.values.compactMap { if case .due(let at) = $0 { at } else { nil } }.min()
    }

    mutating func produced(_ letter: Letter, seq: Int) {
        guard letters[letter] != nil else { return }
        letters[letter] = .inFlight(seq: seq)
        bySeq[seq] = letter
    }

    /// librdkafka refused the produce call: the letter waits and is tried again.
    mutating func refused(_ letter: Letter, now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let at = now + Self.retryDelay
        if letters[letter] != nil { letters[letter] = .due(at) }
        return at
    }

    mutating func delivered(seq: Int, ok: Bool, now: ContinuousClock.Instant) -> Delivery {
        guard let letter = bySeq.removeValue(forKey: seq), letters[letter] == .inFlight(seq: seq) else { return .unknown }
        if ok {
            letters[letter] = nil
            return .confirmed(letter)
        }
        let at = now + Self.retryDelay
        letters[letter] = .due(at)
        return .retry(letter, at: at)
    }
}
