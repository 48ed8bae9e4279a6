import Foundation
import JSON
import Spool
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Provider incidents against the HTTP stand-in (Tests/peers/fake_llm.py): random 429s and 500s
/// with the worker killed, a full outage, permanent errors, a job's time budget, the circuit breaker.
@Suite("Provider incidents", .serialized)
struct IncidentTests {
    /// The outage's length: 60 s (30 s refused, 30 s of 503s) unless LLMSPOOL_TEST_OUTAGE_SECONDS says otherwise.
    static let outageSeconds = Double(ProcessInfo.processInfo.environment["LLMSPOOL_TEST_OUTAGE_SECONDS"] ?? "") ?? 60

    static func history(_ doc: JSONValue?) -> [JSONValue] {
        (doc?["history"]?.arrayValue ?? []).filter { $0["kind"]?.stringValue == "attempt" }
    }

    /// The sum of the samples of `name` whose labels contain `label` (e.g. `result="failed"`).
    static func sample(_ text: String, _ name: String, _ label: String = "") -> Double? {
        var total: Double?
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            guard label.isEmpty || line.contains(label), let v = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            total = (total ?? 0) + v
        }
        return total
    }

    /// A worker whose log goes to a file (a pipe nobody reads would fill up and stop it).
    static func startWorker(_ s: TestSpool, _ args: [String]) throws -> Process {
        let (p, _, _) = CLI.process(["worker", "--log-level", "notice"] + args, spool: s.path)
        _ = FileManager.default.createFile(atPath: s.dir.file("worker.log"), contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: s.dir.file("worker.log")))
        try log.seekToEnd()
        p.standardError = log
        try p.run()
        return p
    }

    @Test("23 % transient errors (1 in 7 → 429, 1 in 11 → 500) and five kill -9s: 300 of 300 jobs done, none failed")
    func randomFaultsAndKills() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        _ = try llm.get("/faults?p429=\(1.0 / 7)&p500=\(1.0 / 11)&seed=19")
        // 500 ms a call: 300 jobs at 16 in flight take about 10 s, so the five kills (each within
        // 0.9 s of a start) land mid-stream even on an idle machine (at 100 ms it once finished first).
        let prompts = (0..<300).map { "fake:latency=500,key=job\($0)" }
        let ids = try Spool(path: s.path).enqueue(batch: prompts.map { Job(prompt: $0) }, durability: .volatile)
        let args = ["--llm-url", llm.baseURL, "--concurrency", "16"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5 {
            let w = try Self.startWorker(s, args)
            usleep(UInt32.random(in: 500_000...900_000, using: &rng))
            kill(w.processIdentifier, SIGKILL)
            w.waitUntilExit()
        }
        #expect(s.names("done").count < 300, "the kills did not land mid-stream")
        let w = try Self.startWorker(s, args)
        let finished = WorkerProcessTests.waitUntil(180) { s.names("done").count + s.names("failed").count == 300 }
        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        #expect(finished)
        #expect(s.names("failed").isEmpty, "dead-lettered: \(s.names("failed"))")
        #expect(s.names("done") == ids.map { $0 + ".json" }.sorted())
        let stats = try llm.get("/stats")
        let counts = try llm.get("/prompts")
        let calls = prompts.reduce(0) { $0 + (counts[$1]?.intValue ?? 0) }
        print("random faults: \(calls) calls (\(stats["requests"]?.intValue ?? 0) requests) for 300 jobs, 5 kills, 0 failed")
    }

    @Test("a 400 and a 401 are dead-lettered at the first attempt", arguments: [400, 401])
    func permanentAtOnce(status: Int) throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let w = try Self.startWorker(s, ["--llm-url", llm.baseURL])
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        let prompt = "fake:status=\(status)"
        let id = try Spool(path: s.path).enqueue(Job(prompt: prompt))
        #expect(WorkerProcessTests.waitUntil(30) { s.names("failed").contains(id + ".json") })
        let doc = try? s.json("failed", id + ".json")
        #expect(doc?["error"]?["httpStatus"]?.intValue == status)
        let attempts = Self.history(doc)
        #expect(attempts.count == 1)
        #expect(attempts.first?["cause"]?.stringValue == "permanent")
        #expect(try llm.get("/prompts")[prompt]?.intValue == 1)
    }

    @Test("429s never use the job's attempts: five of them, with --max-attempts 1, then done")
    func rateLimitsArePacing() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let w = try Self.startWorker(s, ["--llm-url", llm.baseURL, "--max-attempts", "1"])
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        let prompt = "fake:fail=5,key=rl,failstatus=429,retry-after=0.2"
        let id = try Spool(path: s.path).enqueue(Job(prompt: prompt))
        #expect(WorkerProcessTests.waitUntil(30) { s.names("done").contains(id + ".json") || s.names("failed").contains(id + ".json") })
        #expect(s.names("done") == [id + ".json"])
        #expect(try llm.get("/prompts")[prompt]?.intValue == 6)
    }

    @Test("a job past its time budget is dead-lettered with every attempt, and its cause, in its history")
    func timeBudget() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let w = try Self.startWorker(s, ["--llm-url", llm.baseURL])
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        let prompt = "fake:status=500"
        var job = Job(prompt: prompt)
        job.retry = JobRetry(timeBudgetMs: 3000)
        let started = Date()
        let id = try Spool(path: s.path).enqueue(job)
        #expect(WorkerProcessTests.waitUntil(30) { s.names("failed").contains(id + ".json") })
        let took = Date().timeIntervalSince(started)
        let doc = try? s.json("failed", id + ".json")
        let attempts = Self.history(doc)
        let calls = try llm.get("/prompts")[prompt]?.intValue ?? 0
        #expect(calls >= 2 && attempts.count == calls, "\(attempts.count) attempts recorded, \(calls) calls made")
        #expect(attempts.allSatisfy { $0["cause"]?.stringValue == "transient" && $0["error"]?["httpStatus"]?.intValue == 500 })
        #expect(doc?["error"]?["message"]?.stringValue?.contains("time budget") == true, "\(doc?["error"] ?? .null)")
        #expect(took >= 2.9 && took < 10, "dead-lettered after \(took) s for a 3 s budget")
        // And it can be requeued.
        let r = try CLI.run(["requeue", id], spool: s.path)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test("a full outage in the middle of 2,000 jobs: the breaker opens, probes, closes; 0 failed; few calls during the outage")
    func outage() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let port = UInt16(try freeLoopbackPort())
        let concurrency = 32
        let prompts = (0..<2000).map { "fake:latency=50,key=job\($0)" }
        let ids = try Spool(path: s.path).enqueue(batch: prompts.map { Job(prompt: $0) }, durability: .volatile)
        let w = try Self.startWorker(
            s,
            [
                "--llm-url", llm.baseURL, "--concurrency", "\(concurrency)", "--metrics-address", "127.0.0.1:\(port)",
            ])
        defer { if w.isRunning { kill(w.processIdentifier, SIGKILL) }; w.waitUntilExit() }
        #expect(WorkerProcessTests.waitUntil(60) { s.names("done").count >= 600 })
        let metricsBefore = try MetricsTests.get(port, "/metrics").body
        let half = Self.outageSeconds / 2
        _ = try llm.get("/outage?refuse=\(half)&fail=\(half)")
        let outageStart = Date()
        let doneAtStart = s.names("done").count

        // Open within a few seconds, and shown as such.
        var status = JSONValue.null
        let opened = WorkerProcessTests.waitUntil(15) {
            status = (try? JSONParser.parse(Array(try CLI.run(["status", "--json"], spool: s.path).stdout.utf8))) ?? .null
            return ["open", "probing"].contains(status["circuitBreakers"]?.arrayValue?.first?["state"]?.stringValue ?? "")
        }
        #expect(opened, "status --json: \(status)")
        #expect(status["circuitBreakers"]?.arrayValue?.first?["openSince"]?.stringValue.flatMap(Timestamp.parse) != nil, "\(status)")
        let openMetrics = try MetricsTests.get(port, "/metrics").body
        #expect(Self.sample(openMetrics, "llmspool_circuit_breaker_open") == 1, "\(openMetrics)")
        #expect((Self.sample(openMetrics, "llmspool_circuit_breaker_open_since_seconds") ?? 0) > 1_700_000_000)
        let text = try CLI.run(["status"], spool: s.path).stdout
        #expect(text.contains("breaker"), "\(text)")

        // The outage ends; the rest is done soon after.
        let drained = WorkerProcessTests.waitUntil(Self.outageSeconds + 60) { s.names("done").count + s.names("failed").count == 2000 }
        let total = Date().timeIntervalSince(outageStart)
        let afterRecovery = total - Self.outageSeconds
        #expect(drained, "done \(s.names("done").count), failed \(s.names("failed").count)")
        #expect(s.names("failed").isEmpty, "dead-lettered: \(s.names("failed").prefix(5))")
        #expect(s.names("done") == ids.map { $0 + ".json" }.sorted())
        #expect(afterRecovery < 10, "drained \(afterRecovery) s after the outage ended")

        let after = try MetricsTests.get(port, "/metrics").body
        #expect(Self.sample(after, "llmspool_circuit_breaker_open") == 0)
        #expect(Self.sample(after, "llmspool_circuit_breaker_open_since_seconds") == 0)
        let closedStatus = try JSONParser.parse(Array(try CLI.run(["status", "--json"], spool: s.path).stdout.utf8))
        #expect(closedStatus["circuitBreakers"]?.arrayValue?.first?["state"]?.stringValue == "closed", "\(closedStatus)")
        let failedCalls =
            (Self.sample(after, "llmspool_llm_calls_total", "outcome=\"transient\"") ?? 0)
            - (Self.sample(metricsBefore, "llmspool_llm_calls_total", "outcome=\"transient\"") ?? 0)
        let probes = Self.sample(after, "llmspool_circuit_breaker_probes_total") ?? 0
        let failedProbes = Self.sample(after, "llmspool_circuit_breaker_probes_total", "result=\"failed\"") ?? 0
        let reached = try llm.get("/stats")["outage_requests"]?.intValue ?? -1
        // Calls that failed: those in flight when it began, those started before the breaker opened, the probes.
        #expect(failedCalls <= Double(concurrency) + 60 + failedProbes, "\(failedCalls) calls failed during the outage")
        #expect(failedProbes >= 2 && failedProbes <= Self.outageSeconds / 5 + 3, "\(failedProbes) failed probes")
        #expect(reached >= 0 && Double(reached) <= failedProbes + Double(concurrency), "\(reached) calls reached the stand-in during the outage")
        print(
            "outage of \(Self.outageSeconds) s: \(doneAtStart) of 2000 done when it began; \(Int(failedCalls)) calls failed"
                + " (\(Int(failedProbes)) of them probes, \(Int(probes)) probes in all); \(reached) requests reached the stand-in"
                + " during it; all 2000 done \(String(format: "%.1f", afterRecovery)) s after it ended; 0 failed")
        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        let log = (try? String(contentsOfFile: s.dir.file("worker.log"), encoding: .utf8)) ?? ""
        if let keep = ProcessInfo.processInfo.environment["LLMSPOOL_TEST_KEEP_LOG"] { try? log.write(toFile: keep, atomically: true, encoding: .utf8) }
        #expect(log.contains("circuit breaker open") && log.contains("circuit breaker closed"))
    }
}
