import Foundation
import Spool
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The metrics listener under clients that do not play along: a slowloris, thousands of idle
/// connections, a process out of descriptors. A scrape must still be answered promptly.
@Suite("Metrics listener", .serialized)
struct MetricsListenerTests {
    @Test("a slowloris client and 2,000 idle connections open: every scrape answers within 1 s")
    func slowAndIdleClients() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let port = UInt16(try freeLoopbackPort())
        let (w, _) = try WorkerProcessTests.startWorker(
            s.path, ["--llm-url", "builtin:echo", "--metrics-address", "127.0.0.1:\(port)"])
        defer {
            if w.isRunning { kill(w.processIdentifier, SIGKILL) }
            w.waitUntilExit()
        }
        #expect(WorkerProcessTests.waitUntil(10) { (try? MetricsTests.get(port, "/metrics")) != nil }, "the metrics endpoint never answered")

        // The slowloris: a request head trickling in, one byte every 1.5 s, until the test ends.
        let slow = try #require(Self.connect(port))
        let stop = Stopper()
        let trickle = Thread {
            let head = Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 4096)
            var i = 0
            while !stop.isSet, i < head.count {
                var b = head[i]
                if send(slow, &b, 1, Int32(MSG_NOSIGNAL)) <= 0 { break }
                i += 1
                for _ in 0..<15 where !stop.isSet { usleep(100_000) }
            }
        }
        trickle.start()
        defer { stop.set(); usleep(200_000); close(slow) }
        usleep(300_000)  // the slowloris is accepted first

        // 2,000 connections that never send a byte.
        var idle: [Int32] = []
        defer { idle.forEach { close($0) } }
        for _ in 0..<2_000 {
            guard let fd = Self.connect(port, wait: false) else { break }
            idle.append(fd)
        }
        #expect(idle.count == 2_000, "opened \(idle.count) of 2,000 idle connections")
        usleep(500_000)

        var times: [Double] = []
        var failures: [String] = []
        for _ in 0..<5 {
            let started = Date()
            do {
                let r = try Self.scrape(port, deadline: 5)
                if r.status != 200 { failures.append("status \(r.status)") }
            } catch {
                failures.append("\(error)")
            }
            times.append(Date().timeIntervalSince(started))
            usleep(200_000)
        }
        let figures = times.map { String(format: "%.1f ms", $0 * 1000) }.joined(separator: ", ")
        print("metrics listener: scrapes with a slowloris and \(idle.count) idle connections open: \(figures)")
        #expect(failures.isEmpty, "failed scrapes: \(failures); times \(figures)")
        #expect(times.allSatisfy { $0 < 1.0 }, "scrape times: \(figures)")
    }

    @Test("accept failing with EMFILE pauses instead of spinning, and serving resumes once descriptors are free")
    func descriptorExhaustion() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let port = UInt16(try freeLoopbackPort())
        let (w, _) = try WorkerProcessTests.startWorker(
            s.path, ["--llm-url", "builtin:echo", "--metrics-address", "127.0.0.1:\(port)"])
        defer {
            if w.isRunning { kill(w.processIdentifier, SIGKILL) }
            w.waitUntilExit()
        }
        let pid = w.processIdentifier
        #expect(WorkerProcessTests.waitUntil(10) { (try? MetricsTests.get(port, "/metrics")) != nil }, "the metrics endpoint never answered")
        usleep(500_000)
        // No descriptor left: a soft limit of 3 (RLIMIT_NOFILE caps the descriptor number, and 0-2 are open).
        let soft = try Self.softLimit(pid)
        try Self.prlimit(pid, soft: 3)
        var clients: [Int32] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<20 { if let fd = Self.connect(port, wait: false) { clients.append(fd) } }
        usleep(300_000)
        let before = try Self.cpuSeconds(pid)
        usleep(3_000_000)
        let used = try Self.cpuSeconds(pid) - before
        print(String(format: "metrics listener: CPU over 3 s with accept failing (EMFILE): %.2f s", used))
        #expect(used < 0.3, "the worker used \(used) s of CPU in 3 s with accept failing")

        try Self.prlimit(pid, soft: soft)
        let started = Date()
        let r = try Self.scrape(port, deadline: 5)
        #expect(r.status == 200)
        #expect(Date().timeIntervalSince(started) < 1.0, "a scrape after descriptors came back took \(Date().timeIntervalSince(started)) s")
    }

    // MARK: helpers

    final class Stopper: Sendable {
        private let flag = Atomic<Bool>(false)
        var isSet: Bool { flag.load(ordering: .acquiring) }
        func set() { flag.store(true, ordering: .releasing) }
    }

    /// A TCP connection to 127.0.0.1:port; `wait: false` returns as soon as the connect is under way.
    static func connect(_ port: UInt16, wait: Bool = true) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = MetricsTests.loopback(port)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && errno != EINPROGRESS { close(fd); return nil }
        if wait {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, 5_000) == 1 else { close(fd); return nil }
        }
        return fd
    }

    struct TimedOut: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out \(what)" }
    }

    /// `GET /metrics` over a fresh connection, the whole exchange within `deadline` seconds.
    static func scrape(_ port: UInt16, deadline seconds: Double) throws -> (status: Int, body: String) {
        let end = Date().addingTimeInterval(seconds)
        func remainingMs() -> Int32 { Int32(max(0, end.timeIntervalSinceNow * 1000)) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        defer { close(fd) }
        var addr = MetricsTests.loopback(port)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            guard errno == EINPROGRESS else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, remainingMs()) == 1 else { throw TimedOut(what: "connecting") }
        }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, remainingMs()) == 1 else { throw TimedOut(what: "waiting for the answer (\(bytes.count) bytes read)") }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
        return (status, text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// User plus system CPU time of a process, from /proc/PID/stat.
    static func cpuSeconds(_ pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which may hold spaces): state is field 3; utime 14, stime 15.
        guard let close = stat.lastIndex(of: ")") else { throw POSIXError(.EBADMSG) }
        let f = stat[stat.index(after: close)...].split(separator: " ")
        guard f.count > 13, let u = Double(f[11]), let s = Double(f[12]) else { throw POSIXError(.EBADMSG) }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func softLimit(_ pid: Int32) throws -> Int {
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        guard let line = limits.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }),
            let soft = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.flatMap({ Int($0) })
        else { throw POSIXError(.EBADMSG) }
        return soft
    }

    /// Sets another process's soft RLIMIT_NOFILE with prlimit(1).
    static func prlimit(_ pid: Int32, soft: Int) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        p.arguments = ["--pid", "\(pid)", "--nofile=\(soft):"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "prlimit --pid \(pid) --nofile=\(soft): failed")
    }
}
