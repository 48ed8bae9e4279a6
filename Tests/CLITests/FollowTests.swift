import Foundation
import JSON
import Spool
import Synchronization
import Testing

/// A `llmspool` run in the background; `finish()` collects it (killed after `limit` seconds: a
/// follower that never ends fails the test instead of hanging it).
final class Background: @unchecked Sendable {
    final class Buffer: Sendable {
        let bytes = Mutex<[UInt8]>([])
        var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
    }

    let process: Process
    private let out = Buffer()
    private let err = Buffer()
    private let readers: [Thread]
    private let reading: Mutex<Bool>

    /// Starts `llmspool ARGS`; its stdout is read at once unless `readLater` (then nothing reads
    /// it until ``startReading()``: a reader that is slow, and a follower that blocks).
    init(_ args: [String], spool: String, readLater: Bool = false, limit: Double = 60) throws {
        let (p, outPipe, errPipe) = CLI.process(args, spool: spool)
        process = p
        let out = self.out, err = self.err
        let outReader = Thread {
            // `availableData`: what is there now (`read(upToCount:)` waits for the whole count or EOF).
            while case let d = outPipe.fileHandleForReading.availableData, !d.isEmpty { out.bytes.withLock { $0 += d } }
        }
        let errReader = Thread {
            while case let d = errPipe.fileHandleForReading.availableData, !d.isEmpty { err.bytes.withLock { $0 += d } }
        }
        readers = [outReader, errReader]
        reading = Mutex(!readLater)
        try p.run()
        errReader.start()
        if !readLater { outReader.start() }
        let pid = p.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + limit) { if p.isRunning { kill(pid, SIGKILL) } }
    }

    func startReading() {
        if reading.withLock({ r in
            defer { r = true }; return !r
        }) {
            readers[0].start()
        }
    }

    var stdoutSoFar: String { out.text }

    func finish() -> Run {
        startReading()
        process.waitUntilExit()
        while readers.contains(where: { !$0.isFinished }) { usleep(1000) }
        return Run(status: process.terminationStatus, stdout: out.text, stderr: err.text)
    }
}

/// `llmspool show ID --follow` on its own: a worker answers streamed jobs (`builtin:echo`, which
/// streams its echo word by word, or fake_llm.py for restarts and failures) while the built CLI
/// follows them, started early, late, or slowed down.
@Suite("show ID --follow", .serialized)
struct FollowTests {
    func withEchoWorker(delay: String, _ body: (TestSpool) throws -> Void) throws {
        let s = try TestSpool()
        defer { s.remove() }
        let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=\(delay)"])
        defer { kill(w.processIdentifier, SIGKILL); w.waitUntilExit() }
        try body(s)
    }

    func submit(_ s: TestSpool, _ prompt: String) throws -> String {
        let r = try CLI.run(["submit", "--prompt", prompt, "--stream"], spool: s.path)
        try #require(r.status == 0, "\(r.stderr)")
        return try #require(r.lines.first)
    }

    /// Submits a streamed job from its document on stdin (for prompts too long for an argument).
    func submit(_ s: TestSpool, document prompt: String) throws -> String {
        let doc = JSONValue.object(["prompt": .string(prompt), "stream": .bool(true)]).serialized()
        let r = try CLI.run(["submit", "-"], spool: s.path, stdin: Data(doc))
        try #require(r.status == 0, "\(r.stderr)")
        return try #require(r.lines.first)
    }

    func waitDone(_ s: TestSpool, _ id: String) -> Bool {
        WorkerProcessTests.waitUntil(60) { s.names("done").contains(id + ".json") }
    }

    func partial(_ s: TestSpool, _ id: String) -> String {
        (try? String(contentsOfFile: s.path + "/cur/" + Partial.fileName(id), encoding: .utf8)) ?? ""
    }

    func response(_ s: TestSpool, _ id: String) throws -> String {
        try #require(try s.json("done", id + ".json")["response"]?.stringValue)
    }

    static func events(_ r: Run) -> [JSONValue] { r.lines.compactMap { try? JSONParser.parse(Array($0.utf8)) } }

    /// The text of `--json` events after the last restart.
    static func text(_ events: [JSONValue]) -> String {
        let names = events.map { $0["event"]?.stringValue ?? "" }
        let from = (names.lastIndex(of: "restart") ?? -1) + 1
        return StreamWorkerTests.text(events[from...])
    }

    static let words = (1...40).map { "word\($0)" }.joined(separator: " ")

    @Test("plain text: what it prints is exactly the result's response and a newline")
    func plain() throws {
        try withEchoWorker(delay: "2s") { s in
            let id = try submit(s, Self.words)
            let r = try Background(["show", id, "--follow"], spool: s.path).finish()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.isEmpty, "\(r.stderr)")
            #expect(r.stdout == (try response(s, id)) + "\n")
            #expect(r.stdout == Self.words + "\n")
        }
    }

    @Test("--json: one event per line, deltas with growing offsets that add up to the response, then done")
    func json() throws {
        try withEchoWorker(delay: "2s") { s in
            let id = try submit(s, Self.words)
            let r = try Background(["show", id, "--follow", "--json"], spool: s.path).finish()
            #expect(r.status == 0, "\(r.stderr)")
            let events = Self.events(r)
            #expect(events.count == r.lines.count, "every line is one JSON event")
            let names = events.map { $0["event"]?.stringValue ?? "" }
            #expect(names.last == "done")
            #expect(names.dropLast().allSatisfy { $0 == "delta" }, "\(names)")
            #expect(names.count > 3, "the answer came in pieces: \(names)")
            let offsets = events.compactMap { $0["offset"]?.intValue }
            #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count, "\(offsets)")
            #expect(StreamWorkerTests.text(events) == (try response(s, id)))
            #expect(events.last?["response"]?.stringValue == (try response(s, id)))
            #expect(events.last?["jobId"]?.stringValue == id)
        }
    }

    @Test("--json: a retried stream gives restart, and the text after it is the response")
    func restart() throws {
        try WorkerHTTPTests().withWorker(["--request-timeout", "30s"]) { s, _ in
            let prompt = "fake:cutfirst=2,key=follow1,chunkms=50,one two three four"
            let id = try submit(s, prompt)
            let r = try Background(["show", id, "--follow", "--json"], spool: s.path).finish()
            #expect(r.status == 0, "\(r.stderr)")
            let events = Self.events(r)
            let names = events.map { $0["event"]?.stringValue ?? "" }
            let at = try #require(names.firstIndex(of: "restart"), "\(names)")
            #expect(events[at]["attempt"]?.intValue != nil, "the worker names the attempt")
            #expect(StreamWorkerTests.text(events[..<at]) == "echo: fake:cutfirst=2,key=follow1,chunkms=50,one")
            #expect(Self.text(events) == "echo: " + prompt)
            #expect(names.last == "done")
        }
    }

    @Test("a job that is already done: its response, exit 0 (and with --json, one delta without offset, then done)")
    func alreadyDone() throws {
        try withEchoWorker(delay: "100ms") { s in
            let id = try submit(s, "done before anyone follows")
            try #require(waitDone(s, id))
            let r = try CLI.run(["show", id, "--follow"], spool: s.path)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout == "done before anyone follows\n")
            let j = try CLI.run(["show", id, "--follow", "--json"], spool: s.path)
            #expect(j.status == 0, "\(j.stderr)")
            let events = Self.events(j)
            #expect(events.map { $0["event"]?.stringValue ?? "" } == ["delta", "done"])
            #expect(events.first?["text"]?.stringValue == "done before anyone follows")
            #expect(events.first?["offset"] == nil, "text from the result has no offset")
        }
    }

    @Test(
        "a job that fails (before or while it is followed): exit 69 with the reason; --json ends with failed",
        arguments: [("fake:status=400", "http"), ("fake:chunkms=50,badchunk=3,a b c d", "malformed-response")])
    func failed(_ prompt: String, _ kind: String) throws {
        try WorkerHTTPTests().withWorker { s, _ in
            let id = try submit(s, prompt)
            let r = try Background(["show", id, "--follow"], spool: s.path).finish()
            #expect(r.status == 69, "\(r.stderr)")
            #expect(r.stderr.contains("job \(id) failed: \(kind): "), "\(r.stderr)")
            let j = try CLI.run(["show", id, "--follow", "--json"], spool: s.path)
            #expect(j.status == 69, "\(j.stderr)")
            let last = try #require(Self.events(j).last)
            #expect(last["event"]?.stringValue == "failed")
            #expect(last["error"]?["kind"]?.stringValue == kind)
        }
    }

    @Test("an unknown id exits 66, an id that cannot be one says why (66), a path is a usage error (64)")
    func badIDs() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let unknown = try CLI.run(["show", "no-such-job", "--follow"], spool: s.path)
        #expect(unknown.status == 66)
        #expect(unknown.stderr.contains("no job with id no-such-job"), "\(unknown.stderr)")
        let malformed = try CLI.run(["show", "bad id!", "--follow"], spool: s.path)
        #expect(malformed.status == 66)
        #expect(malformed.stderr.contains("not a job id: it must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}"), "\(malformed.stderr)")
        let path = try CLI.run(["show", "../new/x", "--follow"], spool: s.path)
        #expect(path.status == 64, "\(path.stderr)")
        #expect(path.stderr.contains("../new/x"), "\(path.stderr)")
    }

    @Test("a follower that starts after half the answer still prints all of it", arguments: [false, true])
    func late(_ json: Bool) throws {
        try withEchoWorker(delay: "4s") { s in
            let id = try submit(s, Self.words)
            try #require(WorkerProcessTests.waitUntil(30) { partial(s, id).contains("word20") }, "the answer did not get half-way")
            let r = try Background(["show", id, "--follow"] + (json ? ["--json"] : []), spool: s.path).finish()
            #expect(r.status == 0, "\(r.stderr)")
            if json {
                #expect(StreamWorkerTests.text(Self.events(r)) == Self.words)
            } else {
                #expect(r.stdout == Self.words + "\n")
            }
        }
    }

    @Test(
        "a follower stopped mid-answer (SIGSTOP) until the job is done and its partial file gone still prints everything",
        arguments: [false, true])
    func stopped(_ json: Bool) throws {
        try withEchoWorker(delay: "4s") { s in
            let id = try submit(s, Self.words)
            let follower = try Background(["show", id, "--follow"] + (json ? ["--json"] : []), spool: s.path)
            try #require(WorkerProcessTests.waitUntil(30) { follower.stdoutSoFar.contains("word3") }, "nothing printed")
            kill(follower.process.processIdentifier, SIGSTOP)
            try #require(waitDone(s, id))
            try #require(WorkerProcessTests.waitUntil(10) { !FileManager.default.fileExists(atPath: s.path + "/cur/" + Partial.fileName(id)) })
            let seen = follower.stdoutSoFar
            kill(follower.process.processIdentifier, SIGCONT)
            let r = follower.finish()
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!seen.contains("word40"), "the follower was behind when it stopped")
            if json {
                let events = Self.events(r)
                #expect(StreamWorkerTests.text(events) == Self.words)
                #expect(events.contains { $0["event"]?.stringValue == "delta" && $0["offset"] == nil }, "the rest came from the result")
            } else {
                #expect(r.stdout == Self.words + "\n")
            }
        }
    }

    @Test("a follower whose reader is slow (its pipe full) while the job finishes still prints everything", arguments: [false, true])
    func slowReader(_ json: Bool) throws {
        // 300 words of 1,000 bytes: far more than a pipe holds, so the follower blocks on its output.
        let big = (0..<300).map { String(format: "%04d", $0) + String(repeating: "x", count: 995) }.joined(separator: " ")
        try withEchoWorker(delay: "1500ms") { s in
            let id = try submit(s, document: big)
            let follower = try Background(["show", id, "--follow"] + (json ? ["--json"] : []), spool: s.path, readLater: true)
            try #require(waitDone(s, id))
            try #require(WorkerProcessTests.waitUntil(10) { !FileManager.default.fileExists(atPath: s.path + "/cur/" + Partial.fileName(id)) })
            #expect(follower.process.isRunning, "the follower was still writing when the job ended")
            let r = follower.finish()
            #expect(r.status == 0, "\(r.stderr)")
            if json {
                #expect(StreamWorkerTests.text(Self.events(r)) == big)
            } else {
                #expect(r.stdout == big + "\n")
            }
        }
    }
}
