import Foundation
import JSON
import Spool
import Testing

@Suite("Commands, documents and exit codes")
struct CommandTests {
    @Test("a full job document round-trips through submit, show and a result")
    func roundTrip() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let doc = """
            {"jobId":"rt-1","prompt":"Summarise: ünïcödé ✓ \\"quoted\\"\\n","userId":"alice","tenantId":"acme",
             "model":"gpt-4o-mini","maxTokens":512,"temperature":0.2,
             "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],
             "metadata":{"any":["json",1,true,null]},"submittedAt":"2026-11-26T10:00:00Z","traceId":"abc"}
            """
        let r = try CLI.run(["submit", "-"], spool: s.path, stdin: Data(doc.utf8))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines == ["rt-1"])
        let input = try JSONParser.parse(doc)
        let stored = try s.json("new", "rt-1.json")
        #expect(Set(stored.objectValue!.keys) == Set(input.objectValue!.keys))
        for key in input.objectValue!.keys { #expect(stored[key] == input[key], "field \(key)") }
        let shown = try JSONParser.parse(try CLI.run(["show", "rt-1", "--json"], spool: s.path).stdout)
        #expect(shown["state"]?.stringValue == "new")
        #expect(shown["document"] == stored)

        #expect(try CLI.run(["debug-claim"], spool: s.path).lines == ["rt-1"])
        let done = try JSONParser.parse(try CLI.run(["show", "rt-1", "--json"], spool: s.path).stdout)
        #expect(done["state"]?.stringValue == "done")
        #expect(done["response"]?.stringValue == "[echo] " + (input["prompt"]?.stringValue ?? ""))
        let result = done["document"]
        #expect(result?["job"] == stored)
        #expect(result?["userId"]?.stringValue == "alice" && result?["tenantId"]?.stringValue == "acme")
        #expect(result?["attempts"]?.intValue == 1)
        for key in ["submittedAt", "startedAt", "finishedAt"] {
            #expect(result?[key]?.stringValue.flatMap(Timestamp.parse) != nil, "\(key)")
        }
    }

    @Test("exit codes follow sysexits, with the field or path at fault on stderr")
    func exitCodes() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let bad = try CLI.run(["submit", "-"], spool: s.path, stdin: Data("{\"prompt\":\"x\",\"temperature\":7}".utf8))
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("temperature"))
        #expect(s.names("new").isEmpty && s.names("tmp").isEmpty)

        let usage = try CLI.run(["submit", "--no-such-flag"], spool: s.path)
        #expect(usage.status == 64)
        #expect(try CLI.run(["show", "a/b"], spool: s.path).status == 64)
        #expect(try CLI.run(["purge", "--done", "--older-than", "soon"], spool: s.path).status == 64)

        let missing = try CLI.run(["show", "nope"], spool: s.path)
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("nope"))
        let notSpool = try CLI.run(["status", "--spool", s.dir.file("absent")], spool: nil)
        #expect(notSpool.status == 66)
        #expect(notSpool.stderr.contains("absent") && notSpool.stderr.contains("llmspool init"))
        let noFile = try CLI.run(["submit", s.dir.file("no-such.json")], spool: s.path)
        #expect(noFile.status == 66)
        #expect(noFile.stderr.contains("no-such.json"))

        // One bad file among good ones: nothing is enqueued.
        let good = s.dir.file("good.json"), worse = s.dir.file("worse.json")
        try Data("{\"prompt\":\"ok\"}".utf8).write(to: URL(fileURLWithPath: good))
        try Data("{\"prompt\":3}".utf8).write(to: URL(fileURLWithPath: worse))
        let mixed = try CLI.run(["submit", good, worse], spool: s.path)
        #expect(mixed.status == 65)
        #expect(mixed.stdout.isEmpty)
        #expect(mixed.stderr.contains("worse.json") && mixed.stderr.contains("prompt"))
        #expect(s.names("new").isEmpty)
    }

    @Test("messages: one error style, a field named once; init's I/O failure is 74; status says what its age counts")
    func messages() throws {
        let s = try TestSpool()
        defer { s.remove() }
        // Errors of argument parsing and validate() look like every other error.
        for args in [["list", "--state", "tmp"], ["submit", "--no-such-flag"], ["status", "--interval", "1s"]] {
            let r = try CLI.run(args, spool: s.path)
            #expect(r.status == 64)
            #expect(r.stderr.hasPrefix("llmspool: error: ") && !r.stderr.contains("Error:"), "\(args): \(r.stderr)")
            #expect(r.stderr.contains("Usage: llmspool"), "the usage still follows")
        }
        #expect(try CLI.run(["list", "--state", "tmp"], spool: s.path).stderr.contains("status counts tmp/"))
        #expect(!(try CLI.run(["list", "--help"], spool: s.path).stdout.contains("tmp,")), "--help offers a state it refuses")

        // The field at fault is named once.
        let file = s.dir.file("b3.json")
        try Data("{\"prompt\":\"x\",\"max_tokens\":3}".utf8).write(to: URL(fileURLWithPath: file))
        let typo = try CLI.run(["submit", file], spool: s.path)
        #expect(typo.status == 65)
        #expect(typo.stderr == "llmspool: error: \(file): max_tokens: unknown field; did you mean \"maxTokens\"?\n")
        let wrong = try CLI.run(["submit", "-"], spool: s.path, stdin: Data("{\"prompt\":\"x\",\"maxTokens\":\"x\"}".utf8))
        #expect(wrong.stderr.components(separatedBy: "maxTokens").count == 2, "\(wrong.stderr)")

        // init: a path that cannot be made (under a dangling symlink) is an I/O failure, 74.
        try FileManager.default.createSymbolicLink(atPath: s.dir.file("link"), withDestinationPath: s.dir.file("nowhere/deeper"))
        let initFailed = try CLI.run(["init", s.dir.file("link/spool")], spool: nil)
        #expect(initFailed.status == 74, "\(initFailed.stderr)")
        #expect(initFailed.stderr.contains("mkdir") && initFailed.stderr.contains("link/spool"))

        // status: the age counts from when the job was (last) queued, and says so.
        let id = try CLI.run(["submit", "--prompt", "x"], spool: s.path).lines[0]
        try s.age("new", id + ".json", seconds: 95)
        let text = try CLI.run(["status"], spool: s.path)
        #expect(text.lines.contains { $0.hasPrefix("new") && $0.contains("oldest queued 1m3") && $0.hasSuffix(" ago") }, "\(text.stdout)")

        // Jobs out on Kafka (forwarded/): counted, with the oldest one's age.
        try s.write("forwarded", "out-1.json", Array(#"{"jobId":"out-1","prompt":"x"}"#.utf8))
        try s.age("forwarded", "out-1.json", seconds: 125)
        let st = try JSONParser.parse(try CLI.run(["status", "--json"], spool: s.path).stdout)
        #expect(st["forwarded"]?.intValue == 1 && (st["oldestForwardedSeconds"]?.doubleValue ?? 0) >= 125, "\(st)")
        let again = try CLI.run(["status"], spool: s.path)
        #expect(again.lines.contains { $0.hasPrefix("forwarded") && $0.contains("oldest queued 2m") }, "\(again.stdout)")
    }

    @Test("LLMSPOOL_SPOOL and --spool select the spool; status counts each state")
    func statusAndList() throws {
        let s = try TestSpool()
        defer { s.remove() }
        for k in 0..<3 { _ = try CLI.run(["submit", "--prompt", "p\(k)", "--tenant", "acme"], spool: s.path) }
        #expect(try CLI.run(["debug-claim", "--max", "1"], spool: nil, stdinSpool: s.path).lines.count == 1)
        let st = try JSONParser.parse(try CLI.run(["status", "--json"], spool: s.path).stdout)
        #expect(st["new"]?.intValue == 2 && st["done"]?.intValue == 1 && st["cur"]?.intValue == 0)
        #expect(st["failed"]?.intValue == 0 && st["tmp"]?.intValue == 0)
        #expect((st["oldestWaitingSeconds"]?.doubleValue ?? -1) >= 0)
        let list = try CLI.run(["list"], spool: s.path).lines.map { $0.split(separator: "\t").map(String.init) }
        #expect(list.count == 3)
        #expect(list.map { $0[1] } == ["new", "new", "done"])
        #expect(try CLI.run(["list", "--state", "done"], spool: s.path).lines.count == 1)
        #expect(try CLI.run(["list", "--state", "tmp"], spool: s.path).status == 64)
    }

    @Test("requeue brings failed jobs back; purge removes old results")
    func requeueAndPurge() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let spool = try Spool(path: s.path)
        let id = try spool.enqueue(Job(prompt: "will fail"))
        guard case .claimed(let claim) = try spool.claim(id + ".json") else {
            Issue.record("not claimed")
            return
        }
        try spool.fail(claim, Failure(kind: "http", message: "400 Bad Request", httpStatus: 400))
        let dead = try s.json("failed", id + ".json")
        #expect(dead["error"]?["httpStatus"]?.intValue == 400)
        #expect(dead["job"]?["prompt"]?.stringValue == "will fail")

        let rq = try CLI.run(["requeue", "--failed"], spool: s.path)
        #expect(rq.lines == [id])
        #expect(s.names("failed").isEmpty)
        let back = try s.json("new", id + ".json")
        #expect(back["prompt"]?.stringValue == "will fail")
        #expect(back["history"]?.arrayValue?.contains { $0["kind"]?.stringValue == "failed" } == true)
        #expect(try CLI.run(["requeue", id], spool: s.path).status == 65)  // now in new/, not failed/

        _ = try CLI.run(["debug-claim"], spool: s.path)
        #expect(try CLI.run(["purge", "--done", "--older-than", "1h"], spool: s.path).lines == ["removed 0 results from done/ last changed more than 1h ago"])
        #expect(
            try CLI.run(["purge", "--done", "--failed", "--older-than", "0s"], spool: s.path).lines
                == ["removed 1 results from done/ and 0 dead letters from failed/ last changed more than 0s ago"])
        #expect(s.names("done").isEmpty)
    }
}

extension CLI {
    /// Runs with the spool given only through `--spool` (no environment variable).
    static func run(_ args: [String], spool: String?, stdinSpool path: String) throws -> Run {
        try run(args + ["--spool", path], spool: nil)
    }
}
