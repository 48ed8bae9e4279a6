import Foundation
import JSON
import Spool
import Testing

/// Streamed jobs (`submit --stream`) through the worker against fake_llm.py's streams and faults,
/// read back with `submit --wait --stream --json`.
@Suite("Streaming through the worker against an HTTP stand-in", .serialized)
struct StreamWorkerTests {
    func follow(_ s: TestSpool, _ prompt: String) throws -> (Run, [JSONValue], JSONValue?) {
        let r = try CLI.run(["submit", "--prompt", prompt, "--stream", "--wait", "--json", "--timeout", "60s"], spool: s.path)
        let id = r.lines.first ?? ""
        let events = r.lines.dropFirst().compactMap { try? JSONParser.parse(Array($0.utf8)) }
        let state = s.names("done").contains(id + ".json") ? "done" : "failed"
        return (r, events, try? s.json(state, id + ".json"))
    }

    static func text(_ events: some Sequence<JSONValue>) -> String {
        events.filter { $0["event"]?.stringValue == "delta" }.map { $0["text"]?.stringValue ?? "" }.joined()
    }

    @Test("a stream cut mid-answer is retried: the reader gets restart, and the final result is the second attempt's deltas")
    func cutThenRetry() throws {
        try WorkerHTTPTests().withWorker { s, llm in
            let prompt = "fake:cutfirst=2,key=cut1,chunkms=30,one two three four"
            let (r, events, doc) = try follow(s, prompt)
            #expect(r.status == 0, "\(r.stderr)")
            let names = events.map { $0["event"]?.stringValue ?? "" }
            let restart = try #require(names.firstIndex(of: "restart"), "\(names)")
            #expect(Self.text(events[..<restart]) == "echo: fake:cutfirst=2,key=cut1,chunkms=30,one")
            #expect(Self.text(events[(restart + 1)...]) == "echo: " + prompt)
            #expect(names.last == "done")
            #expect(doc?["response"]?.stringValue == "echo: " + prompt)
            #expect(try llm.get("/prompts")[prompt]?.intValue == 2)
        }
    }

    @Test("a streamed job's partial file is there, empty, from its claim on: before the provider's first byte")
    func partialFromClaim() throws {
        // Readers then wait on that file alone from the claim on (the CGI's narrow wait), instead
        // of on cur/ until the first delta, where every reader woke for every other job's first delta.
        try WorkerHTTPTests().withWorker { s, llm in
            let prompt = "fake:gate=first,a b"
            let r = try CLI.run(["submit", "--prompt", prompt, "--stream"], spool: s.path)
            let id = try #require(r.lines.first, "\(r.stderr)")
            let partial = s.path + "/cur/" + Partial.fileName(id)
            // The call is held at the stand-in's gate: the job is claimed, and no byte has come.
            #expect(WorkerProcessTests.waitUntil(30) { s.names("cur").contains(id + ".json") && FileManager.default.fileExists(atPath: partial) })
            #expect(((try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? Int) == 0)
            _ = try llm.get("/release/first")
            #expect(WorkerProcessTests.waitUntil(30) { s.names("done").contains(id + ".json") })
            #expect(try s.json("done", id + ".json")["response"]?.stringValue == "echo: " + prompt)
            #expect(!FileManager.default.fileExists(atPath: partial))
        }
    }

    @Test("no usage in the stream: the tenant is charged an estimate, and the result says so")
    func estimatedUsage() throws {
        try WorkerHTTPTests().withWorker { s, _ in
            let (r, events, doc) = try follow(s, "fake:nousage,a b c")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(Self.text(events) == "echo: fake:nousage,a b c")
            #expect(doc?["usage"]?["estimated"]?.boolValue == true)
            #expect((doc?["usage"]?["totalTokens"]?.intValue ?? 0) > 0)
        }
    }

    @Test("a server that ignores stream: true: one delta, the result as today")
    func ignoredStream() throws {
        try WorkerHTTPTests().withWorker { s, _ in
            let (r, events, doc) = try follow(s, "fake:nostream,x y")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(Self.text(events) == "echo: fake:nostream,x y")
            #expect(doc?["usage"]?["estimated"] == nil)
        }
    }

    @Test(
        "an error event mid-stream is transient (retried, then dead-lettered); a chunk that is not JSON is not retried",
        arguments: [
            ("fake:errorevent=1,a b", "stream-error", 2), ("fake:badchunk=2,a b", "malformed-response", 1),
        ])
    func failures(_ prompt: String, _ kind: String, _ calls: Int) throws {
        try WorkerHTTPTests().withWorker(["--max-attempts", "2"]) { s, llm in
            let (r, events, doc) = try follow(s, prompt)
            #expect(r.status == 69, "\(r.stderr)")
            #expect(doc?["error"]?["kind"]?.stringValue == kind, "\(String(describing: doc))")
            #expect(events.last?["event"]?.stringValue == "failed")
            #expect(try llm.get("/prompts")[prompt]?.intValue == calls)
        }
    }

    @Test("a stalled stream fails on the idle timeout, not the request timeout")
    func stalled() throws {
        try WorkerHTTPTests().withWorker(["--max-attempts", "1", "--stream-idle-timeout", "1s", "--request-timeout", "60s"]) { s, _ in
            let started = Date()
            let (r, _, doc) = try follow(s, "fake:stall=1,a b")
            #expect(r.status == 69)
            #expect(doc?["error"]?["kind"]?.stringValue == "timeout")
            #expect(doc?["error"]?["message"]?.stringValue?.contains("no byte of the streamed answer for 1.0 seconds (the stream's idle timeout)") == true)
            #expect(Date().timeIntervalSince(started) < 20)
        }
    }

    @Test("a stream that stalls mid-answer is cut at the idle timeout and retried: the reader gets restart, the job ends answered")
    func stalledThenRetried() throws {
        try WorkerHTTPTests().withWorker(["--stream-idle-timeout", "1s", "--request-timeout", "60s"]) { s, llm in
            let prompt = "fake:stallfirst=2,key=stall1,chunkms=20,one two three four"
            let (r, events, doc) = try follow(s, prompt)
            #expect(r.status == 0, "\(r.stderr)")
            let names = events.map { $0["event"]?.stringValue ?? "" }
            let restart = try #require(names.firstIndex(of: "restart"), "\(names)")
            #expect(Self.text(events[..<restart]) == "echo: fake:stallfirst=2,key=stall1,chunkms=20,one")
            #expect(Self.text(events[(restart + 1)...]) == "echo: " + prompt)
            #expect(names.last == "done")
            #expect(doc?["response"]?.stringValue == "echo: " + prompt)
            #expect(try llm.get("/prompts")[prompt]?.intValue == 2)
        }
    }
}
