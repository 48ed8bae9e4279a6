#if canImport(Glibc)
import Glibc
#endif
import Spool

/// Milliseconds of `CLOCK_MONOTONIC`: never steps back or jumps when the wall clock is set, so
/// retry times, deadlines and the circuit breaker's intervals inside the worker use it. Only
/// differences mean anything; a wall-clock time becomes one with ``fromWallClock(_:)``.
enum MonotonicClock {
    static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The monotonic time of a wall-clock time (milliseconds since 1970), taken from now's offset.
    static func fromWallClock(_ wallMs: Int64, nowMs: Int64 = nowMilliseconds(), wallNowMs: Int64 = Timestamp.nowMilliseconds()) -> Int64 {
        let (v, overflow) = nowMs.addingReportingOverflow(wallMs &- wallNowMs)
        return overflow ? (wallMs > wallNowMs ? Int64.max : Int64.min) : v
    }
}
