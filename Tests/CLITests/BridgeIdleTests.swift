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
@Suite(
    "Bridge idle", .serialized,
    .enabled(
        if: kafkaPeersInstalled && FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"),
        "needs kcat, cc and strace (apt-get install kcat librdkafka-dev strace)"))
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

    /// The `poll` calls thread `tid` makes in `seconds`, traced with strace.
    static func polls(_ tid: String, seconds: Int) throws -> (count: Int, trace: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["timeout", "-s", "KILL", "\(seconds)", "strace", "-tt", "-e", "trace=poll,ppoll,epoll_wait", "-p", tid]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (text.split(separator: "\n").filter { $0.contains(" poll(") || $0.contains(" ppoll(") || $0.contains(" epoll_wait(") }.count, text)
    }

    @Test("an idle bridge with all five directions and back-pressure sleeps: its loop wakes only for the rescan and librdkafka's events")
    func idleLoopSleeps() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["jobs:3", "results:3", "deltas:3"])
        defer { mock.stop() }
        let (b, err) = try BridgeTests.startBridge(
            s.path,
            [
                "--brokers", mock.bootstrap, "--jobs-in", "jobs", "--jobs-out", "out", "--results-in", "results",
                "--results-out", "results", "--deltas-out", "deltas", "--max-queued", "100", "--log-level", "notice",
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
        let (polls, trace) = try Self.polls(thread, seconds: 5)
        print("idle bridge: the loop thread called poll \(polls) times in 5 s")
        // The rescan every 5 s: one or two turns in 5 s, and a turn for each event librdkafka
        // queues (a group that settles late on a loaded machine: 4 seen once in CI, 2 usually).
        // Heartbeats and fetches run on librdkafka's own threads. A loop polling every 100 ms, as
        // swift-kafka-client's does, would call it 50 times.
        #expect(polls <= 6, "the loop polled \(polls) times in 5 s:\n\(trace.suffix(3000))")
    }
}
