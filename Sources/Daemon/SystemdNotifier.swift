#if canImport(Glibc)
import Glibc
#endif

/// `sd_notify(3)` without libsystemd: datagrams to `$NOTIFY_SOCKET` (`READY=1`, `STOPPING=1`,
/// `WATCHDOG=1`, `STATUS=…`). Does nothing when the variable is unset.
public struct SystemdNotifier: Sendable {
    let path: String
    /// Half of `$WATCHDOG_USEC`, in milliseconds, when systemd expects watchdog pings.
    public let watchdogIntervalMs: Int64?

    public init?() {
        guard let p = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !p.isEmpty else { return nil }
        path = p
        if let w = getenv("WATCHDOG_USEC").map({ String(cString: $0) }), let usec = Int64(w), usec > 0 {
            let forUs = getenv("WATCHDOG_PID").map { String(cString: $0) }.flatMap { Int32($0) }
            watchdogIntervalMs = forUs == nil || forUs == getpid() ? max(1, usec / 2000) : nil
        } else {
            watchdogIntervalMs = nil
        }
    }

    /// Sends one notification; returns false if it could not be delivered.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // abstract namespace
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (k, b) in bytes.enumerated() { raw[k] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), sa, len)
            }
        }
        return sent == message.count
    }
}
