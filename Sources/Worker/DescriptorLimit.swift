import Spool

/// Each call in flight holds one descriptor: its connection. (Its claim holds none: it is parked
/// under the worker's one lease, see `Spool.Claim`. A claim that could not park keeps its file's
/// locked descriptor, which is why the worker takes its lease at start-up and, if it cannot,
/// counts two per call.) The worker raises its soft `RLIMIT_NOFILE` to the hard limit at
/// start-up, and keeps `maxInFlight` within what that allows (running out would make any open —
/// including the runtime's own — fail).
enum DescriptorLimit {
    /// Descriptors kept for everything else: directories, the watcher, logs, libcurl's own.
    static let reserve = 256

    /// Raises the soft limit to the hard one; returns (before, after).
    static func raise() -> (before: Int, after: Int) { Spool.raiseOpenFileLimit() }

    /// The most calls in flight that `limit` descriptors allow, at `perCall` descriptors each
    /// (1 with a lease; 2 when claims must keep their descriptor).
    static func maxInFlight(forLimit limit: Int, perCall: Int = 1) -> Int { max(1, (limit - reserve) / perCall) }
}
