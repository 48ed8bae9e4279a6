import Foundation
import JSON
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Streamed answers (`"stream": true`) through `GET /jobs/ID/events` under real lighttpd, nginx +
/// fcgiwrap and Apache, with the built-in echo writing word by word.
@Suite("Streaming under real web servers", .serialized)
struct StreamServerTests {
    static let kinds = ServerKind.allCases.filter(\.available)

    static func deltas(_ events: [SSEEvent]) -> String {
        events.filter { $0.name == "delta" }.map { (try? JSONParser.parse($0.data))?["text"]?.stringValue ?? "?" }.joined()
    }

    static func words(_ n: Int) -> String { (1...n).map { "word\($0)" }.joined(separator: " ") }

    func post(_ s: Server, _ prompt: String) throws -> String {
        let body = JSONValue.object(["prompt": .string(prompt), "stream": .bool(true)]).text
        return try #require(try s.post("alice", body, type: "application/json").json?["jobId"]?.stringValue)
    }

    @Test("delta events (id 2.OFFSET) word by word between running and done; their text is the result", arguments: kinds)
    func streamed(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let prompt = Self.words(6)
        let id = try post(s, prompt)
        nonisolated(unsafe) var stream: HTTPResult?
        let reader = Thread { stream = try? s.get("alice", "/jobs/\(id)/events", maxTime: 30) }
        reader.start()
        usleep(300_000)
        try s.startWorker(delayMs: 1200)
        #expect(eventually(30) { reader.isFinished })
        let events = parseEvents(try #require(stream).text)
        let names = events.map { $0.name ?? "" }
        #expect(names.first == "queued" && names.dropFirst().first == "running" && names.last == "done", "\(names)")
        #expect(names.filter { $0 == "delta" }.count == 6, "\(names)")
        #expect(!names.contains("restart"))
        let done = try JSONParser.parse(events.last?.data ?? "")
        #expect(done["response"]?.stringValue == prompt)
        #expect(Self.deltas(events) == prompt)
        let offsets = events.filter { $0.name == "delta" }.compactMap { $0.id.flatMap { $0.hasPrefix("2.") ? Int($0.dropFirst(2)) : nil } }
        #expect(offsets.count == 6 && offsets == offsets.sorted() && Set(offsets).count == 6, "\(events.map(\.id))")
        // Settled: the partial file is gone, the result stays.
        #expect(!FileManager.default.fileExists(atPath: s.spool + "/cur/" + Partial.fileName(id)))
        // Another owner still sees nothing.
        #expect(try s.get("bob", "/jobs/\(id)/events").status == 404)
    }

    @Test("a reader that comes after the answer is settled (its partial file removed) still gets it as deltas, then done", arguments: kinds)
    func late(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let prompt = Self.words(5)
        let id = try post(s, prompt)
        try s.startWorker(delayMs: 100)
        #expect(
            eventually(30) {
                FileManager.default.fileExists(atPath: s.spool + "/done/" + id + ".json")
                    && !FileManager.default.fileExists(atPath: s.spool + "/cur/" + Partial.fileName(id))
            })
        let events = parseEvents(try s.get("alice", "/jobs/\(id)/events", maxTime: 30).text)
        #expect(events.map { $0.name ?? "" } == ["delta", "done"], "\(events.map(\.name))")
        #expect(Self.deltas(events) == prompt)
    }

    @Test(
        "no inotify instance to spare (strace makes inotify_init1 fail with EMFILE): 503 events-unavailable, Retry-After, the log names the limit",
        .enabled(if: Bin.which("strace") != nil, "strace is not installed"))
    func noInotifyInstance() throws {
        let cgi = try DirectCGI("events-emfile")
        defer { cgi.dir.remove() }
        let id = try cgi.post(Array("hello".utf8), type: "text/plain")
        let r = try cgi.events(id, strace: ["-o", "/dev/null", "-e", "trace=inotify_init1", "-e", "inject=inotify_init1:error=EMFILE"])
        #expect(r.text.hasPrefix("Status: 503"), "\(r.text)")
        #expect(r.text.contains("urn:llmspool:problem:events-unavailable"), "\(r.text)")
        #expect(r.text.contains("Retry-After:"), "\(r.text)")
        #expect(r.stderr.contains("max_user_instances"), "\(r.stderr)")
    }

    @Test(
        "an event stream keeps one inotify instance: it leaves the directories for its job's own files by removing watches, never by opening another (strace)",
        .enabled(if: Bin.which("strace") != nil, "strace is not installed"))
    func oneInotifyInstance() throws {
        // Closing an inotify instance that had watches blocks for a kernel grace period (8–24 ms
        // here): a stream that narrowed by opening a second instance and closing the first stalled
        // that long before its first delta, and 200 streams starting together far longer.
        let cgi = try DirectCGI("events-inotify")
        defer { cgi.dir.remove() }
        let prompt = Self.words(6)
        let id = try cgi.post(Array(JSONValue.object(["prompt": .string(prompt), "stream": .bool(true)]).text.utf8), type: "application/json")
        let trace = cgi.dir.file("trace")
        let reader = cgi.eventsInBackground(id, strace: ["-o", trace, "-e", "trace=inotify_init1,inotify_add_watch,inotify_rm_watch"])
        usleep(300_000)
        let worker = try Background(
            Bin.llmspool, ["worker", "--spool", cgi.spool, "--llm-url", "builtin:echo?delay=1800ms"], log: cgi.dir.file("worker.log"))
        defer { worker.stop() }
        #expect(eventually(30) { reader.isFinished })
        let events = parseEvents(try #require(reader.output).text)
        #expect(events.last?.name == "done", "\(events.map(\.name))")
        #expect(Self.deltas(events) == prompt)
        let calls = ((try? String(contentsOfFile: trace, encoding: .utf8)) ?? "").split(separator: "\n")
        let count = { (name: String) in calls.filter { $0.contains(name + "(") }.count }
        #expect(count("inotify_init1") == 1, "\(calls)")
        // The four directories' watches removed once the job's file was watched; the partial file
        // watched; the job's file there followed into cur/.
        #expect(count("inotify_rm_watch") >= 4, "\(calls)")
        let added = calls.filter { $0.contains("inotify_add_watch(") }
        #expect(added.contains { $0.contains("/new/\(id).json") } && added.contains { $0.contains("/cur/\(id).json") }, "\(calls)")
        #expect(added.contains { $0.contains(Partial.fileName(id)) }, "\(calls)")
    }

    @Test(
        "an event stream waits on its own job's file: twenty other jobs claimed and finished meanwhile do not wake it (strace counts its polls)",
        .enabled(if: Bin.which("strace") != nil, "strace is not installed"))
    func ownJobOnly() throws {
        // Watching the spool's directories, every open stream woke for every other job's claim,
        // lease marker, partial file and result: N² wake-ups with N streams started together.
        let cgi = try DirectCGI("events-own")
        defer { cgi.dir.remove() }
        let id = try cgi.post(Array("hello".utf8), type: "text/plain")
        let trace = cgi.dir.file("trace")
        let reader = cgi.eventsInBackground(id, strace: ["-o", trace, "-e", "trace=poll,ppoll"])
        // The reader waits (its first poll) once it has found the job and watches its file.
        #expect(eventually(30) { ((try? String(contentsOfFile: trace, encoding: .utf8)) ?? "").contains("poll(") })
        let spool = try Spool(path: cgi.spool)
        for i in 0..<20 {
            let other = try spool.enqueue(Job(prompt: "other \(i)"))
            guard case .claimed(let claim) = try spool.claim(other + ".json") else { throw ServerError("could not claim \(other)") }
            try spool.finish(claim, answer: Answer(response: "r"))
        }
        guard case .claimed(let claim) = try spool.claim(id + ".json") else { throw ServerError("could not claim \(id)") }
        usleep(200_000)  // running, seen on its own
        try spool.finish(claim, answer: Answer(response: "the answer"))
        #expect(eventually(30) { reader.isFinished })
        let events = parseEvents(try #require(reader.output).text)
        #expect(events.map { $0.name ?? "" } == ["queued", "running", "done"], "\(events.map(\.name))")
        let polls = ((try? String(contentsOfFile: trace, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("poll(") }
        // Its own job's claim and settlement, and a look after each change of watches: a handful,
        // against one or more for each of the other jobs' 80-odd changes when it watched the directories.
        #expect(polls.count <= 10, "\(polls.count) polls: \(polls)")
    }

    @Test("a reader that disconnects mid-answer resumes with Last-Event-ID: no delta lost or repeated", arguments: kinds)
    func resume(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let prompt = Self.words(12)
        let id = try post(s, prompt)
        try s.startWorker(delayMs: 4800)  // 400 ms a word
        let partial = s.spool + "/cur/" + Partial.fileName(id)
        #expect(eventually(10) { ((try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? Int ?? 0) > 0 })
        // The first reader goes away after 1.5 s (curl's --max-time): mid-answer.
        let first = parseEvents(try s.get("alice", "/jobs/\(id)/events", maxTime: 1.5).text)
        let lastID = try #require(first.last(where: { $0.name == "delta" })?.id)
        #expect(!first.contains { $0.name == "done" })
        let rest = parseEvents(try s.get("alice", "/jobs/\(id)/events", headers: ["Last-Event-ID": lastID], maxTime: 30).text)
        #expect(rest.last?.name == "done", "\(rest.map(\.name))")
        #expect(!rest.contains { $0.name == "running" || $0.name == "queued" || $0.name == "restart" })
        #expect(Self.deltas(first) + Self.deltas(rest) == prompt, "\(Self.deltas(first)) | \(Self.deltas(rest))")
        // An id that is no record boundary starts over, and says so.
        let bogus = parseEvents(try s.get("alice", "/jobs/\(id)/events", headers: ["Last-Event-ID": "2.3"]).text)
        #expect(bogus.map(\.name).last == "done")
    }

    @Test("the worker kill -9'd mid-answer: the reader gets restart, then the answer once; done/ holds one result", arguments: kinds)
    func workerKilled(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let prompt = Self.words(10)
        let id = try post(s, prompt)
        nonisolated(unsafe) var stream: HTTPResult?
        let reader = Thread { stream = try? s.get("alice", "/jobs/\(id)/events", maxTime: 60) }
        reader.start()
        try s.startWorker(delayMs: 3000)  // 300 ms a word
        let partial = s.spool + "/cur/" + Partial.fileName(id)
        #expect(eventually(10) { ((try? String(contentsOfFile: partial, encoding: .utf8))?.split(separator: "\n").count ?? 0) >= 3 })
        s.killWorker()
        try s.startWorker(delayMs: 1000)
        #expect(eventually(60) { reader.isFinished })
        let events = parseEvents(try #require(stream).text)
        let names = events.map { $0.name ?? "" }
        #expect(names.last == "done", "\(names)")
        let restart = try #require(names.lastIndex(of: "restart"), "no restart event: \(names)")
        #expect(Self.deltas(Array(events[(restart + 1)...])) == prompt)
        #expect(Self.deltas(Array(events[..<restart])).count > 0)
        #expect(s.names("done") == [id + ".json"])
        let done = try JSONParser.parse(events.last?.data ?? "")
        #expect(done["response"]?.stringValue == prompt)
    }
}

/// The CGI program run directly, with no web server (to run it under strace), as alice on a spool
/// of its own.
struct DirectCGI {
    let dir: TempDir
    let spool: String
    let env: [String: String]

    init(_ name: String) throws {
        dir = try TempDir(name)
        spool = dir.file("spool")
        env = ["REMOTE_USER": "alice", "LLMSPOOL_SPOOL": spool, "SCRIPT_NAME": "", "GATEWAY_INTERFACE": "CGI/1.1"]
        #expect(try run(Bin.llmspool, ["init", spool]).status == 0)
    }

    /// POST /jobs with `body` as `type`: the new job's id.
    func post(_ body: [UInt8], type: String) throws -> String {
        let posted = try run(
            Bin.cgi,
            env: env.merging([
                "REQUEST_METHOD": "POST", "PATH_INFO": "/jobs", "CONTENT_TYPE": type, "CONTENT_LENGTH": String(body.count),
            ]) { $1 }, stdin: body)
        let answer = posted.text.components(separatedBy: "\r\n\r\n").last ?? ""
        return try #require(try JSONParser.parse(Array(answer.utf8))["jobId"]?.stringValue, "\(posted.text)")
    }

    /// GET /jobs/ID/events under `strace -f -qq` with `options`.
    func events(_ id: String, strace options: [String]) throws -> Output {
        let strace = try #require(Bin.which("strace"))
        return try run(strace, ["-f", "-qq"] + options + [Bin.cgi], env: env.merging(["REQUEST_METHOD": "GET", "PATH_INFO": "/jobs/\(id)/events"]) { $1 })
    }

    /// ``events(_:strace:)`` on a thread of its own, started.
    func eventsInBackground(_ id: String, strace options: [String]) -> Reader {
        let reader = Reader(), cgi = self
        let thread = Thread { reader.output = try? cgi.events(id, strace: options) }
        reader.thread = thread
        thread.start()
        return reader
    }

    /// A GET …/events running on a thread of its own.
    final class Reader: @unchecked Sendable {
        /// Set by the thread before it finishes: read it once ``isFinished``.
        fileprivate(set) var output: Output?
        fileprivate var thread: Thread?

        var isFinished: Bool { thread?.isFinished ?? true }
    }
}
