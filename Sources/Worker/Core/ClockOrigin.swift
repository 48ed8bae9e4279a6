import Basics

/// The worker's time: instants of `ContinuousClock` (monotonic: a wall-clock step moves none of
/// them). The pure parts that count milliseconds — the fair scheduler's token buckets, the circuit
/// breaker, the retry budget's `AttemptLog` — count them from `origin`, one instant fixed when the
/// worker starts, so every deadline the worker keeps is on the one clock.
///
/// The wall clock is read only where the on-disk format speaks it: the times written into
/// documents, a file's modification time, and a job's `deadline` (turned into an instant once, at
/// its claim, by ``instant(ofWallClock:wallNowMs:now:)``).
struct ClockOrigin: Sendable {
    typealias Instant = ContinuousClock.Instant

    let origin: Instant

    init(_ origin: Instant) { self.origin = origin }

    /// Milliseconds from the origin to `t` (negative before it).
    func ms(_ t: Instant) -> Int64 { (t - origin).wholeMilliseconds }

    /// The instant `ms` milliseconds after the origin.
    func instant(_ ms: Int64) -> Instant { origin + .milliseconds(ms) }

    /// The monotonic instant of a wall-clock time (milliseconds since 1970), from how far it lies
    /// from the wall clock's now. Taken once: a later wall-clock step does not move it.
    static func instant(ofWallClock wallMs: Int64, wallNowMs: Int64, now: Instant) -> Instant {
        let (delta, overflow) = wallMs.subtractingReportingOverflow(wallNowMs)
        // Beyond ±100 years the exact value does not matter; keep the arithmetic finite.
        let limit: Int64 = 100 * 366 * 86_400_000
        let d = overflow ? (wallMs > wallNowMs ? limit : -limit) : min(max(delta, -limit), limit)
        return now + .milliseconds(d)
    }
}
