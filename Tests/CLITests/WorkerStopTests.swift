import Foundation
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A worker's stop ends within its grace period plus 5 s whatever state it is in: an LLM that
/// never answers, the spool removed under it.
@Suite("Worker stop is bounded", .serialized)
struct WorkerStopTests {
    enum State: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case llmHangs, spoolGone, both
        var testDescription: String { rawValue }
    }

    @Test(
        "SIGTERM ends the worker within the grace period plus 5 s; status 75 and a log line when the spool is gone",
        arguments: State.allCases)
    func boundedStop(_ state: State) throws {
        let s = try TestSpool()
        defer { s.remove() }
        // An LLM that accepts connections (the kernel does, into the backlog) and never answers.
        let (listener, port) = try MetricsTests.listen()
        defer { close(listener) }
        let llm = state == .spoolGone ? "builtin:echo?delay=60s" : "http://127.0.0.1:\(port)/v1"
        _ = try Spool(path: s.path).enqueue(batch: (0..<3).map { Job(prompt: "stuck \($0)") })
        let (w, err) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", llm, "--grace-period", "1s", "--max-attempts", "1"])
        defer { if w.isRunning { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() } }
        try #require(WorkerProcessTests.waitUntil(10) { s.names("cur").count == 3 }, "the worker did not claim the jobs")
        usleep(300_000)
        if state != .llmHangs { try FileManager.default.removeItem(atPath: s.path) }

        let started = Date()
        kill(w.processIdentifier, SIGTERM)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        w.waitUntilExit()
        let took = Date().timeIntervalSince(started)
        print(String(format: "worker stop (%@): %.2f s, status %d", state.rawValue, took, w.terminationStatus))
        #expect(took < 1 + 5 + 1, "the stop took \(took) s; log:\n\(log)")
        #expect(w.terminationReason == .exit, "log:\n\(log)")
        if state == .llmHangs {
            #expect(w.terminationStatus == 0, "log:\n\(log)")
            #expect(s.names("new").count == 3 && s.names("cur").isEmpty, "new/ \(s.names("new")), cur/ \(s.names("cur"))")
        } else {
            #expect(w.terminationStatus == 75, "log:\n\(log)")
            #expect(log.contains("is gone"), "log:\n\(log)")
        }
    }

    @Test("a second SIGTERM ends the grace period's wait at once: status 75, and what was left in cur/")
    func secondSignal() throws {
        let s = try TestSpool()
        defer { s.remove() }
        _ = try Spool(path: s.path).enqueue(batch: (0..<2).map { Job(prompt: "slow \($0)") })
        let (w, err) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=60s", "--grace-period", "60s"])
        defer { if w.isRunning { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() } }
        try #require(WorkerProcessTests.waitUntil(10) { s.names("cur").count == 2 }, "the worker did not claim the jobs")
        kill(w.processIdentifier, SIGTERM)
        usleep(300_000)
        let started = Date()
        kill(w.processIdentifier, SIGTERM)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        w.waitUntilExit()
        #expect(Date().timeIntervalSince(started) < 1.5)
        #expect(w.terminationStatus == 75, "log:\n\(log)")
        #expect(log.contains("a second signal") && log.contains("/cur"), "log:\n\(log)")
    }
}
