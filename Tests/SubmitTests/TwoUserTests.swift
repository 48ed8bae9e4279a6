import Foundation
import JSON
import Spool
import Submit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The two-user layout with two real users (root only: it makes them with useradd): the web
/// server's user enqueues, cancels and reads through the CGI; the worker's user does the rest;
/// the web server's user cannot put anything into done/ or cur/.
@Suite("A two-user spool", .serialized)
struct TwoUserTests {
    static let group = "llmspool-t-web"  // the web server's group; the worker's user is in it too
    static let webUser = "llmspool-t-www"
    static let workerUser = "llmspool-t-work"

    /// Makes the group and users once (kept: CI machines are fresh, and a second run reuses them).
    static let ready: Bool = {
        guard geteuid() == 0, Bin.which("useradd") != nil, Bin.which("setpriv") != nil else { return false }
        _ = try? run("/usr/sbin/groupadd", ["-f", group])
        if getpwnam(webUser) == nil { _ = try? run("/usr/sbin/useradd", ["-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", webUser]) }
        if getpwnam(workerUser) == nil { _ = try? run("/usr/sbin/useradd", ["-M", "-U", "-G", group, "-s", "/usr/sbin/nologin", workerUser]) }
        return getpwnam(webUser) != nil && getpwnam(workerUser) != nil
    }()

    /// `setpriv` as `user` with its groups.
    static func asUser(_ user: String, _ program: String, _ args: [String], env: [String: String] = [:], stdin: [UInt8]? = nil) throws -> Output {
        try run(
            Bin.which("setpriv")!, ["--reuid", user, "--regid", String(getpwnam(user)!.pointee.pw_gid), "--init-groups", "--", program] + args,
            env: env, stdin: stdin)
    }

    @Test("init --worker-user --web-group: the web user enqueues, reads, cancels; cannot write done/ or cur/; the worker works")
    func twoUsers() throws {
        guard TwoUserTests.ready else { return }
        let dir = try TempDir("twouser")
        defer { dir.remove() }
        _ = try run("/bin/chmod", ["0755", dir.path])
        // Binaries where both users can run them (a build tree may sit in a private home).
        let cgi = dir.file("llmspool-cgi"), cli = dir.file("llmspool")
        try FileManager.default.copyItem(atPath: Bin.cgi, toPath: cgi)
        try FileManager.default.copyItem(atPath: Bin.llmspool, toPath: cli)
        let spool = dir.file("spool")

        // A worker user outside the group is refused, with the fix in the message.
        let outsider = try run(cli, ["init", spool, "--worker-user", TwoUserTests.webUser, "--web-group", "root"])
        #expect(outsider.status == 64, "\(outsider.stderr)")
        #expect(outsider.stderr.contains("usermod -aG root"))
        let made = try run(cli, ["init", spool, "--worker-user", TwoUserTests.workerUser, "--web-group", TwoUserTests.group])
        #expect(made.status == 0, "\(made.stderr)")
        var st = stat()
        for (sub, mode) in [
            ("", 0o2750), ("tmp", 0o3770), ("new", 0o2770), ("cur", 0o2750), ("done", 0o2750), ("failed", 0o2770),
            ("forwarded", 0o2750), (".leases", 0o2750), (".idempotency", 0o2770), (".waiting", 0o2770),
        ] {
            #expect(stat(spool + "/" + sub, &st) == 0)
            #expect(st.st_mode & 0o7777 == mode_t(mode), "\(sub): \(String(st.st_mode & 0o7777, radix: 8))")
            #expect(st.st_uid == getpwnam(TwoUserTests.workerUser)!.pointee.pw_uid)
        }

        let tokens = "sha256:\(SHA256.hex(Array("t".utf8))) alice acme\n"
        try tokens.write(toFile: dir.file("tokens"), atomically: true, encoding: .utf8)
        _ = try run("/bin/chmod", ["0644", dir.file("tokens")])
        func cgiRequest(_ method: String, _ path: String, body: String? = nil) throws -> (status: Int, json: JSONValue?) {
            var env = [
                "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "PATH_INFO": path, "LLMSPOOL_SPOOL": spool,
                "LLMSPOOL_TOKENS": dir.file("tokens"), "HTTP_AUTHORIZATION": "Bearer t",
            ]
            if let body { env["CONTENT_LENGTH"] = String(body.utf8.count); env["CONTENT_TYPE"] = "text/plain" }
            let out = try TwoUserTests.asUser(TwoUserTests.webUser, cgi, [], env: env, stdin: body.map { Array($0.utf8) } ?? [])
            let parts = out.text.components(separatedBy: "\r\n\r\n")
            let status = Int(parts[0].dropFirst("Status: ".count).prefix(3)) ?? 0
            return (status, parts.count > 1 ? try? JSONParser.parse(Array(parts[1].utf8)) : nil)
        }

        // The web user enqueues (with an Idempotency-Key record too) and cancels a waiting job.
        let keep = try cgiRequest("POST", "/jobs", body: "answer me")
        #expect(keep.status == 202)
        let keepID = try #require(keep.json?["jobId"]?.stringValue)
        let drop = try cgiRequest("POST", "/jobs", body: "cancel me")
        let dropID = try #require(drop.json?["jobId"]?.stringValue)
        let cancelled = try cgiRequest("DELETE", "/jobs/\(dropID)")
        #expect(cancelled.status == 200)
        #expect(cancelled.json?["status"]?.stringValue == "cancelled")

        // The web user cannot forge a result: no mv, no new file, no replacement in done/ or cur/.
        let forged = dir.file("forged.json")
        try #"{"jobId":"x","status":"done","response":"forged"}"#.write(toFile: forged, atomically: true, encoding: .utf8)
        _ = try run("/bin/chmod", ["0644", forged])
        for target in ["done", "cur"] {
            let cp = try TwoUserTests.asUser(TwoUserTests.webUser, "/bin/cp", [forged, spool + "/\(target)/\(keepID).json"])
            #expect(cp.status != 0 && cp.stderr.contains("Permission denied"), "cp into \(target)/: \(cp.stderr)")
            let mv = try TwoUserTests.asUser(TwoUserTests.webUser, "/bin/mv", [spool + "/new/\(keepID).json", spool + "/\(target)/\(keepID).json"])
            #expect(mv.status != 0 && mv.stderr.contains("Permission denied"), "mv into \(target)/: \(mv.stderr)")
        }
        #expect(FileManager.default.fileExists(atPath: spool + "/new/\(keepID).json"))

        // The worker's user answers; the result belongs to it, and the web user reads it.
        let worker = try Background(
            Bin.which("setpriv")!,
            [
                "--reuid", TwoUserTests.workerUser, "--regid", TwoUserTests.workerUser,
                "--init-groups", "--", cli, "worker", "--spool", spool, "--llm-url", "builtin:echo",
            ],
            log: dir.file("worker.log"))
        defer { worker.stop() }
        #expect(
            eventually(20) { FileManager.default.fileExists(atPath: spool + "/done/\(keepID).json") },
            "\((try? String(contentsOfFile: dir.file("worker.log"), encoding: .utf8)) ?? "")")
        #expect(stat(spool + "/done/\(keepID).json", &st) == 0 && st.st_uid == getpwnam(TwoUserTests.workerUser)!.pointee.pw_uid)
        let shown = try cgiRequest("GET", "/jobs/\(keepID)")
        #expect(shown.status == 200)
        #expect(shown.json?["response"]?.stringValue == "answer me")
        // A result in done/ cannot be replaced or removed by the web user either.
        let rm = try TwoUserTests.asUser(TwoUserTests.webUser, "/bin/rm", ["-f", spool + "/done/\(keepID).json"])
        #expect(rm.status != 0, "rm in done/: \(rm.stderr)")
        #expect(try cgiRequest("GET", "/jobs/\(dropID)").json?["status"]?.stringValue == "cancelled")
        #expect(try cgiRequest("GET", "/jobs").json?["jobs"]?.arrayValue?.count == 2)
    }

    @Test("a canceller that dies holding the job: recovery puts it back, or drops the hold if its dead letter is written")
    func cancelHoldRecovery() throws {
        let dir = try TempDir("cancelhold")
        defer { dir.remove() }
        let spool = try Spool.create(at: dir.file("spool"))
        // A hold as a crashed canceller leaves it: renamed, unlocked, no dead letter.
        try #"{"jobId":"held","prompt":"p"}"#.write(toFile: dir.file("spool/new/.cancel.1.2.held.json"), atomically: true, encoding: .utf8)
        var report = try spool.recover()
        #expect(report.givenBack == ["held.json"])
        #expect(try spool.names(in: .new) == ["held.json"])
        // Its dead letter was written before the crash: the hold goes, the dead letter stays.
        #expect(try spool.cancelWaiting("held.json", Failure(kind: "cancelled", message: "test")) == .cancelled)
        #expect(try spool.names(in: .new).isEmpty)
        try #"{"jobId":"held","prompt":"p"}"#.write(toFile: dir.file("spool/new/.cancel.1.3.held.json"), atomically: true, encoding: .utf8)
        report = try spool.recover()
        #expect(report.alreadySettled == ["held"])
        #expect(try spool.names(in: .new).isEmpty)
        #expect(try spool.names(in: .failed) == ["held.json"])
        #expect(try spool.cancelWaiting("held.json", Failure(kind: "cancelled", message: "again")) == .notWaiting)
    }
}
