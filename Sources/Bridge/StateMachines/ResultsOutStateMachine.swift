/// Results out: which results of `done/` and `failed/` are published, in flight, or never to be
/// published, and what a delivery report does. Pure.
struct ResultsOutStateMachine {
    enum Outcome: Equatable {
        /// Confirmed: record it in `.published/`.
        case published(id: String, done: Bool)
        /// Failed: it is produced again at the next scan, not before the instant.
        case failed(id: String, retryAt: ContinuousClock.Instant)
        case unknown
    }

    static let retryDelay: Duration = .seconds(1)

    private(set) var published: Set<String> = []
    private(set) var ignored: Set<String> = []
    private var sending: [Int: (id: String, done: Bool)] = [:]
    private var sendingIDs: Set<String> = []

    init(published: some Sequence<String> = []) {
        self.published = Set(published)
    }

    var inFlight: Int { sending.count }

    /// Whether a result found in `done/` or `failed/` is still to be looked at.
    func wants(_ id: String) -> Bool {
        !published.contains(id) && !sendingIDs.contains(id) && !ignored.contains(id)
    }

    /// Never to be published (another host's result, out of scope, not a job's own).
    mutating func ignore(_ id: String) { ignored.insert(id) }

    mutating func produced(_ id: String, done: Bool, seq: Int) {
        sending[seq] = (id, done)
        sendingIDs.insert(id)
    }

    mutating func delivered(seq: Int, ok: Bool, now: ContinuousClock.Instant) -> Outcome {
        guard let s = sending.removeValue(forKey: seq) else { return .unknown }
        sendingIDs.remove(s.id)
        if ok {
            published.insert(s.id)
            return .published(id: s.id, done: s.done)
        }
        return .failed(id: s.id, retryAt: now + Self.retryDelay)
    }

    /// Results in flight, by whether they are results (true) or dead letters.
    var inFlightIDs: [String] { Array(sendingIDs) }
}
