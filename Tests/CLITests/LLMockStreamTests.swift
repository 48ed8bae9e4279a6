import Foundation
import JSON
import Spool
import TestSupport
import Testing

/// llmock (PyPI, `pip install llmock`; 0.2.2 here) as a process: a third-party mock of the OpenAI
/// API whose streams and stream faults are not ours, beside our own fake_llm.py.
///
/// What it can inject into a stream (its scenario queue, `POST /_llmock/scenario`, each fault for
/// the next `times` streamed requests): `disconnect` (the connection dropped after N chunks),
/// `truncate` (the body ends cleanly after N chunks, no finish reason, no `[DONE]`), `malformed`
/// (chunk N's JSON cut in half), `stall` (no byte for S seconds after N chunks, then the rest),
/// and a slow first token. What it cannot: an `error` event mid-stream (its failures are HTTP
/// error answers before any body), and a server that ignores `stream: true` (a streamed request
/// always gets `text/event-stream`). Those two, and exact timing, stay with fake_llm.py
/// (StreamWorkerTests).
final class LLMock: Sendable {
    /// Whether `llmock` is on PATH (scripts/test skips tests whose peer is absent, saying why).
    static let available: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["llmock", "--help"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    let process: Process
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    init(_ args: [String] = []) throws {
        port = try freeLoopbackPort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["llmock", "serve", "--host", "127.0.0.1", "--port", String(port), "--log-level", "warning"] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while (try? request("GET", "/health").status) != 200 {
            guard Date() < deadline, p.isRunning else {
                stop()
                throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "llmock did not start on port \(port)"])
            }
            usleep(100_000)
        }
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Queues behaviours for the coming requests (llmock's admin API).
    func scenario(_ behaviors: [JSONValue]) throws {
        let r = try request("POST", "/_llmock/scenario", body: JSONValue.object(["behaviors": .array(behaviors)]).serialized())
        guard r.status == 201 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "scenario: \(r.status)"]) }
    }

    /// How many chat calls llmock answered (or broke) so far.
    func chatCalls() throws -> Int {
        let doc = try JSONParser.parse(request("GET", "/_llmock/requests").body)
        return doc["requests"]?.arrayValue?.filter { $0["path"]?.stringValue?.hasSuffix("/chat/completions") == true }.count ?? -1
    }

    /// One HTTP/1.0 request through a raw socket (no client library to trust).
    func request(_ method: String, _ path: String, body: [UInt8] = []) throws -> (status: Int, body: [UInt8]) {
        try RawHTTP.request(port: port, method, path, body: body)
    }
}

@Suite(
    "Streaming through the worker against llmock", .serialized,
    .enabled(if: LLMock.available, "llmock is not installed (python3 -m pip install llmock)"))
struct LLMockStreamTests {
    /// Every streamed request gets this text, in word-sized chunks: chunk 0 is the role, chunks
    /// 1–8 the words, then the finish reason, the usage and `[DONE]`.
    static let answer = "alpha beta gamma delta epsilon zeta eta theta"

    func withWorker(_ args: [String] = [], faults: [JSONValue] = [], _ body: (TestSpool, LLMock) throws -> Void) throws {
        let s = try TestSpool()
        let llm = try LLMock()
        defer { llm.stop(); s.remove() }
        try llm.scenario([.object(["type": .string("reply"), "text": .string(Self.answer), "times": .null])] + faults)
        let (w, _) = try WorkerProcessTests.startWorker(
            s.path, ["--llm-url", llm.baseURL, "--model", "stand-in", "--request-timeout", "30s"] + args)
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        try body(s, llm)
    }

    static func fault(_ kind: String, after chunks: Int, stall: Double? = nil) -> JSONValue {
        var o: JSONObject = ["type": .string("stream_fault"), "kind": .string(kind), "after_chunks": .number(String(chunks)), "times": .number("1")]
        if let stall { o["stall_seconds"] = .number(String(stall)) }
        return .object(o)
    }

    @Test("a streamed answer: word by word, the result is the deltas' concatenation, usage from the stream")
    func streamed() throws {
        try withWorker { s, llm in
            let (r, events, doc) = try StreamWorkerTests().follow(s, "say the greek letters")
            #expect(r.status == 0, "\(r.stderr)")
            let deltas = events.filter { $0["event"]?.stringValue == "delta" }
            #expect(deltas.count >= 2, "\(events)")
            #expect(StreamWorkerTests.text(events) == Self.answer)
            #expect(!events.contains { $0["event"]?.stringValue == "restart" })
            #expect(doc?["response"]?.stringValue == Self.answer)
            #expect(doc?["usage"]?["estimated"] == nil, "llmock sends usage when asked (include_usage)")
            #expect((doc?["usage"]?["totalTokens"]?.intValue ?? 0) > 0)
            #expect(try llm.chatCalls() == 1)
        }
    }

    @Test(
        "cut mid-stream (connection dropped, or the body ended without a finish and [DONE]): retried, the reader gets restart, the result is the second attempt's",
        arguments: ["disconnect", "truncate"])
    func cut(_ kind: String) throws {
        try withWorker(faults: [Self.fault(kind, after: 4)]) { s, llm in
            let (r, events, doc) = try StreamWorkerTests().follow(s, "say the greek letters")
            #expect(r.status == 0, "\(r.stderr)")
            let names = events.map { $0["event"]?.stringValue ?? "" }
            let restart = try #require(names.firstIndex(of: "restart"), "\(names)")
            #expect(Self.answer.hasPrefix(StreamWorkerTests.text(events[..<restart])))
            #expect(!StreamWorkerTests.text(events[..<restart]).isEmpty, "the first attempt's text reached the reader before the cut")
            #expect(StreamWorkerTests.text(events[(restart + 1)...]) == Self.answer)
            #expect(names.last == "done")
            #expect(doc?["response"]?.stringValue == Self.answer)
            #expect(try llm.chatCalls() == 2)
        }
    }

    @Test("an invalid chunk mid-stream: malformed-response, not retried, dead-lettered")
    func malformed() throws {
        try withWorker(["--max-attempts", "3"], faults: [Self.fault("malformed", after: 3)]) { s, llm in
            let (r, events, doc) = try StreamWorkerTests().follow(s, "say the greek letters")
            #expect(r.status == 69, "\(r.stderr)")
            #expect(doc?["error"]?["kind"]?.stringValue == "malformed-response", "\(String(describing: doc))")
            #expect(events.last?["event"]?.stringValue == "failed")
            #expect(try llm.chatCalls() == 1)
        }
    }

    @Test("a stream that stalls past --stream-idle-timeout fails as a timeout, long before --request-timeout")
    func stalled() throws {
        try withWorker(["--max-attempts", "1", "--stream-idle-timeout", "1s"], faults: [Self.fault("stall", after: 3, stall: 60)]) { s, _ in
            let started = Date()
            let (r, _, doc) = try StreamWorkerTests().follow(s, "say the greek letters")
            #expect(r.status == 69, "\(r.stderr)")
            #expect(doc?["error"]?["kind"]?.stringValue == "timeout", "\(String(describing: doc))")
            #expect(Date().timeIntervalSince(started) < 20)
        }
    }

    @Test("a stall shorter than --stream-idle-timeout is only a pause: one call, the whole answer")
    func pause() throws {
        try withWorker(["--stream-idle-timeout", "10s"], faults: [Self.fault("stall", after: 3, stall: 1.5)]) { s, llm in
            let (r, events, doc) = try StreamWorkerTests().follow(s, "say the greek letters")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(StreamWorkerTests.text(events) == Self.answer)
            #expect(doc?["response"]?.stringValue == Self.answer)
            #expect(try llm.chatCalls() == 1)
        }
    }
}
