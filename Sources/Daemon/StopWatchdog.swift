public import Dispatch
public import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Bounds a daemon's stop: armed by the first SIGTERM or SIGINT, it ends the process with status
/// 75 once `limitMs` have passed, or at once on a second signal, after one log line naming what
/// the daemon was still doing. The daemon's own stop is meant to end first; this is for a stop
/// stuck where nothing else can end it (a C library call waiting on a peer that is gone).
public final class StopWatchdog: Sendable {
    private let what: String
    private let limitMs: Int64
    private let logger: Logger
    private let left: @Sendable () -> String
    private let signals = Atomic<Int>(0)

    /// `left` describes what is still under way; it is called on the watchdog's thread.
    public init(what: String, limitMs: Int64, logger: Logger, left: @escaping @Sendable () -> String) {
        self.what = what
        self.limitMs = limitMs
        self.logger = logger
        self.left = left
    }

    /// Called on every SIGTERM or SIGINT.
    public func signalled() {
        let n = signals.wrappingAdd(1, ordering: .relaxed).newValue
        if n == 1 {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(limitMs))) { [self] in
                exitNow("the \(what) did not stop within \(limitMs) ms of the signal")
            }
        } else if n == 2 {
            exitNow("a second signal")
        }
    }

    private func exitNow(_ why: String) -> Never {
        logger.critical("\(why): exiting with status 75, leaving: \(left())")
        fflush(nil)  // every stdio stream: swift-log's stderr handler writes through one
        _exit(75)
    }

    /// Arms the watchdog on SIGTERM and SIGINT without taking those signals from the daemon's
    /// `ServiceGroup`: both still see every signal. Cancel the returned sources when the daemon ends.
    public func watchSignals() -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in signalled() }
            source.resume()
            return source
        }
    }
}
