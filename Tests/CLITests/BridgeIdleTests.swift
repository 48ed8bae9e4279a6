import Foundation
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An idle bridge sleeps: its loop thread waits in one `poll(2)` on the spool watcher's inotify
/// descriptor and eventfd (librdkafka's queues write to the eventfd), and wakes only for the
/// rescan every 5 s and for what librdkafka puts on its queues. librdkafka's own threads are not
/// counted: they keep their brokers' sockets.
@Suite("Bridge idle", .serialized, .enabled(if: kafkaPeersInstalled, "needs kcat and cc (apt-get install kcat librdkafka-dev)"))
struct BridgeIdleTests {
    /// The thread of `pid` waiting in poll/ppoll with a 5,000 ms timeout: the bridge's loop
    /// (librdkafka's threads poll with 1 s at most).
    static func loopThread(_ pid: Int32) -> String? {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for tid in tasks {
            guard let line = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/syscall", encoding: .utf8) else { continue }
            let f = line.split(separator: " ")
            // poll(fds, nfds, timeout): number 7 on x86-64, the timeout the fourth field.
            if f.count > 3, f[0] == "7", f[2] == "0x2", f[3] == "0x1388" { return tid }
        }
        return nil
    }

    static func switches(_ pid: Int32, _ tid: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
        return line.flatMap { Int($0.split(separator: "\t").last.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "") }
    }

    @Test("an idle bridge with all four directions and back-pressure sleeps: its loop wakes only for the rescan and librdkafka's events")
    func idleLoopSleeps() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["jobs:3", "results:3"])
        defer { mock.stop() }
        let (b, err) = try BridgeTests.startBridge(s.path, [
            "--brokers", mock.bootstrap, "--jobs-in", "jobs", "--jobs-out", "out", "--results-in", "results",
            "--results-out", "results", "--max-queued", "100", "--log-level", "notice",
            "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
        ])
        defer { _ = BridgeTests.stop(b, err) }
        // Joined, nothing to do; then find the loop asleep in its long poll.
        var tid: String?
        let asleep = WorkerProcessTests.waitUntil(30) {
            tid = Self.loopThread(b.processIdentifier)
            return tid != nil
        }
        try #require(asleep, "no thread of the bridge sleeps in a 5 s poll")
        usleep(2_000_000)  // the group settles; the first rescan passes
        tid = Self.loopThread(b.processIdentifier)
        let thread = try #require(tid)
        let before = try #require(Self.switches(b.processIdentifier, thread))
        usleep(5_000_000)
        let after = try #require(Self.switches(b.processIdentifier, thread))
        print("idle bridge: the loop thread woke \(after - before) times in 5 s")
        // The rescan (every 5 s) and librdkafka's own periodic events on the consumers' queues
        // (auto-commit results): measured 5 in 10 s (8 before the reshape). A loop polling every
        // 100 ms, as swift-kafka-client's does, would wake 50 times.
        #expect(after - before <= 6, "the loop woke \(after - before) times in 5 s")
    }
}
