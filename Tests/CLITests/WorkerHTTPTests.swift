import Foundation
import JSON
import Spool
import Testing

/// `Tests/peers/fake_llm.py` as a process: a real HTTP server standing in for the LLM.
final class LLMStandIn: Sendable {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("peers/fake_llm.py").path
    let process: Process
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    init() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-u", Self.script]
        let out = Pipe()
        p.standardOutput = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        var line: [UInt8] = []
        while let chunk = try out.fileHandleForReading.read(upToCount: 1), let b = chunk.first, b != 0x0A { line.append(b) }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            kill(p.processIdentifier, SIGKILL)
            throw CocoaError(.fileReadCorruptFile)
        }
        process = p
        self.port = port
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// GET a JSON document from the server (through a raw socket: no client library to trust).
    func get(_ path: String) throws -> JSONValue {
        try JSONParser.parse(RawHTTP.request(port: port, "GET", path).body)
    }
}

@Suite("Worker against an HTTP stand-in for the LLM", .serialized)
struct WorkerHTTPTests {
    func withWorker(_ args: [String] = [], _ body: (TestSpool, LLMStandIn) throws -> Void) throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let (w, _) = try WorkerProcessTests.startWorker(
            s.path, ["--llm-url", llm.baseURL, "--model", "stand-in", "--request-timeout", "2s"] + args)
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        try body(s, llm)
    }

    func submit(_ s: TestSpool, _ prompt: String, tenant: String = "t") throws -> (Run, JSONValue?) {
        let r = try CLI.run(["submit", "--prompt", prompt, "--tenant", tenant, "--wait", "--timeout", "60s"], spool: s.path)
        let id = r.lines.first ?? ""
        let state = s.names("done").contains(id + ".json") ? "done" : "failed"
        return (r, try? s.json(state, id + ".json"))
    }

    @Test("success: the answer, the model and the usage land in done/")
    func success() throws {
        try withWorker { s, _ in
            let (r, doc) = try submit(s, "hello there")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.lines.last == "echo: hello there")
            #expect(doc?["model"]?.stringValue == "stand-in")
            #expect((doc?["usage"]?["totalTokens"]?.intValue ?? 0) > 0)
            #expect(doc?["finishReason"]?.stringValue == "stop")
        }
    }

    @Test("500 twice, then success: retried with backoff, answered once")
    func serverErrorThenSuccess() throws {
        try withWorker { s, llm in
            let prompt = "fake:fail=2,key=k1"
            let (r, _) = try submit(s, prompt)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try llm.get("/prompts")[prompt]?.intValue == 3)
        }
    }

    @Test("429 with Retry-After: waits as asked, and uses none of the job's attempts (--max-attempts 1)")
    func rateLimitedThenDone() throws {
        try withWorker(["--max-attempts", "1"]) { s, llm in
            let prompt = "fake:fail=2,key=rl429,failstatus=429,retry-after=1"
            let started = Date()
            let (r, doc) = try submit(s, prompt)
            let took = Date().timeIntervalSince(started)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(doc?["status"]?.stringValue == "done")
            #expect(try llm.get("/prompts")[prompt]?.intValue == 3)
            #expect(took >= 1.9, "two waits of 1 s took \(took) s")
        }
    }

    @Test(
        "permanent failures are not retried",
        arguments: [
            ("fake:status=400", "http", 400), ("fake:malformed", "malformed-response", 200),
        ])
    func permanent(_ prompt: String, _ kind: String, _ status: Int) throws {
        try withWorker { s, llm in
            let (r, doc) = try submit(s, prompt)
            #expect(r.status == 69)
            #expect(doc?["error"]?["kind"]?.stringValue == kind)
            #expect(try llm.get("/prompts")[prompt]?.intValue == 1)
        }
    }

    @Test(
        "a dropped connection and a hung server are transient: retried, then dead-lettered",
        arguments: [
            ("fake:drop", "connection"), ("fake:hang", "timeout"),
        ])
    func transientFaults(_ prompt: String, _ kind: String) throws {
        try withWorker(["--max-attempts", "2"]) { s, llm in
            let (r, doc) = try submit(s, prompt)
            #expect(r.status == 69)
            #expect(doc?["error"]?["kind"]?.stringValue == kind)
            #expect((try llm.get("/prompts")[prompt]?.intValue ?? 0) >= 2)
        }
    }

    @Test("fairness: a tenant's 5 jobs are not starved behind another tenant's backlog of 300")
    func fairness() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let spool = try Spool(path: s.path)
        var big = (0..<300).map { Job(prompt: "fake:latency=50,key=big\($0)") }
        for k in big.indices { big[k].tenantId = "big" }
        _ = try spool.enqueue(batch: big, durability: .volatile)
        var small = (0..<5).map { Job(prompt: "fake:latency=50,key=small\($0)") }
        for k in small.indices { small[k].tenantId = "small" }
        let smallIds = try spool.enqueue(batch: small, durability: .volatile)
        let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", llm.baseURL, "--concurrency", "4"])
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        #expect(WorkerProcessTests.waitUntil(60) { smallIds.allSatisfy { s.names("done").contains($0 + ".json") } })
        // Round-robin: the small tenant's 5 jobs were done after at most ~5 of the big tenant's (plus those in flight).
        let bigDone = s.names("done").count - 5
        #expect(bigDone <= 5 + 4 + 4, "the small tenant waited behind \(bigDone) of the big tenant's jobs")
    }

    @Test("pacing: with no requests left in the provider's window, the worker waits for its reset instead of meeting a 429")
    func pacesToRateLimitHeaders() throws {
        func spread(_ remaining: Int) throws -> Int64 {
            let s = try TestSpool()
            let llm = try LLMStandIn()
            defer { llm.stop(); s.remove() }
            let ids = try Spool(path: s.path).enqueue(batch: (0..<12).map { Job(prompt: "fake:remaining=\(remaining),key=p\($0)") })
            let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", llm.baseURL, "--concurrency", "4"])
            defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
            #expect(WorkerProcessTests.waitUntil(30) { s.names("done").count == 12 })
            let times = try ids.compactMap { try s.json("done", $0 + ".json")["startedAt"]?.stringValue.flatMap(Timestamp.parse) }
            return (times.max() ?? 0) - (times.min() ?? 0)
        }
        // Plenty left: all 12 calls start at once. None left (reset in 1 s): three waves, a second apart.
        #expect(try spread(5000) < 900)
        #expect(try spread(0) >= 1800)
    }

    @Test("1,000 jobs, the worker SIGKILLed 20 times: done/ has one result each; extra calls ≤ calls in flight at the kills")
    func chaos() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let concurrency = 40
        let prompts = (0..<1000).map { "fake:latency=400,key=job\($0)" }  // 100 jobs/s at 40 in flight: 20 kills of at most 0.4 s cannot finish them
        let ids = try Spool(path: s.path).enqueue(batch: prompts.map { Job(prompt: $0) }, durability: .volatile)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", llm.baseURL, "--concurrency", "\(concurrency)"])
            usleep(UInt32.random(in: 100_000...400_000, using: &rng))
            kill(w.processIdentifier, SIGKILL)
            w.waitUntilExit()
        }
        #expect(s.names("done").count < 1000, "the kills did not land mid-stream")
        let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", llm.baseURL, "--concurrency", "\(concurrency)"])
        let finished = WorkerProcessTests.waitUntil(120) { s.names("done").count == 1000 }
        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        #expect(finished)
        #expect(s.names("done") == ids.map { $0 + ".json" }.sorted())
        #expect(s.names("new").isEmpty && s.names("cur").isEmpty && s.names("failed").isEmpty)
        let counts = try llm.get("/prompts")
        let calls = prompts.map { counts[$0]?.intValue ?? 0 }
        #expect(calls.allSatisfy { $0 >= 1 })
        let extra = calls.reduce(0) { $0 + $1 - 1 }
        #expect(extra <= concurrency * 20, "\(extra) extra calls for 20 kills at \(concurrency) in flight")
        for id in ids.prefix(50) {
            let doc = try s.json("done", id + ".json")
            #expect(doc["response"]?.stringValue == "echo: " + (doc["job"]?["prompt"]?.stringValue ?? ""))
        }
    }
}
