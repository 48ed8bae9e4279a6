import Foundation
import JSON
import Spool
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `llmspool bridge --deltas-out`: the partial answers of streamed jobs on a topic, against
/// librdkafka's mock cluster, answered by a real worker (`builtin:echo`, which streams its echo
/// word by word), read back with kcat.
@Suite(
    "Kafka bridge: deltas of streamed jobs", .serialized,
    .enabled(if: kafkaPeersInstalled, "needs kcat and cc (apt-get install kcat librdkafka-dev)"))
struct BridgeDeltasTests {
    /// One message of the deltas topic.
    struct Message {
        var key: String
        var headers: String
        var doc: JSONValue
        var type: String { doc["type"]?.stringValue ?? "" }
        var offset: Int? { doc["offset"]?.intValue }
    }

    /// Every message on `topic`, read to the end (one job's stay in their order: one partition).
    static func messages(_ mock: KafkaMock, _ topic: String = "deltas") throws -> [Message] {
        let r = try KafkaMock.kcat(["-C", "-b", mock.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n"], timeout: 30)
        return r.stdout.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let doc = try? JSONParser.parse(Array(parts[2].utf8)) else { return nil }
            return Message(key: String(parts[0]), headers: String(parts[1]), doc: doc)
        }
    }

    /// The messages of job `id`, once its last one (`done` or `failed`) is on the topic.
    static func stream(_ mock: KafkaMock, _ id: String, seconds: Double = 60) throws -> [Message] {
        var found: [Message] = []
        _ = try WorkerProcessTests.waitUntil(seconds) {
            found = try messages(mock).filter { $0.key == id }
            return found.contains { $0.type == "done" || $0.type == "failed" }
        }
        return found
    }

    /// What a consumer does (docs/bridge.md, "Deltas out"): drops a delta or restart whose offset
    /// it has passed, empties its text at a restart, appends a delta.
    static func consume(_ messages: [Message]) -> String {
        var text = "", last = 0
        for m in messages {
            guard let offset = m.offset, offset > last else { continue }
            last = offset
            if m.type == "restart" { text = "" } else if m.type == "delta" { text += m.doc["text"]?.stringValue ?? "" }
        }
        return text
    }

    static func words(_ n: Int, _ tag: String) -> String { (1...n).map { "\(tag)\($0)" }.joined(separator: " ") }

    static func bridge(_ s: TestSpool, _ mock: KafkaMock, log: String) throws -> HostProcess {
        let b = try HostProcess.bridge(
            spool: s.path, ["--brokers", mock.bootstrap, "--deltas-out", "deltas", "--log-level", "info"], log: s.dir.file(log))
        // Its watch of cur/ is set before it logs this, so no stream started later is missed.
        #expect(WorkerProcessTests.waitUntil(30) { b.log.contains("producing deltas") }, "\(b.log)")
        return b
    }

    /// A spool, a mock cluster with the topic `deltas`, and a bridge publishing to it, for `body`.
    static func withBridge(_ body: (TestSpool, KafkaMock, HostProcess) throws -> Void) throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["deltas:3"])
        defer { mock.stop() }
        let b = try bridge(s, mock, log: "bridge.log")
        defer { b.stop() }
        try body(s, mock, b)
    }

    @Test("a streamed job answered word by word: its deltas concatenate to the result, offsets grow, done comes last; a job that did not ask has no messages")
    func streamed() throws {
        try Self.withBridge { s, mock, b in
            let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=2000ms"])
            defer { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() }
            let prompt = Self.words(20, "w")
            #expect(try CLI.run(["submit", "--prompt", prompt, "--stream", "--id", "s1", "--user", "alice"], spool: s.path).status == 0)
            #expect(try CLI.run(["submit", "--prompt", "not streamed", "--id", "plain"], spool: s.path).status == 0)
            let msgs = try Self.stream(mock, "s1")
            #expect(WorkerProcessTests.waitUntil(30) { s.names("done") == ["plain.json", "s1.json"] })
            let response = try s.json("done", "s1.json")["response"]?.stringValue
            #expect(response == prompt)
            let types = msgs.map(\.type)
            #expect(types.last == "done", "\(types)")
            #expect(types.dropLast().allSatisfy { $0 == "delta" }, "\(types)")
            #expect(types.count >= 3, "the answer came in one piece: \(types)")
            let offsets = msgs.compactMap(\.offset)
            #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count, "\(offsets)")
            #expect(msgs.filter { $0.type == "delta" }.map { $0.doc["text"]?.stringValue ?? "" }.joined() == prompt)
            #expect(msgs.last?.doc["textBytes"]?.intValue == prompt.utf8.count)
            #expect(msgs.allSatisfy { $0.doc["jobId"]?.stringValue == "s1" })
            #expect(msgs.first?.headers.contains("jobId=s1") == true && msgs.first?.headers.contains("userId=alice") == true, "\(msgs.first?.headers ?? "")")
            #expect(try Self.messages(mock).allSatisfy { $0.key == "s1" }, "a job that did not ask for streaming has messages")
            #expect(b.stop() == 0)
            #expect(b.log.contains("deltas=\(msgs.count)"), "\(b.log.suffix(2000))")
        }
    }

    @Test("the worker kill -9'd mid-stream: the topic carries a restart, and the text after the last restart is the result")
    func workerKilled() throws {
        try Self.withBridge { s, mock, b in
            let prompt = Self.words(20, "k")
            let (w1, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=6000ms"])
            #expect(try CLI.run(["submit", "--prompt", prompt, "--stream", "--id", "s2"], spool: s.path).status == 0)
            let partial = s.path + "/cur/" + Partial.fileName("s2")
            #expect(WorkerProcessTests.waitUntil(20) { ((try? String(contentsOfFile: partial, encoding: .utf8))?.split(separator: "\n").count ?? 0) >= 3 })
            kill(w1.processIdentifier, SIGKILL)
            w1.waitUntilExit()
            let (w2, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=1000ms"])
            defer { kill(w2.processIdentifier, SIGTERM); w2.waitUntilExit() }
            let msgs = try Self.stream(mock, "s2")
            let types = msgs.map(\.type)
            #expect(types.last == "done", "\(types)")
            let restart = try #require(types.lastIndex(of: "restart"), "no restart: \(types)")
            #expect(restart > 0, "the first attempt's deltas came before the restart")
            #expect(msgs[restart].doc["attempt"]?.intValue ?? 0 >= 2, "\(msgs[restart].doc)")
            let after = msgs[(restart + 1)...].filter { $0.type == "delta" }.map { $0.doc["text"]?.stringValue ?? "" }.joined()
            #expect(after == prompt)
            #expect(try s.json("done", "s2.json")["response"]?.stringValue == prompt)
            #expect(Self.consume(msgs) == prompt)
            let offsets = msgs.compactMap(\.offset)
            #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count, "\(offsets)")
        }
    }

    @Test(
        "the bridge kill -9'd mid-stream and started again: it sends the running job's deltas again from its start, a consumer that drops passed offsets has the result; a job that ended while it was down gets nothing"
    )
    func bridgeRestarted() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["deltas:3"])
        defer { mock.stop() }
        let first = try Self.bridge(s, mock, log: "first.log")
        let prompt = Self.words(40, "r")
        let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=12000ms"])
        defer { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() }
        #expect(try CLI.run(["submit", "--prompt", prompt, "--stream", "--id", "s3"], spool: s.path).status == 0)
        #expect(try WorkerProcessTests.waitUntil(30) { try Self.messages(mock).filter { $0.key == "s3" }.count >= 3 })
        first.kill9()
        // A job whose result is durable while its partial file is still there (its worker died
        // before removing it): its answer goes through results-out, not here.
        try s.write("cur", Partial.fileName("late"), Array("\"abc\"\n".utf8))
        try s.write("done", "late.json", Array(#"{"jobId":"late","status":"done","response":"abc","job":{"prompt":"abc","stream":true}}"#.utf8))
        let second = try Self.bridge(s, mock, log: "second.log")
        defer { second.stop() }
        let msgs = try Self.stream(mock, "s3")
        #expect(msgs.last?.type == "done")
        let offsets = msgs.compactMap(\.offset)
        #expect(Set(offsets).count < offsets.count, "nothing was sent again: \(offsets)")
        #expect(Self.consume(msgs) == prompt)
        #expect(try s.json("done", "s3.json")["response"]?.stringValue == prompt)
        usleep(500_000)
        #expect(try Self.messages(mock).allSatisfy { $0.key == "s3" }, "a job that ended while the bridge was down has messages")
        #expect(second.stop() == 0)
    }

    @Test("a hostile partial file (an invalid line, a line of 20 MiB, one of 1.5 MiB, a half line) neither stops the bridge nor holds up a real stream")
    func hostile() throws {
        try Self.withBridge { s, mock, b in
            let long = String(repeating: "y", count: 1_500_000)
            var bytes = Array("\"ok\"\nnot json\n\"".utf8) + [UInt8](repeating: 0x7A, count: 20 << 20) + Array("\"\n\"after\"\n".utf8)
            bytes += JSONValue.string(long).serialized() + [0x0A] + Array("\"hal".utf8)
            let fd = open(s.path + "/cur/" + Partial.fileName("evil"), O_WRONLY | O_CREAT | O_EXCL, 0o640)
            #expect(fd >= 0)
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            #expect(n == bytes.count)
            // A real stream at the same time.
            let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo?delay=1000ms"])
            defer { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() }
            let prompt = Self.words(10, "h")
            #expect(try CLI.run(["submit", "--prompt", prompt, "--stream", "--id", "s5"], spool: s.path).status == 0)
            let real = try Self.stream(mock, "s5")
            #expect(real.last?.type == "done")
            #expect(Self.consume(real) == prompt)
            // The hostile file's readable text is out; then its "result" ends it.
            var evil: [Message] = []
            #expect(
                try WorkerProcessTests.waitUntil(60) {
                    evil = try Self.messages(mock).filter { $0.key == "evil" }
                    return Self.consume(evil).hasSuffix(long)
                }, "\(b.log.suffix(3000))")
            try s.write("done", "evil.json", Array(#"{"jobId":"evil","status":"done","response":"whatever"}"#.utf8))
            evil = try Self.stream(mock, "evil")
            #expect(Self.consume(evil) == "okafter" + long)
            #expect(evil.filter { $0.type == "delta" }.allSatisfy { ($0.doc["text"]?.stringValue?.utf8.count ?? 0) <= 128 << 10 })
            #expect(evil.last?.type == "done")
            #expect(evil.last?.doc["textBytes"]?.intValue == 7 + long.utf8.count)
            #expect(b.log.contains("passed over"), "\(b.log.suffix(3000))")
            #expect(b.process.isRunning)
            #expect(b.stop() == 0)
        }
    }
}
