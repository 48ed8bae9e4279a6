import Foundation
import JSON
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under the system temp dir.
struct TempDir {
    let path: String

    init(_ label: String = "submit") throws {
        let base = ProcessInfo.processInfo.environment["LLMSPOOL_TEST_TMP"] ?? NSTemporaryDirectory()
        path = (base as NSString).appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
}

/// The binaries SwiftPM built next to the test bundle.
enum Bin {
    static func find(_ name: String) -> String {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ".build/debug/" + name
    }

    static let llmspool = ProcessInfo.processInfo.environment["LLMSPOOL_BIN"] ?? find("llmspool")
    /// Built by `swift build`/`swift test` as a product of the package (not a test dependency:
    /// its -static-executable link flag must not reach the test bundle).
    static let cgi = ProcessInfo.processInfo.environment["LLMSPOOL_CGI_BIN"] ?? find("llmspool-cgi")
    static let repo: String = {
        var dir = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { dir = dir.deletingLastPathComponent() }
        return dir.path
    }()

    static func which(_ name: String) -> String? {
        for d in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"] {
            if FileManager.default.isExecutableFile(atPath: d + "/" + name) { return d + "/" + name }
        }
        return nil
    }
}

struct Output {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs a program to completion with the given environment and standard input.
func run(
    _ path: String, _ args: [String] = [], env: [String: String] = [:], stdin: [UInt8]? = nil,
    inheritEnvironment: Bool = true
) throws -> Output {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var e = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
    for (k, v) in env { e[k] = v }
    p.environment = e
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = stdin == nil ? FileHandle.nullDevice : inp
    try p.run()
    if let stdin {
        let h = inp.fileHandleForWriting
        let t = Thread {
            try? h.write(contentsOf: Data(stdin)); try? h.close()
        }
        t.start()
    }
    nonisolated(unsafe) var errData = Data()
    let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
    reader.start()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    while !reader.isFinished { usleep(1000) }
    return Output(status: p.terminationStatus, stdout: [UInt8](data), stderr: String(decoding: errData, as: UTF8.self))
}

/// Waits until `body` is true or `seconds` pass.
@discardableResult
func eventually(_ seconds: Double = 10, _ body: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(seconds)
    while Date() < end {
        if body() { return true }
        usleep(20_000)
    }
    return body()
}

/// One HTTP exchange, as curl saw it.
struct HTTPResult: CustomStringConvertible {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: JSONValue? { try? JSONParser.parse(body) }
    func header(_ name: String) -> String? { headers[name.lowercased()] }
    var description: String { "\(status) \(headers) \(text.prefix(600))" }
}

/// Real HTTP requests through curl (HTTP/1.1, no Expect: 100-continue).
enum HTTP {
    static func request(
        _ method: String, _ url: String, headers: [String: String] = [:], body: [UInt8]? = nil,
        maxTime: Double = 20
    ) throws -> HTTPResult {
        let dir = try TempDir("curl")
        defer { dir.remove() }
        // curl -X HEAD would wait for the body that Content-Length announces; --head does not
        // (and writes the headers where the body would go: no body is kept for HEAD).
        let head = method == "HEAD"
        var args =
            (head ? ["-sS", "--head"] : ["-sS", "-X", method]) + [
                "-o", head ? "/dev/null" : dir.file("body"), "-D", dir.file("headers"), "-w", "%{http_code}",
                "--max-time", String(maxTime), "-H", "Expect:",
            ]
        for (k, v) in headers { args += ["-H", "\(k): \(v)"] }
        if let body {
            try Data(body).write(to: URL(fileURLWithPath: dir.file("request")))
            args += ["--data-binary", "@" + dir.file("request")]
        }
        args.append(url)
        let out = try run("/usr/bin/curl", args)
        let status = Int(out.text.trimmingCharacters(in: .whitespaces)) ?? 0
        var parsed: [String: String] = [:]
        let rawHeaders = (try? String(contentsOfFile: dir.file("headers"), encoding: .utf8)) ?? ""
        for line in rawHeaders.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = (try? Data(contentsOf: URL(fileURLWithPath: dir.file("body")))).map { [UInt8]($0) } ?? []
        return HTTPResult(status: status, headers: parsed, body: body)
    }
}

/// A process started in the background in its own process group (posix_spawn, not Foundation's
/// Process: servers such as fcgiwrap leave children behind, and the whole group must go).
final class Background: @unchecked Sendable {
    let pid: pid_t
    private var exited = false

    init(_ path: String, _ args: [String], env: [String: String] = [:], log: String) throws {
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = e.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw ServerError("posix_spawn \(path): errno \(rc)") }
        pid = child
    }

    var isRunning: Bool {
        if exited { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { exited = true }
        return !exited
    }

    /// SIGTERM to the whole group, then SIGKILL after `grace` seconds.
    func stop(grace: Double = 5) {
        guard isRunning else { kill(-pid, SIGKILL); return }
        kill(-pid, SIGTERM)
        if !eventually(grace, { !isRunning }) {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            exited = true
        }
        kill(-pid, SIGKILL)  // stragglers of the group (fcgiwrap's preforked children)
    }
}
