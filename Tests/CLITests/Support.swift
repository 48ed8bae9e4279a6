import Foundation
import JSON
import Spool
import Testing

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TempDir {
    let path: String

    init(_ label: String = "llmspool") throws {
        let base = ProcessInfo.processInfo.environment["LLMSPOOL_TEST_TMP"] ?? NSTemporaryDirectory()
        path = (base as NSString).appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
}

/// The result of running the CLI to completion.
struct Run {
    var status: Int32
    var stdout: String
    var stderr: String
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }
}

enum CLI {
    /// The `llmspool` binary SwiftPM built next to the test bundle (or `LLMSPOOL_BIN`).
    static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["LLMSPOOL_BIN"] { return b }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("llmspool").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ".build/debug/llmspool"
    }()

    static func process(_ args: [String], spool: String?, stdin: Data? = nil) -> (Process, Pipe, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        if let spool { env["LLMSPOOL_SPOOL"] = spool } else { env.removeValue(forKey: "LLMSPOOL_SPOOL") }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        if let stdin {
            let inPipe = Pipe()
            p.standardInput = inPipe
            try? p.run()
            inPipe.fileHandleForWriting.write(stdin)
            try? inPipe.fileHandleForWriting.close()
        } else {
            p.standardInput = FileHandle.nullDevice
        }
        return (p, out, err)
    }

    @discardableResult
    static func run(_ args: [String], spool: String?, stdin: Data? = nil) throws -> Run {
        let (p, out, err) = process(args, spool: spool, stdin: stdin)
        if stdin == nil { try p.run() }
        return collect(p, out, err)
    }

    /// Runs `llmspool ARGS` with exactly `environment`.
    static func run(_ args: [String], environment: [String: String], stdin: Data? = nil) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        }
        return collect(p, out, err)
    }

    private static func collect(_ p: Process, _ out: Pipe, _ err: Pipe) -> Run {
        // Read both pipes fully before waiting, so a chatty child cannot block on a full pipe.
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        return Run(
            status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// A spool in a temporary directory, created with `llmspool init`.
struct TestSpool {
    let dir: TempDir
    var path: String { dir.file("spool") }

    init() throws {
        dir = try TempDir()
        let r = try CLI.run(["init", dir.file("spool")], spool: nil)
        #expect(r.status == 0, "init failed: \(r.stderr)")
    }

    func names(_ state: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path + "/" + state)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    func write(_ state: String, _ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path + "/" + state + "/" + name))
    }

    func read(_ state: String, _ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + "/" + state + "/" + name)))
    }

    func json(_ state: String, _ name: String) throws -> JSONValue {
        try JSONParser.parse(try read(state, name))
    }

    /// Sets a file's modification time `seconds` into the past (past the settle window).
    func age(_ state: String, _ name: String, seconds: Double = 60) throws {
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -seconds)],
            ofItemAtPath: path + "/" + state + "/" + name)
    }

    func remove() { dir.remove() }
}

/// One HTTP/1.0 request to a test peer on 127.0.0.1 through a raw socket (no client library to
/// trust): its status and body. A body, when given, goes as `application/json`.
enum RawHTTP {
    static func request(port: Int, _ method: String, _ path: String, body: [UInt8]? = nil) throws -> (status: Int, body: [UInt8]) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { throw CocoaError(.fileReadUnknown) }
        var head = "\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        let bytes = Array((head + "\r\n").utf8) + (body ?? [])
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var response: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            response += buf[0..<n]
        }
        guard let split = response.indices.first(where: { response[$0...].starts(with: [13, 10, 13, 10]) }) else { throw CocoaError(.fileReadCorruptFile) }
        let status = String(decoding: response[..<split], as: UTF8.self).split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return (status, Array(response[(split + 4)...]))
    }
}
