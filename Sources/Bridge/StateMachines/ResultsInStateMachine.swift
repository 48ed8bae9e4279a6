/// Results in: whether the next consumed result may be handled now. A result is handled in
/// order, and its offset stored once it is durable (or known to be no business of this spool's);
/// one that cannot be handled yet stops the ones after it:
///
/// * its job is with the mover (``JobsOutStateMachine/ResultPlace/withMover``): wait until the
///   mover lets it go, then settle it from `forwarded/`;
/// * the spool refused it (disk full): try again a second later.
///
/// Meanwhile no more messages are taken from the consumer. Pure.
struct ResultsInStateMachine {
    enum State: Equatable {
        case ready
        case waitingForMover(id: String)
        case retrying(at: ContinuousClock.Instant)
    }

    static let retryDelay: Duration = .seconds(1)

    private(set) var state = State.ready

    /// True if the next result may be handled (and, with none left in hand, more consumed).
    var isReady: Bool { state == .ready }

    mutating func waitForMover(id: String) { state = .waitingForMover(id: id) }

    /// The mover let these jobs go; true if the result waiting for one of them may go on.
    mutating func released(ids: [String]) -> Bool {
        guard case .waitingForMover(let id) = state, ids.contains(id) else { return false }
        state = .ready
        return true
    }

    mutating func storeFailed(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let at = now + Self.retryDelay
        state = .retrying(at: at)
        return at
    }

    /// True (and ready again) if a refused result is due to be tried again.
    mutating func retryDue(now: ContinuousClock.Instant) -> Bool {
        guard case .retrying(let at) = state, at <= now else { return false }
        state = .ready
        return true
    }

    var retryAt: ContinuousClock.Instant? {
        if case .retrying(let at) = state { at } else { nil }
    }
}
