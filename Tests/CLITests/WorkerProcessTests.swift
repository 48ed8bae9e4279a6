import Foundation
import Spool
import Testing

/// The worker daemon as a process: graceful stop, SIGKILL chaos, bad files in a live spool.
@Suite("Worker process", .serialized)
struct WorkerProcessTests {
    static func startWorker(_ spool: String, _ args: [String]) throws -> (Process, Pipe) {
        let (p, _, err) = CLI.process(["worker", "--log-level", "notice"] + args, spool: spool)
        try p.run()
        return (p, err)
    }

    static func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    @Test("SIGTERM: calls past the grace period are given back to new/ and the worker exits 0")
    func gracefulStop() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let ids = try Spool(path: s.path).enqueue(batch: (0..<5).map { Job(prompt: "slow \($0)") })
        let (w, _) = try Self.startWorker(s.path, ["--llm-url", "builtin:echo?delay=20s", "--grace-period", "500ms"])
        #expect(Self.waitUntil(10) { s.names("cur").count == 5 }, "the worker did not claim the jobs")
        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        #expect(w.terminationReason == .exit && w.terminationStatus == 0)
        #expect(s.names("cur").isEmpty)
        #expect(s.names("new") == ids.map { $0 + ".json" }.sorted())
        for id in ids {
            let job = try s.json("new", id + ".json")
            #expect(job["attempts"] == nil, "a graceful give-back must not count as an abandoned claim")
            #expect(job["history"]?.arrayValue?.last?["kind"]?.stringValue == "returned")
        }
    }

    @Test("SIGTERM: calls that end within the grace period finish normally")
    func gracefulFinish() throws {
        let s = try TestSpool()
        defer { s.remove() }
        _ = try Spool(path: s.path).enqueue(batch: (0..<5).map { Job(prompt: "quick \($0)") })
        let (w, _) = try Self.startWorker(s.path, ["--llm-url", "builtin:echo?delay=700ms", "--grace-period", "10s"])
        #expect(Self.waitUntil(10) { s.names("cur").count == 5 })
        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        #expect(w.terminationStatus == 0)
        #expect(s.names("done").count == 5 && s.names("new").isEmpty && s.names("cur").isEmpty)
    }

    @Test("a worker killed with SIGKILL 20 times over 1,000 jobs: each answered once in done/, none lost")
    func chaos() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let ids = try Spool(path: s.path).enqueue(batch: (0..<1000).map { Job(prompt: "job \($0)") }, durability: .volatile)
        var rng = SystemRandomNumberGenerator()
        var kills = 0
        while kills < 20 {
            let (w, _) = try Self.startWorker(s.path, ["--llm-url", "builtin:echo?delay=100ms", "--concurrency", "20"])
            usleep(UInt32.random(in: 50_000...300_000, using: &rng))
            kill(w.processIdentifier, SIGKILL)
            w.waitUntilExit()
            if w.terminationReason == .uncaughtSignal { kills += 1 }
        }
        let doneAtLastKill = s.names("done").count
        #expect(doneAtLastKill < 1000, "the kills did not all land mid-stream")
        // The last worker recovers what the dead ones held and finishes the rest.
        let (w, _) = try Self.startWorker(s.path, ["--llm-url", "builtin:echo", "--concurrency", "50"])
        let finished = Self.waitUntil(120) { s.names("done").count == 1000 }
        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        #expect(finished, "done/ has \(s.names("done").count) of 1000")
        #expect(kills == 20)
        #expect(s.names("done") == ids.map { $0 + ".json" }.sorted())
        #expect(s.names("new").isEmpty && s.names("cur").isEmpty && s.names("failed").isEmpty)
        var extraCalls = 0
        for id in ids {
            let doc = try s.json("done", id + ".json")
            #expect(doc["jobId"]?.stringValue == id)
            #expect(doc["response"]?.stringValue == doc["job"]?["prompt"]?.stringValue)
            extraCalls += (doc["attempts"]?.intValue ?? 1) - 1
        }
        // Only jobs in flight at a kill are claimed again: at most the concurrency (20) per kill.
        #expect(extraCalls > 0, "no kill caught a job in flight")
        #expect(extraCalls <= 20 * kills)
    }

    @Test("a bad file dropped into a live spool is dead-lettered while good jobs flow")
    func badFileLive() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let (w, _) = try Self.startWorker(s.path, ["--llm-url", "builtin:echo"])
        defer { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() }
        try s.write("tmp", "bad.json", Array("{\"prompt\": oops}".utf8))
        try s.age("tmp", "bad.json")
        try FileManager.default.moveItem(atPath: s.path + "/tmp/bad.json", toPath: s.path + "/new/bad.json")
        let good = try CLI.run(["submit", "--prompt", "still flowing", "--wait", "--timeout", "20s"], spool: s.path)
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.lines.last == "still flowing")
        #expect(Self.waitUntil(10) { s.names("failed") == ["bad.json", "bad.original"] })
        #expect(try s.json("failed", "bad.json")["error"]?["kind"]?.stringValue == "invalid-json")
    }

    @Test("a truncated file written and closed just now is dead-lettered once its 2 s settle time is over, not at the next rescan")
    func truncatedFileSettles() throws {
        let s = try TestSpool()
        defer { s.remove() }
        // Rescans a minute apart: only the settle timer can find the file again in time.
        let config = s.dir.file("config.json")
        try Data("{\"worker\": {\"rescanIntervalSeconds\": 60}}".utf8).write(to: URL(fileURLWithPath: config))
        let (w, _) = try Self.startWorker(s.path, ["--llm-url", "builtin:echo", "--config", config])
        defer { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() }
        #expect(try CLI.run(["submit", "--prompt", "up", "--wait", "--timeout", "20s"], spool: s.path).status == 0)
        let start = Date()
        try s.write("new", "half.json", Array("{\"prompt\":\"the writer stopp".utf8))
        #expect(Self.waitUntil(6) { s.names("failed") == ["half.json", "half.original"] }, "not dead-lettered within 6 s")
        let took = Date().timeIntervalSince(start)
        #expect(took >= 1.9, "dead-lettered after \(took) s, before the settle time")
        #expect(try s.json("failed", "half.json")["error"]?["kind"]?.stringValue == "invalid-json")
    }
}
