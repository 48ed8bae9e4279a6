import Foundation
import JSON
import Spool
import Testing

/// Hand-dropped files of every bad kind: each goes to failed/ with a reason and its exact bytes.
@Suite("Bad files dropped into new/")
struct BadInputTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var label: String
        var name: String
        var bytes: [UInt8]
        var kind: String
        var field: String?
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "invalid JSON", name: "a.json", bytes: Array("{prompt: 'x'}".utf8), kind: "invalid-json"),
        Case(label: "half-written JSON", name: "b.json", bytes: Array("{\"prompt\":\"hal".utf8), kind: "invalid-json"),
        Case(label: "binary", name: "c.bin", bytes: [0x7F, 0x45, 0x4C, 0x46, 0x00, 0xFF, 0xFE, 0x01], kind: "invalid-json"),
        Case(label: "empty", name: "d.json", bytes: [], kind: "invalid-json"),
        Case(label: "invalid UTF-8 in a string", name: "e.json", bytes: Array("{\"prompt\":\"".utf8) + [0xC3, 0x28] + Array("\"}".utf8), kind: "invalid-json"),
        Case(label: "not an object", name: "f.json", bytes: Array("[1,2]".utf8), kind: "invalid-job"),
        Case(label: "no prompt", name: "g.json", bytes: Array("{\"userId\":\"alice\"}".utf8), kind: "invalid-job", field: "prompt"),
        Case(label: "wrong type", name: "h.json", bytes: Array("{\"prompt\":\"x\",\"maxTokens\":\"many\"}".utf8), kind: "invalid-job", field: "maxTokens"),
        Case(
            label: "typo of a known field", name: "i.json", bytes: Array("{\"prompt\":\"x\",\"max_tokens\":5}".utf8), kind: "invalid-job", field: "max_tokens"),
        Case(label: "bad jobId", name: "j.json", bytes: Array("{\"prompt\":\"x\",\"jobId\":\"../../etc/passwd\"}".utf8), kind: "invalid-job", field: "jobId"),
        Case(label: "bad file name and no jobId", name: "bad name!.json", bytes: Array("{\"prompt\":\"x\"}".utf8), kind: "bad-id", field: "jobId"),
        Case(
            label: "huge file", name: "k.json", bytes: Array("{\"prompt\":\"".utf8) + [UInt8](repeating: 0x61, count: 1_200_000) + Array("\"}".utf8),
            kind: "too-large"),
        Case(label: "duplicate key", name: "l.json", bytes: Array("{\"prompt\":\"x\",\"prompt\":\"y\"}".utf8), kind: "invalid-json"),
    ]

    @Test("rejected to failed/ with its reason and exact bytes", arguments: cases)
    func rejected(_ c: Case) throws {
        let s = try TestSpool()
        defer { s.remove() }
        try s.write("new", c.name, c.bytes)
        try s.age("new", c.name)
        let r = try CLI.run(["debug-claim"], spool: s.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.isEmpty, "a bad file was claimed as a job")
        #expect(s.names("new").isEmpty && s.names("cur").isEmpty && s.names("done").isEmpty)
        let failed = s.names("failed")
        #expect(failed.count == 2, "\(failed)")
        guard let doc = failed.first(where: { $0.hasSuffix(".json") }) else { return }
        let key = Job.id(fromFileName: doc)
        let dead = try s.json("failed", doc)
        #expect(dead["status"]?.stringValue == "failed")
        #expect(dead["error"]?["kind"]?.stringValue == c.kind)
        if let field = c.field {
            #expect(dead["error"]?["message"]?.stringValue?.contains(field) == true, "\(dead.text)")
        }
        #expect(dead["original"]?["name"]?.stringValue == c.name)
        #expect(dead["original"]?["size"]?.intValue == c.bytes.count)
        #expect(try s.read("failed", key + ".original") == c.bytes, "the original bytes were not kept exactly")
        // `show` finds it by its key.
        let show = try CLI.run(["show", key, "--json"], spool: s.path)
        #expect(try JSONParser.parse(show.stdout)["state"]?.stringValue == "failed")
        // It cannot be requeued as it is.
        let rq = try CLI.run(["requeue", key], spool: s.path)
        #expect(rq.status == 65)
        #expect(rq.stderr.contains(".original"))
    }

    @Test("a file still being written is left in new/ until it settles")
    func halfWrittenFreshFileWaits() throws {
        let s = try TestSpool()
        defer { s.remove() }
        try s.write("new", "slow.json", Array("{\"prompt\":\"still wri".utf8))
        let r = try CLI.run(["debug-claim"], spool: s.path)
        #expect(r.status == 0 && r.stdout.isEmpty)
        #expect(s.names("new") == ["slow.json"])
        #expect(s.names("failed").isEmpty)
        // The writer finishes; the job is claimed normally.
        try s.write("new", "slow.json", Array("{\"prompt\":\"still writing, now done\"}".utf8))
        let r2 = try CLI.run(["debug-claim"], spool: s.path)
        #expect(r2.lines == ["slow"])
        #expect(s.names("done") == ["slow.json"])
    }

    @Test("an id that clashes with a finished job is dead-lettered; the result is untouched")
    func clashWithDone() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let id = try CLI.run(["submit", "--prompt", "first", "--id", "job-1"], spool: s.path)
        #expect(id.lines == ["job-1"])
        #expect(try CLI.run(["debug-claim"], spool: s.path).lines == ["job-1"])
        let result = try s.read("done", "job-1.json")
        try s.write("new", "other.json", Array("{\"prompt\":\"second\",\"jobId\":\"job-1\"}".utf8))
        #expect(try CLI.run(["debug-claim"], spool: s.path).stdout.isEmpty)
        #expect(try s.read("done", "job-1.json") == result)
        let failed = s.names("failed").filter { $0.hasSuffix(".json") }
        #expect(failed.count == 1)
        let dead = try s.json("failed", failed[0])
        #expect(dead["error"]?["kind"]?.stringValue == "id-clash")
        #expect(failed[0] != "job-1.json", "the clash must not take the finished job's id in failed/")
        // And submit refuses the id up front.
        let again = try CLI.run(["submit", "--prompt", "third", "--id", "job-1"], spool: s.path)
        #expect(again.status == 65)
        #expect(again.stderr.contains("job-1") && again.stderr.contains("done/"))
    }

    @Test("a dead letter under a new key is found by the name it was dropped under: show, list, requeue")
    func foundByDroppedName() throws {
        let s = try TestSpool()
        defer { s.remove() }
        _ = try CLI.run(["submit", "--prompt", "first", "--id", "clash"], spool: s.path)
        _ = try CLI.run(["debug-claim"], spool: s.path)
        try s.write("new", "clash2.json", Array("{\"prompt\":\"second\",\"jobId\":\"clash\"}".utf8))
        try s.write("new", "bad name!.json", Array("{\"prompt\":\"x\"}".utf8))
        try s.age("new", "clash2.json")
        try s.age("new", "bad name!.json")
        _ = try CLI.run(["debug-claim"], spool: s.path)
        let keys = s.names("failed").filter { $0.hasSuffix(".json") }.map { Job.id(fromFileName: $0) }
        #expect(keys.count == 2 && !keys.contains("clash") && !keys.contains("clash2"), "\(keys)")

        // show: by the name with or without .json, and it says the key.
        for name in ["clash2", "clash2.json"] {
            let shown = try CLI.run(["show", name, "--json"], spool: s.path)
            #expect(shown.status == 0, "\(shown.stderr)")
            let doc = try JSONParser.parse(shown.stdout)
            #expect(doc["state"]?.stringValue == "failed" && doc["droppedAs"]?.stringValue == name)
            #expect(keys.contains(doc["jobId"]?.stringValue ?? ""))
            #expect(doc["error"]?["kind"]?.stringValue == "id-clash")
        }
        let text = try CLI.run(["show", "bad name!"], spool: s.path)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.lines.first?.contains("dropped as bad name!") == true, "\(text.stdout)")
        #expect(keys.contains { text.lines.first?.contains($0) == true })
        let none = try CLI.run(["show", "clash3"], spool: s.path)
        #expect(none.status == 66 && none.stderr.contains("dropped as clash3"), "\(none.stderr)")

        // list: a fourth column with the dropped name.
        let failed = try CLI.run(["list", "--state", "failed"], spool: s.path).lines.map { $0.split(separator: "\t").map(String.init) }
        #expect(Set(failed.compactMap { $0.count == 4 ? $0[3] : nil }) == ["dropped as clash2.json", "dropped as bad name!.json"], "\(failed)")

        // requeue: by the dropped name; an id clash is not called an invalid job, and the key is named.
        let rq = try CLI.run(["requeue", "clash2"], spool: s.path)
        #expect(rq.status == 65)
        #expect(rq.stderr.contains("dropped as clash2") && keys.contains { rq.stderr.contains($0) }, "\(rq.stderr)")
        #expect(rq.stderr.contains("id was taken") && rq.stderr.contains("already exists in done/"), "\(rq.stderr)")
        #expect(!rq.stderr.contains("not a valid job"), "\(rq.stderr)")
        let all = try CLI.run(["requeue", "--failed"], spool: s.path)
        #expect(all.stderr.split(separator: "\n").contains { $0.contains("clash2.json") && $0.contains("id was taken") }, "\(all.stderr)")
        #expect(all.stderr.split(separator: "\n").contains { $0.contains("bad name!.json") && $0.contains("not a valid job") }, "\(all.stderr)")
    }

    @Test("dot-files are ignored; a valid file keeps its name as id, or takes its jobId")
    func namesAndIds() throws {
        let s = try TestSpool()
        defer { s.remove() }
        try s.write("new", ".hidden.json", Array("{\"prompt\":\"x\"}".utf8))
        try s.write("new", "by-name.json", Array("{\"prompt\":\"x\"}".utf8))
        try s.write("new", "whatever.txt", Array("{\"prompt\":\"y\",\"jobId\":\"by-field\"}".utf8))
        let show = try CLI.run(["show", "by-field", "--json"], spool: s.path)
        #expect(try JSONParser.parse(show.stdout)["state"]?.stringValue == "new")
        #expect(Set(try CLI.run(["debug-claim"], spool: s.path).lines) == ["by-name", "by-field"])
        #expect(s.names("done") == ["by-field.json", "by-name.json"])
        #expect(FileManager.default.fileExists(atPath: s.path + "/new/.hidden.json"))
    }
}
