import Foundation
import Spool
import Submit
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

enum ServerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case lighttpd, nginx, apache
    var testDescription: String { rawValue }
    var available: Bool {
        switch self {
        case .lighttpd: Bin.which("lighttpd") != nil
        case .nginx: Bin.which("nginx") != nil && Bin.which("fcgiwrap") != nil
        case .apache: Bin.which("apache2") != nil && FileManager.default.fileExists(atPath: Apache.modules + "/mod_cgid.so")
        }
    }
}

enum Apache {
    static let modules = "/usr/lib/apache2/modules"
    /// The user Apache's children (and so the CGI program) run as when it is started as root:
    /// Apache refuses to serve as root.
    static let user = "www-data"
}

/// Token file lines for the tests: alice and bob of tenant acme, carol of tenant other.
let testTokens: [(token: String, user: String, tenant: String)] = [
    ("alice-secret-token", "alice", "acme"), ("bob-secret-token", "bob", "acme"), ("carol-secret-token", "carol", "other"),
]

func bearer(_ user: String) -> [String: String] {
    ["Authorization": "Bearer " + testTokens.first { $0.user == user }!.token]
}

/// lighttpd, nginx + fcgiwrap, or Apache with mod_cgid, on 127.0.0.1 and a free port, serving
/// contrib/'s config with llmspool-cgi on a fresh spool, all in a temporary directory, as the
/// current user (Apache started as root runs the program as www-data: see `Apache.user`).
final class Server: @unchecked Sendable {
    let kind: ServerKind
    let dir: TempDir
    let spool: String
    private(set) var port = 0
    private var processes: [Background] = []
    private var worker: Background?

    var base: String { "http://127.0.0.1:\(port)" }

    init(_ kind: ServerKind, spool spoolPath: String? = nil) throws {
        self.kind = kind
        dir = try TempDir("server-\(kind.rawValue)")
        spool = spoolPath ?? dir.file("spool")
        if spoolPath == nil { try Spool.create(at: spool) }
        let tokens = testTokens.map { "sha256:\(SHA256.hex(Array($0.token.utf8))) \($0.user) \($0.tenant)" }.joined(separator: "\n")
        try ("# test tokens\n" + tokens + "\n").write(toFile: dir.file("tokens"), atomically: true, encoding: .utf8)
        var lastError: (any Error)?
        for _ in 0..<3 {  // a free port can be taken between the probe and the bind: try another
            port = try freeLoopbackPort()
            do {
                try start()
                return
            } catch {
                lastError = error
                stop()
            }
        }
        throw lastError!
    }

    private func start() throws {
        let user = String(cString: getpwuid(geteuid())!.pointee.pw_name)
        switch kind {
        case .lighttpd:
            let conf = """
                server.document-root = "\(dir.path)"
                server.bind = "127.0.0.1"
                server.port = \(port)
                server.errorlog = "\(dir.file("error.log"))"
                server.max-keep-alive-requests = 0
                \(geteuid() == 0 ? "" : "")
                var.llmspool_cgi = "\(Bin.cgi)"
                var.llmspool_spool = "\(spool)"
                var.llmspool_tokens = "\(dir.file("tokens"))"
                include "\(Bin.repo)/contrib/lighttpd.conf"

                """
            try conf.write(toFile: dir.file("lighttpd.conf"), atomically: true, encoding: .utf8)
            processes.append(try Background(Bin.which("lighttpd")!, ["-D", "-f", dir.file("lighttpd.conf")], log: dir.file("lighttpd.out")))
        case .nginx:
            let socket = dir.file("fcgiwrap.sock")
            processes.append(try Background(Bin.which("fcgiwrap")!, ["-s", "unix:" + socket, "-c", "8"], log: dir.file("fcgiwrap.out")))
            guard eventually(5, { FileManager.default.fileExists(atPath: socket) }) else { throw ServerError("fcgiwrap did not start") }
            try FileManager.default.createDirectory(atPath: dir.file("temp"), withIntermediateDirectories: true)
            let conf = """
                \(geteuid() == 0 ? "user \(user);" : "")
                worker_processes 2;
                pid \(dir.file("nginx.pid"));
                error_log \(dir.file("error.log")) info;
                daemon off;
                events { worker_connections 512; }
                http {
                    access_log off;
                    client_body_temp_path \(dir.file("temp/body"));
                    fastcgi_temp_path \(dir.file("temp/fastcgi"));
                    proxy_temp_path \(dir.file("temp/proxy"));
                    uwsgi_temp_path \(dir.file("temp/uwsgi"));
                    scgi_temp_path \(dir.file("temp/scgi"));
                    upstream llmspool_fcgiwrap { server unix:\(socket); }
                    server {
                        listen 127.0.0.1:\(port);
                        set $llmspool_cgi \(Bin.cgi);
                        set $llmspool_spool \(spool);
                        set $llmspool_tokens \(dir.file("tokens"));
                        include \(Bin.repo)/contrib/nginx.conf;
                    }
                }

                """
            try conf.write(toFile: dir.file("nginx.conf"), atomically: true, encoding: .utf8)
            processes.append(
                try Background(
                    Bin.which("nginx")!, ["-p", dir.path, "-c", dir.file("nginx.conf"), "-e", dir.file("error.log")],
                    log: dir.file("nginx.out")))
        case .apache:
            // Started as root, Apache runs the program as Apache.user: give that user the program
            // (copied out of a build tree it may not be able to enter), the spool's group and the tokens.
            var cgi = Bin.cgi
            var runAs = ""
            if geteuid() == 0 {
                cgi = dir.file("llmspool-cgi")
                if !FileManager.default.fileExists(atPath: cgi) { try FileManager.default.copyItem(atPath: Bin.cgi, toPath: cgi) }
                guard let pw = getpwnam(Apache.user) else { throw ServerError("no user \(Apache.user) to run Apache's children as") }
                runAs = "User \(Apache.user)\nGroup #\(pw.pointee.pw_gid)"
                for path in [dir.path, spool] { _ = try run("/bin/chown", ["-R", ":\(pw.pointee.pw_gid)", path]) }
                _ = try run("/bin/chmod", ["g+rx", dir.path])
            }
            let m = Apache.modules
            let conf = """
                ServerRoot "\(dir.path)"
                LoadModule mpm_event_module \(m)/mod_mpm_event.so
                LoadModule authz_core_module \(m)/mod_authz_core.so
                LoadModule alias_module \(m)/mod_alias.so
                LoadModule cgid_module \(m)/mod_cgid.so
                LoadModule env_module \(m)/mod_env.so
                \(runAs)
                Listen 127.0.0.1:\(port)
                ServerName 127.0.0.1
                PidFile \(dir.file("apache.pid"))
                ErrorLog \(dir.file("error.log"))
                DefaultRuntimeDir \(dir.path)
                ScriptSock \(dir.file("cgid.sock"))
                Mutex file:\(dir.path) default
                DocumentRoot \(dir.path)
                MaxRequestWorkers 64
                ThreadsPerChild 16
                Define llmspool_cgi \(cgi)
                Define llmspool_spool \(spool)
                Define llmspool_tokens \(dir.file("tokens"))
                Include \(Bin.repo)/contrib/apache.conf

                """
            try conf.write(toFile: dir.file("apache.conf"), atomically: true, encoding: .utf8)
            processes.append(try Background(Bin.which("apache2")!, ["-f", dir.file("apache.conf"), "-DFOREGROUND"], log: dir.file("apache.out")))
        }
        // Up when the CGI itself answers (an unauthenticated GET /jobs: its 401), not just the
        // server: Apache's mod_cgid starts its CGI daemon beside the listener, and a request that
        // comes before the daemon is ready gets the server's own 500.
        guard eventually(10, { (try? HTTP.request("GET", base + "/jobs", maxTime: 2))?.status == 401 }) else {
            let log = (try? String(contentsOfFile: dir.file("error.log"), encoding: .utf8)) ?? ""
            throw ServerError("\(kind) did not start: \(log.suffix(2000))")
        }
    }

    /// Starts `llmspool worker --llm-url builtin:echo…` on the spool.
    func startWorker(delayMs: Int = 0) throws {
        let url = delayMs > 0 ? "builtin:echo?delay=\(delayMs)ms" : "builtin:echo"
        worker = try Background(Bin.llmspool, ["worker", "--spool", spool, "--llm-url", url], log: dir.file("worker.log"))
    }

    func stopWorker() { worker?.stop() }

    /// `kill -9` of the worker (no chance to give anything back).
    func killWorker() {
        guard let w = worker else { return }
        kill(-w.pid, SIGKILL)
        var status: Int32 = 0
        waitpid(w.pid, &status, 0)
    }

    func names(_ state: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: spool + "/" + state)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    func stop() {
        worker?.stop()
        for p in processes.reversed() { p.stop(grace: 0.5) }  // no state to keep: a server may be killed
        processes = []
    }

    func close() {
        stop()
        dir.remove()
    }

    func post(_ user: String?, _ body: String, type: String? = "text/plain", headers: [String: String] = [:]) throws -> HTTPResult {
        var h = user.map(bearer) ?? [:]
        if let type { h["Content-Type"] = type }
        for (k, v) in headers { h[k] = v }
        return try HTTP.request("POST", base + "/jobs", headers: h, body: Array(body.utf8))
    }

    func get(_ user: String?, _ path: String, headers: [String: String] = [:], maxTime: Double = 20) throws -> HTTPResult {
        var h = user.map(bearer) ?? [:]
        for (k, v) in headers { h[k] = v }
        return try HTTP.request("GET", base + path, headers: h, maxTime: maxTime)
    }
}

struct ServerError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
