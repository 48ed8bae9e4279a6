import Foundation
import JSON
import Spool
import Testing

/// Failing system calls and a full disk: an error is never reported as success, and nothing
/// partial is left in new/.
@Suite("Injected faults", .serialized)
struct FaultTests {
    static let strace: String? = ["/usr/bin/strace", "/bin/strace"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let isRoot = getuid() == 0

    func traced(_ inject: String, _ args: [String], spool: String) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FaultTests.strace!)
        p.arguments = ["-f", "-qq", "-o", "/dev/null", "-e", "inject=\(inject)", CLI.binary] + args
        p.environment = ["LLMSPOOL_SPOOL": spool]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    @Test("a failed fsync is reported (exit 74), and no id is printed", .enabled(if: strace != nil))
    func fsyncFails() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let r = try traced("fsync:error=EIO", ["submit", "--prompt", "x"], spool: s.path)
        #expect(r.status == 74, "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("fsync"))
        #expect(s.names("new").isEmpty)
        #expect(s.names("tmp").isEmpty, "the temporary file was left behind")
    }

    @Test("a failed rename is reported, and the job is not in new/", .enabled(if: strace != nil))
    func renameFails() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let r = try traced("renameat2:error=EIO", ["submit", "--prompt", "x"], spool: s.path)
        #expect(r.status == 74, "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("renameat2"))
        #expect(s.names("new").isEmpty)
    }

    @Test("a failed syncfs of a batch is reported (exit 74): no id printed, nothing in new/ or tmp/", .enabled(if: strace != nil))
    func batchSyncfsFails() throws {
        let s = try TestSpool()
        defer { s.remove() }
        var files: [String] = []
        for k in 0..<3 {
            let f = s.dir.file("b\(k).json")
            try Data("{\"prompt\":\"batch \(k)\"}".utf8).write(to: URL(fileURLWithPath: f))
            files.append(f)
        }
        let r = try traced("syncfs:error=EIO", ["submit"] + files, spool: s.path)
        #expect(r.status == 74, "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.contains("syncfs"))
        #expect(s.names("new").isEmpty && s.names("tmp").isEmpty)
    }

    @Test("a failed fsync of done/ does not retire the claim: the job stays recoverable", .enabled(if: strace != nil))
    func finishFsyncFails() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let id = try Spool(path: s.path).enqueue(Job(prompt: "x"))
        // The 2nd fsync is the one of done/ (the 1st is the result file's).
        let r = try traced("fsync:error=EIO:when=2", ["debug-claim"], spool: s.path)
        #expect(r.status == 74, "\(r.stderr)")
        #expect(s.names("cur") == [id + ".json"], "the claim must stay in cur/ until done/ is durable")
        // The result did land (only its durability is unknown): recovery keeps the result once.
        let rec = try JSONParser.parse(try CLI.run(["recover", "--json"], spool: s.path).stdout)
        #expect(rec["alreadySettled"]?.arrayValue?.count == 1)
        #expect(s.names("done") == [id + ".json"] && s.names("cur").isEmpty && s.names("new").isEmpty)
    }

    @Test("disk full: exit 75, nothing partial in new/", .enabled(if: isRoot))
    func diskFull() throws {
        let d = try TempDir("full")
        defer { _ = try? CLI.shell("umount \(d.path)/mnt"); d.remove() }
        try FileManager.default.createDirectory(atPath: d.file("mnt"), withIntermediateDirectories: true)
        guard try CLI.shell("mount -t tmpfs -o size=256k tmpfs \(d.path)/mnt") == 0 else {
            Issue.record("could not mount a tmpfs (needs root)")
            return
        }
        let spool = d.file("mnt/spool")
        #expect(try CLI.run(["init", spool], spool: nil).status == 0)
        let big = String(repeating: "x", count: 100_000)
        var results: [Int32] = []
        for _ in 0..<6 { results.append(try CLI.run(["submit", "--prompt", big], spool: spool).status) }
        #expect(results.contains(75), "\(results)")
        #expect(results.allSatisfy { $0 == 0 || $0 == 75 })
        let names = try FileManager.default.contentsOfDirectory(atPath: spool + "/new")
        #expect(names.count == results.filter { $0 == 0 }.count)
        for name in names {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: spool + "/new/" + name)))
            #expect((try? Job.decode(bytes)) != nil, "a partial job is in new/")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: spool + "/tmp").isEmpty)
    }
}

extension CLI {
    static func shell(_ command: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}
