import Foundation
import JSON
import Spool
import Testing

/// Finds a program on PATH.
private func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}

/// librdkafka's mock cluster (Tests/peers/kafka_mock.c, compiled here) as a process:
/// 3 brokers, the given topics; it exits when its stdin closes.
final class KafkaMock {
    let process = Process()
    private let input = Pipe()
    let bootstrap: String

    init(in dir: TempDir, topics: [String]) throws {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../peers/kafka_mock.c").standardized.path
        let binary = dir.file("kafka_mock")
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: which("cc")!)
        cc.arguments = ["-O1", "-o", binary, source, "-lrdkafka"]
        try cc.run()
        cc.waitUntilExit()
        guard cc.terminationStatus == 0 else { throw KafkaMockError(message: "cc \(source) failed") }
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["3"] + topics
        process.standardInput = input
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        // The first line is the bootstrap list.
        var line = Data()
        while true {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        bootstrap = String(decoding: line, as: UTF8.self)
        guard !bootstrap.isEmpty else { throw KafkaMockError(message: "the mock cluster printed no bootstrap list") }
        output = out.fileHandleForReading
    }

    private let output: FileHandle

    /// Sends one command (`down ID`, `up ID`, `errors API N CODE`) and waits for its answer.
    func command(_ text: String) throws {
        input.fileHandleForWriting.write(Data((text + "\n").utf8))
        var line = Data()
        while true {
            let byte = output.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        let answer = String(decoding: line, as: UTF8.self)
        guard answer == "ok" else { throw KafkaMockError(message: "mock cluster: \(text): \(answer)") }
    }

    /// Produces `lines` (KEY<TAB>VALUE each) to `topic` with kcat, with a JSON contentType header.
    func produce(_ topic: String, _ lines: [(key: String, value: String)]) throws {
        let text = lines.map { "\($0.key)\t\($0.value)\n" }.joined()
        let r = try Self.kcat(["-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-H", "contentType=\"application/json\""], stdin: text)
        guard r.status == 0 else { throw KafkaMockError(message: "kcat -P to \(topic) failed") }
    }

    /// The keys of every message on `topic` (read to the end).
    func keys(_ topic: String) throws -> [String] {
        let r = try Self.kcat(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\n"], timeout: 30)
        return r.stdout.split(separator: "\n").map(String.init)
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// Runs kcat with `args` (and `stdin`), killed after `timeout` seconds; returns its stdout.
    static func kcat(_ args: [String], stdin: String? = nil, timeout: Double = 30) throws -> (status: Int32, stdout: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: which("kcat")!)
        p.arguments = args
        let out = Pipe(), inPipe = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = inPipe
        try p.run()
        if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? inPipe.fileHandleForWriting.close()
        // kcat -C may not exit on SIGTERM while it waits on the mock cluster: SIGKILL it 2 s later,
        // so that a message that never comes fails the test instead of hanging the suite.
        let killer = DispatchWorkItem {
            guard p.isRunning else { return }
            p.terminate()
            DispatchQueue.global().asyncAfter(deadline: .now() + 2) { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        killer.cancel()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

struct KafkaMockError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

@Suite(
    "Kafka bridge against librdkafka's mock cluster", .serialized,
    .enabled(if: which("kcat") != nil && which("cc") != nil, "needs kcat and cc (apt-get install kcat librdkafka-dev)"))
struct BridgeTests {
    static func startBridge(_ spool: String, _ args: [String]) throws -> (Process, Pipe) {
        let (p, _, err) = CLI.process(["bridge"] + args, spool: spool)
        try p.run()
        return (p, err)
    }

    static func stop(_ p: Process, _ err: Pipe) -> (status: Int32, log: String) {
        kill(p.processIdentifier, SIGTERM)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, log)
    }

    @Test(
        "a Spring JobEvent from kcat is enqueued, answered by the worker, and its JobResult is on the results topic; a poison message goes to the DLQ; a restart neither re-enqueues nor re-publishes"
    )
    func springRoundTrip() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["ai-jobs-out-0", "ai-results-out-0", "error.ai-jobs-out-0.llm"])
        defer { mock.stop() }
        let brokers = mock.bootstrap
        func produce(_ key: String, _ value: String) throws {
            let r = try KafkaMock.kcat(
                ["-P", "-b", brokers, "-t", "ai-jobs-out-0", "-H", "contentType=\"application/json\"", "-k", key],
                stdin: value + "\n")
            #expect(r.status == 0, "kcat -P failed")
        }
        try produce("job-1", #"{"jobId":"job-1","prompt":"hello kafka","userId":"alice"}"#)
        try produce("poison", "not json")

        let bridgeArgs = [
            "--brokers", brokers, "--group", "llm", "--jobs-in", "ai-jobs-out-0",
            "--results-out", "ai-results-out-0", "--log-level", "info",
            // The mock coordinator (librdkafka 2.0.2) holds a rebalance for the session timeout
            // even after a clean LeaveGroup: keep it short so the restart rejoins in seconds.
            "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
        ]
        let (w, _) = try WorkerProcessTests.startWorker(s.path, ["--llm-url", "builtin:echo"])
        defer { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() }
        let (b, bErr) = try Self.startBridge(s.path, bridgeArgs)

        let r = try KafkaMock.kcat(["-C", "-b", brokers, "-t", "ai-results-out-0", "-o", "beginning", "-c", "1", "-f", "%k\t%s\n"])
        // The poison message is in Spring's DLQ with its original bytes and x-original-* headers. Read
        // while the bridge still runs: the two messages have different keys, so they sit on different
        // partitions, and job-1's result may be out before the poison message is even consumed.
        let dlq = try KafkaMock.kcat(
            [
                "-C", "-b", brokers, "-t", "error.ai-jobs-out-0.llm", "-o", "beginning", "-c", "1",
                "-f", "%k|%s|%h\n",
            ], timeout: 15)
        let first = Self.stop(b, bErr)
        #expect(first.status == 0, "bridge exit status: \(first.log)")
        let parts = r.stdout.split(separator: "\t", maxSplits: 1).map(String.init)
        try #require(parts.count == 2, "no result on ai-results-out-0: \(r.stdout)\n\(first.log)")
        #expect(parts[0] == "job-1")
        let result = try JSONParser.parse(parts[1].trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(result["jobId"]?.stringValue == "job-1")
        #expect(result["response"]?.stringValue == "hello kafka")
        #expect(result["userId"]?.stringValue == "alice")
        #expect(first.log.contains("skipping an invalid message"), "the poison message was not reported")
        #expect(FileManager.default.fileExists(atPath: s.path + "/.published/job-1"))
        #expect(dlq.stdout.hasPrefix("poison|not json|"), "DLQ: \(dlq.stdout)")
        #expect(dlq.stdout.contains("x-original-topic=ai-jobs-out-0"), "DLQ: \(dlq.stdout)")
        #expect(dlq.stdout.contains("x-exception-message=invalid-json"), "DLQ: \(dlq.stdout)")

        // Restart: the committed offsets and .published/ mean nothing is enqueued or sent twice;
        // job-1 produced again is recognised as a duplicate; job-2 goes all the way round.
        try produce("job-1", #"{"jobId":"job-1","prompt":"hello kafka","userId":"alice"}"#)
        try produce("job-2", #"{"jobId":"job-2","prompt":"second","userId":"bob"}"#)
        let (b2, b2Err) = try Self.startBridge(s.path, bridgeArgs)
        let published = WorkerProcessTests.waitUntil(30) {
            FileManager.default.fileExists(atPath: s.path + "/.published/job-2")
        }
        let second = Self.stop(b2, b2Err)
        #expect(published, "job-2 was not published: \(second.log)")
        #expect(second.status == 0)
        for count in ["duplicates=1", "enqueued=1", "published=1", "skipped=0"] {
            #expect(second.log.contains(count), "\(count): \(second.log)")
        }

        let all = try KafkaMock.kcat(["-C", "-b", brokers, "-t", "ai-results-out-0", "-o", "beginning", "-e", "-f", "%k\n"], timeout: 20)
        #expect(all.stdout.split(separator: "\n").sorted() == ["job-1", "job-2"], "results topic: \(all.stdout)")
    }
}
