#if canImport(Glibc)
import Glibc
#endif
import CSpoolShim
import SystemPackage

/// Wakes a consumer when files arrive in (or leave) some of a spool's directories.
///
/// inotify does the waking; a periodic rescan is the safety net for what inotify can miss
/// (queue overflow, a spool on a network filesystem). Waiting costs no CPU. ``wake()`` may be
/// called from any thread to end a wait early (for shutdown).
public final class SpoolWatcher: Sendable {
    /// Why ``wait(timeoutMilliseconds:)`` returned.
    public enum Wake: Sendable, Equatable {
        /// Something changed in a watched directory.
        case changed
        /// The timeout passed with no event: rescan.
        case timeout
        /// ``wake()`` was called.
        case woken
    }

    private let inotify: FileDescriptor
    private let event: FileDescriptor

    /// Watches `states` of `spool` for files created, moved in or out, written and closed, or deleted.
    public init(_ spool: Spool, states: [SpoolState] = [.new]) throws(SpoolError) {
        let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard ifd >= 0 else {
            throw .system(SystemCallError(call: "inotify_init1", path: spool.path, errno: Errno(rawValue: llmspool_errno())))
        }
        let efd = llmspool_eventfd()
        guard efd >= 0 else {
            _ = close(ifd)
            throw .system(SystemCallError(call: "eventfd", path: spool.path, errno: Errno(rawValue: llmspool_errno())))
        }
        inotify = FileDescriptor(rawValue: ifd)
        event = FileDescriptor(rawValue: efd)
        let mask = UInt32(IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE)
        for state in states {
            let p = spool.dir(state).path
            if inotify_add_watch(ifd, p, mask) < 0 {
                throw .system(SystemCallError(call: "inotify_add_watch", path: p, errno: Errno(rawValue: llmspool_errno())))
            }
        }
    }

    deinit {
        _ = close(inotify.rawValue)
        _ = close(event.rawValue)
    }

    /// Blocks until a change, a ``wake()``, or the timeout (negative: wait forever).
    /// Events that arrived together are drained and reported once.
    public func wait(timeoutMilliseconds: Int32) -> Wake {
        var fds = [pollfd(fd: inotify.rawValue, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: event.rawValue, events: Int16(POLLIN), revents: 0)]
        let deadline = timeoutMilliseconds < 0 ? Int64.max : Sys.nowMilliseconds() + Int64(timeoutMilliseconds)
        while true {
            let left = deadline == Int64.max ? -1 : Int32(clamping: max(0, deadline - Sys.nowMilliseconds()))
            let rc = poll(&fds, 2, left)
            if rc < 0 && llmspool_errno() == EINTR { continue }
            if rc <= 0 { return .timeout }
            if fds[1].revents != 0 {
                var v: UInt64 = 0
                _ = read(event.rawValue, &v, 8)
                return .woken
            }
            drain()
            return .changed
        }
    }

    private func drain() {
        var buf = [UInt8](repeating: 0, count: 64 * 1024)
        while read(inotify.rawValue, &buf, buf.count) > 0 {}
    }

    /// Makes a current or the next ``wait(timeoutMilliseconds:)`` return ``Wake/woken``.
    public func wake() {
        var one: UInt64 = 1
        _ = write(event.rawValue, &one, 8)
    }
}
