import Foundation
import JSON
import Spool
import Testing

/// `submit FILE…` with many files: ArgumentParser's parse time grows with the square of the
/// operand count, so the command sets operands aside before parsing (LLMSpool.main).
@Suite("submit with many files")
struct OperandTests {
    /// Writes `n` job files named f00000.json… with prompts p0…, and returns their paths in order.
    static func files(_ n: Int, in dir: TempDir, from start: Int = 0) throws -> [String] {
        try (start..<(start + n)).map { i in
            let path = dir.file(String(format: "f%05d.json", i))
            try Data("{\"prompt\":\"p\(i)\"}".utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
    }

    @Test("3,000 files are all enqueued once, in order; options between files still apply")
    func manyFiles() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let dir = try TempDir("operands")
        defer { dir.remove() }
        let f = try Self.files(3000, in: dir)
        let args = ["submit", f[0], "--tenant", "acme", f[1]] + f[2..<1500] + ["--volatile"] + f[1500...]
        let r = try CLI.run(args, spool: s.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.count == 3000)
        #expect(Set(r.lines).count == 3000)
        let first = try s.json("new", r.lines[0] + ".json"), last = try s.json("new", r.lines[2999] + ".json")
        #expect(first["prompt"]?.stringValue == "p0" && last["prompt"]?.stringValue == "p2999")
        #expect(first["tenantId"]?.stringValue == "acme")
    }

    @Test("after --, every word is a file, even one that looks like an option")
    func doubleDash() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let dir = try TempDir("operands")
        defer { dir.remove() }
        let f = try Self.files(2, in: dir)
        let r = try CLI.run(["submit", "--", f[0], "--user", f[1]], spool: s.path)
        #expect(r.status == 66, "\(r.stdout)")
        #expect(r.stderr.contains("--user"))
        #expect(s.names("new").isEmpty)
    }

    @Test("a rule broken by the files set aside is still a usage error naming submit (64), and nothing is enqueued")
    func validationAfterSetAside() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let dir = try TempDir("operands")
        defer { dir.remove() }
        let f = try Self.files(3, in: dir)
        let r = try CLI.run(["submit", "--wait"] + f, spool: s.path)
        #expect(r.status == 64)
        #expect(r.stderr.hasPrefix("llmspool: error: --wait applies to a single job"))
        #expect(r.stderr.contains("Usage: llmspool submit"))
        let stdin = try CLI.run(["submit", "-", f[0], "-"], spool: s.path, stdin: Data("{}".utf8))
        #expect(stdin.status == 64 && stdin.stderr.contains("standard input (-) can be read only once"))
        #expect(s.names("new").isEmpty)
    }

    @Test("every option submit --help shows with a value is one the operand scan skips the value of")
    func valueOptionsMatchHelp() throws {
        let usage = try CLI.run(["submit", "--help"], spool: nil).stdout
        // `  --name <value>  help` in the OPTIONS list: an option that takes a value.
        var withValue: Set<String> = []
        for line in usage.split(separator: "\n") where line.hasPrefix("  -") {
            let words = line.split(separator: " ")
            for (w, next) in zip(words, words.dropFirst()) where w.hasPrefix("--") && next.hasPrefix("<") { withValue.insert(String(w)) }
        }
        #expect(!withValue.isEmpty)
        #expect(
            withValue == ["--spool", "--prompt", "--user", "--tenant", "--model", "--max-tokens", "--temperature", "--id", "--timeout"],
            "update Submit.valueOptions too")
    }

    @Test("parsing cost grows linearly: 8× the files takes well under 8² × the time")
    func linear() throws {
        let dir = try TempDir("operands")
        defer { dir.remove() }
        let small = try Self.files(1000, in: dir), large = small + (try Self.files(7000, in: dir, from: 1000))
        // An unknown spool: the files are parsed as arguments, then the command stops at once (66).
        func seconds(_ f: [String]) throws -> Double {
            let t = Date()
            let r = try CLI.run(["submit", "--spool", dir.file("none")] + f, spool: nil)
            #expect(r.status == 66, "\(r.stderr)")
            return Date().timeIntervalSince(t)
        }
        _ = try seconds(small)  // warm the page cache and the binary
        let a = try seconds(small), b = try seconds(large)
        print("submit parse+stop: 1000 files \(a) s, 8000 files \(b) s, ratio \(b / a)")
        #expect(b < max(a, 0.02) * 24, "8× the files took \(b / a)× the time")
    }
}
