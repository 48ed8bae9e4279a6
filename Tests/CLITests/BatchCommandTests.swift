import Foundation
import JSON
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `llmspool batch …` on a spool, with a worker answering (builtin:echo).
@Suite("llmspool batch")
struct BatchCommandTests {
    func line(_ id: String, _ prompt: String) -> String {
        #"{"custom_id":"\#(id)","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"\#(prompt)"}]}}"#
    }

    @Test("submit prints the id; status, results, list; a bad file exits 65 naming the line and enqueues nothing")
    func flow() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let input = s.dir.file("in.jsonl")
        try (0..<50).map { line("c\($0)", "p\($0)") }.joined(separator: "\n").write(toFile: input, atomically: true, encoding: .utf8)
        let submitted = try CLI.run(["batch", "submit", input, "--user", "alice", "--tenant", "acme"], spool: s.path)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = try #require(submitted.lines.first)
        #expect(id.hasPrefix("batch_"))
        #expect(s.names("new").count == 50)
        let early = try CLI.run(["batch", "results", id], spool: s.path)
        #expect(early.status == 75, "results before the batch ends: \(early.stderr)")

        let (w, _, _) = CLI.process(["worker", "--log-level", "error", "--llm-url", "builtin:echo"], spool: s.path)
        try w.run()
        defer { if w.isRunning { kill(w.processIdentifier, SIGTERM); w.waitUntilExit() } }
        var status = ""
        for _ in 0..<300 where !status.contains("completed") {
            status = try CLI.run(["batch", "status", id], spool: s.path).stdout
            usleep(100_000)
        }
        #expect(status.contains("completed") && status.contains("50/50 done, 0 failed"), "\(status)")
        let json = try JSONParser.parse(Array(try CLI.run(["batch", "status", id, "--json"], spool: s.path).stdout.utf8))
        #expect(json["object"]?.stringValue == "batch")
        #expect(json["request_counts"]?["completed"]?.intValue == 50)
        let results = try CLI.run(["batch", "results", id], spool: s.path)
        let lines = results.lines.compactMap { try? JSONParser.parse(Array($0.utf8)) }
        #expect(lines.count == 50)
        #expect(Set(lines.compactMap { $0["custom_id"]?.stringValue }) == Set((0..<50).map { "c\($0)" }))
        #expect(
            lines.first { $0["custom_id"]?.stringValue == "c7" }?["response"]?["body"]?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue
                == "p7")
        #expect(try CLI.run(["batch", "results", id, "--errors"], spool: s.path).stdout.isEmpty)
        #expect(try CLI.run(["batch", "list"], spool: s.path).stdout.contains(id))

        // A bad file: exit 65, each error names its line, nothing is enqueued.
        let bad = s.dir.file("bad.jsonl")
        try [line("a", "x"), "{oops", line("a", "y")].joined(separator: "\n").write(toFile: bad, atomically: true, encoding: .utf8)
        let before = s.names("new").count + s.names("cur").count + s.names("done").count
        let refused = try CLI.run(["batch", "submit", bad], spool: s.path)
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("bad.jsonl:2: invalid_json_line"), "\(refused.stderr)")
        #expect(refused.stderr.contains("bad.jsonl:3: duplicate_custom_id"), "\(refused.stderr)")
        #expect(s.names("new").count + s.names("cur").count + s.names("done").count == before)
        let missing = try CLI.run(["batch", "status", "batch_nope"], spool: s.path)
        #expect(missing.status == 66)
    }
}
