import Foundation
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

private func onPath(_ name: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        .contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
}

/// A bridge's stop ends within its limit (`--stop-timeout`) whatever state it is in, and says
/// what it left: the brokers gone, the spool gone, deliveries pending, all at once.
@Suite(
    "Bridge stop is bounded", .serialized,
    .enabled(if: onPath("kcat") && onPath("cc"), "needs kcat and cc (apt-get install kcat librdkafka-dev)"))
struct BridgeStopTests {
    enum State: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case brokersGone, spoolGone, deliveryPending, everythingGone
        var testDescription: String { rawValue }
    }

    /// The limit the tests give the bridge, and the slack allowed past it (process start-up, a loaded machine).
    static let limitSeconds = 4.0, slack = 1.5

    @Test(
        "SIGTERM ends the bridge within --stop-timeout, with status 75 and a log line when work was left",
        arguments: State.allCases)
    func boundedStop(_ state: State) throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["jobs:3", "out:3"])
        defer { if mock.process.isRunning { mock.stop() } }
        try mock.produce("jobs", (0..<3).map { ("in-\($0)", #"{"jobId":"in-\#($0)","prompt":"hello"}"#) })
        let (b, err) = try BridgeTests.startBridge(
            s.path,
            [
                "--brokers", mock.bootstrap, "--jobs-in", "jobs", "--jobs-out", "out", "--dlq", "",
                "--stop-timeout", "\(Int(Self.limitSeconds))s", "--log-level", "notice",
                "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
            ])
        defer { if b.isRunning { kill(b.processIdentifier, SIGKILL); b.waitUntilExit() } }
        // Consumed (offsets stored), enqueued and forwarded: the consumer has something to commit.
        let forwarded = WorkerProcessTests.waitUntil(30) { s.names("forwarded").count == 3 }
        try #require(forwarded, "the jobs did not go round: forwarded/ has \(s.names("forwarded"))")

        if state == .deliveryPending || state == .everythingGone {
            for id in 1...3 { try mock.command("down \(id)") }
            _ = try Spool(path: s.path).enqueue(batch: (0..<2).map { Self.job("out-\($0)") })
            // Held for Kafka: locked in new/ and produced, no broker to confirm them.
            usleep(1_500_000)
        }
        if state == .brokersGone || state == .everythingGone {
            kill(mock.process.processIdentifier, SIGKILL)
            mock.process.waitUntilExit()
        }
        if state == .spoolGone || state == .everythingGone {
            try FileManager.default.removeItem(atPath: s.path)
        }

        let started = Date()
        kill(b.processIdentifier, SIGTERM)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        b.waitUntilExit()
        let took = Date().timeIntervalSince(started)
        print(String(format: "bridge stop (%@): %.2f s, status %d", state.rawValue, took, b.terminationStatus))
        #expect(took < Self.limitSeconds + Self.slack, "the stop took \(took) s; log:\n\(log)")
        #expect(b.terminationReason == .exit, "log:\n\(log)")
        switch state {
        case .brokersGone:
            // A consumer close that finishes (an error, no broker) is a clean stop; one that hangs is left.
            if b.terminationStatus != 0 {
                #expect(b.terminationStatus == 75 && log.contains("consumer did not close"), "log:\n\(log)")
            }
        case .spoolGone:
            #expect(b.terminationStatus == 75, "log:\n\(log)")
            #expect(log.contains("is gone"), "log:\n\(log)")
        case .deliveryPending, .everythingGone:
            #expect(b.terminationStatus == 75, "log:\n\(log)")
            #expect(log.contains("not confirmed by Kafka") || log.contains("exiting with status 75"), "log:\n\(log)")
            if state == .deliveryPending {
                // Unconfirmed jobs stay in new/, unlocked, for the next start.
                #expect(s.names("new").filter { $0.hasPrefix("out-") }.count == 2, "new/: \(s.names("new")); log:\n\(log)")
            }
        }
    }

    static func job(_ id: String) -> Job {
        var j = Job(prompt: "x")
        j.jobId = id
        return j
    }

    @Test("a second SIGTERM ends a stop at once, with status 75 and what was left")
    func secondSignal() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["out:3"])
        defer { if mock.process.isRunning { mock.stop() } }
        let (b, err) = try BridgeTests.startBridge(
            s.path,
            [
                "--brokers", mock.bootstrap, "--jobs-out", "out", "--stop-timeout", "60s", "--log-level", "notice",
            ])
        defer { if b.isRunning { kill(b.processIdentifier, SIGKILL); b.waitUntilExit() } }
        _ = try Spool(path: s.path).enqueue(batch: [Self.job("first")])
        try #require(WorkerProcessTests.waitUntil(30) { s.names("forwarded").count == 1 }, "the first job was not forwarded")
        for id in 1...3 { try mock.command("down \(id)") }
        _ = try Spool(path: s.path).enqueue(batch: [Self.job("pending")])
        usleep(1_000_000)
        kill(b.processIdentifier, SIGTERM)
        usleep(500_000)  // the flush waits for brokers that are down (up to 10 s of the 60 s)
        let started = Date()
        kill(b.processIdentifier, SIGTERM)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        b.waitUntilExit()
        let took = Date().timeIntervalSince(started)
        #expect(took < 1.5, "the second signal took \(took) s to end the bridge")
        #expect(b.terminationStatus == 75, "log:\n\(log)")
        #expect(log.contains("a second signal") && log.contains("flushing the producer"), "log:\n\(log)")
    }
}
