import Foundation
import Spool
import Testing

/// `make install` / `make uninstall` into a DESTDIR, and `llmspool status --watch` on a pipe.
@Suite("install and watch")
struct InstallAndWatchTests {
    static let makePath = ["/usr/bin/make", "/bin/make", "/usr/local/bin/make"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    func make(_ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.makePath!)
        p.arguments = ["-s", "-C", Self.root] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// Regular files under `dir`, relative to it.
    func files(under dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var found: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { found.append(rel) }
        }
        return found.sorted()
    }

    func mode(_ path: String) throws -> Int {
        ((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? NSNumber)?.intValue ?? -1
    }

    @Test(
        "make install puts binaries, units, sysusers/tmpfiles and docs in DESTDIR; make uninstall removes them",
        .enabled(if: makePath != nil))
    func installAndUninstall() throws {
        let d = try TempDir("install")
        defer { d.remove() }
        let destdir = d.file("root")
        let binDir = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().path
        let common = ["DESTDIR=" + destdir, "PREFIX=/opt/llmspool"]
        let (status, output) = try make(["install", "SKIP_BUILD=1", "BIN_DIR=" + binDir] + common)
        #expect(status == 0, "make install: \(output)")

        let prefix = destdir + "/opt/llmspool"
        let installed = files(under: destdir)
        for f in [
            "bin/llmspool", "bin/llmspool-cgi", "lib/systemd/system/llmspool-worker.service",
            "lib/systemd/system/llmspool-worker@.service", "lib/systemd/system/llmspool-bridge.service",
            "share/doc/llmspool/bridge.md", "lib/sysusers.d/llmspool.conf",
            "lib/tmpfiles.d/llmspool.conf", "share/doc/llmspool/README.md", "share/doc/llmspool/worker.md",
            "share/doc/llmspool/contrib/nginx.conf", "share/doc/llmspool/contrib/lighttpd.conf",
            "share/doc/llmspool/contrib/llmspool.json", "share/doc/llmspool/configuration.md",
        ] {
            #expect(installed.contains("opt/llmspool/" + f), "missing \(f); installed: \(installed)")
        }
        #expect(try mode(prefix + "/bin/llmspool") == 0o755)
        #expect(try mode(prefix + "/bin/llmspool-cgi") == 0o755)
        #expect(try mode(prefix + "/lib/systemd/system/llmspool-worker.service") == 0o644)
        #expect(try mode(prefix + "/lib/sysusers.d/llmspool.conf") == 0o644)
        #expect(try mode(prefix + "/share/doc/llmspool/contrib/nginx.conf") == 0o644)
        // The installed binary is the built one.
        #expect(FileManager.default.contentsEqual(atPath: prefix + "/bin/llmspool", andPath: CLI.binary))

        // The units name the binary and docs under PREFIX, not /usr/local.
        for unit in ["llmspool-worker.service", "llmspool-worker@.service", "llmspool-bridge.service"] {
            let text = try String(contentsOfFile: prefix + "/lib/systemd/system/" + unit, encoding: .utf8)
            let exec = text.split(separator: "\n").filter { $0.hasPrefix("ExecStart=") }
            #expect(!exec.isEmpty)
            for line in exec { #expect(line.hasPrefix("ExecStart=/opt/llmspool/bin/llmspool "), "\(unit): \(line)") }
            #expect(text.contains("file:///opt/llmspool/share/doc/llmspool/"))
            #expect(!text.contains("/usr/local/"), "\(unit) still names /usr/local")
        }
        let nginx = try String(contentsOfFile: prefix + "/share/doc/llmspool/contrib/nginx.conf", encoding: .utf8)
        #expect(!nginx.contains("/usr/local/bin/"))

        let (ustatus, uoutput) = try make(["uninstall"] + common)
        #expect(ustatus == 0, "make uninstall: \(uoutput)")
        #expect(files(under: destdir) == [], "left behind after uninstall")
    }

    @Test("status --watch on a pipe prints plain lines, sees a job submitted meanwhile, and exits 0 on SIGTERM")
    func watchPlain() throws {
        let spool = try TestSpool()
        defer { spool.remove() }
        try CLI.run(["submit", "--prompt", "one", "--tenant", "acme"], spool: spool.path)

        let (p, out, err) = CLI.process(["status", "--watch", "--interval", "200ms"], spool: spool.path)
        try p.run()
        // Collect stdout as it comes.
        let lines = LockedLines()
        out.fileHandleForReading.readabilityHandler = { h in
            let data = h.availableData
            if !data.isEmpty { lines.append(data) }
        }
        defer { if p.isRunning { p.terminate() } }

        #expect(lines.wait(timeout: 5) { $0.contains { $0.contains(" new=1 ") } }, "first refresh: \(lines.all)")
        let submit = try CLI.run(["submit", "--prompt", "two", "--tenant", "beta"], spool: spool.path)
        #expect(submit.status == 0, "submit: \(submit.stderr)")
        #expect(
            lines.wait(timeout: 5) { $0.contains { $0.contains(" new=2 ") && $0.contains("beta:1") } },
            "a later refresh sees the second job: \(lines.all)")

        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        #expect(!p.isRunning, "still running 5 s after SIGTERM")
        out.fileHandleForReading.readabilityHandler = nil
        #expect(
            p.terminationReason == .exit && p.terminationStatus == 0,
            "exit: \(p.terminationReason == .exit ? "status" : "signal") \(p.terminationStatus); stderr: \(String(decoding: err.fileHandleForReading.availableData, as: UTF8.self))"
        )

        let all = lines.all
        #expect(!all.contains { $0.contains("\u{1B}") }, "escape codes on a pipe")
        let first = try #require(all.first)
        // 2026-11-26T13:00:00Z new=1 cur=0 done=0 failed=0 …
        #expect(first.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ new=1 cur=0 done=0 failed=0 "#, options: .regularExpression) != nil, "\(first)")
        #expect(first.contains("tenants=acme:1"), "\(first)")
        #expect(first.contains("done/s=-"), "\(first)")
        #expect(all.dropFirst().allSatisfy { $0.contains("done/s=0.0") && $0.contains("failed/s=0.0") }, "\(all)")
    }

    @Test("status --interval needs --watch, and a positive duration")
    func badInterval() throws {
        let spool = try TestSpool()
        defer { spool.remove() }
        #expect(try CLI.run(["status", "--interval", "1s"], spool: spool.path).status == 64)
        #expect(try CLI.run(["status", "--watch", "--interval", "0"], spool: spool.path).status == 64)
        #expect(try CLI.run(["status", "--watch", "--interval", "soon"], spool: spool.path).status == 64)
        #expect(try CLI.run(["status", "--watch", "--json"], spool: spool.path).status == 64)
    }
}

/// Lines of a child's stdout, appended from a reader thread and waited for from the test.
final class LockedLines: @unchecked Sendable {
    private let lock = NSCondition()
    private var buffer = Data()
    private var lines: [String] = []

    func append(_ data: Data) {
        lock.lock()
        buffer.append(data)
        while let nl = buffer.firstIndex(of: 0x0A) {
            lines.append(String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self))
            buffer.removeSubrange(buffer.startIndex...nl)
        }
        lock.broadcast()
        lock.unlock()
    }

    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    /// True once `done(lines)` holds, false after `timeout` seconds.
    func wait(timeout: TimeInterval, until done: ([String]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while !done(lines) {
            if !lock.wait(until: deadline) { return done(lines) }
        }
        return true
    }
}
