import Foundation
import Spool
import Testing

/// The units in systemd/ verify and meet the exposure target; the worker and the bridge speak sd_notify.
@Suite("systemd", .serialized)
struct SystemdTests {
    static let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let unitsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("systemd").path

    func run(_ args: [String], in dir: String) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.analyze!)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test(
        "each unit verifies cleanly and scores an exposure of 2.0 or less", .enabled(if: analyze != nil),
        arguments: ["llmspool-worker.service", "llmspool-worker@.service", "llmspool-bridge.service"])
    func unit(_ name: String) throws {
        let d = try TempDir("units")
        defer { d.remove() }
        // Verification needs ExecStart's binary to exist: point it at the one just built.
        let text = try String(contentsOfFile: Self.unitsDir + "/" + name, encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/llmspool", with: CLI.binary)
        let file = name.replacingOccurrences(of: "@.", with: "@test.")
        try text.write(toFile: d.file(file), atomically: true, encoding: .utf8)
        let (status, output) = try run(["verify", "./" + file], in: d.path)
        #expect(status == 0)
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "systemd-analyze verify said: \(output)")
        let (_, report) = try run(["security", "--offline=yes", "./" + file], in: d.path)
        let line = report.split(separator: "\n").first { $0.contains("Overall exposure level") } ?? ""
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        #expect(score != nil, "no score in: \(report.suffix(300))")
        #expect((score ?? 99) <= 2.0, "\(line)")
    }

    @Test(
        "the worker and the bridge send READY=1, WATCHDOG=1 and STOPPING=1 to $NOTIFY_SOCKET",
        arguments: ["worker", "bridge"].filter { $0 == "worker" || kafkaPeersInstalled })
    func notify(_ daemon: String) throws {
        let s = try TestSpool()
        defer { s.remove() }
        let sockPath = s.dir.file("notify.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (k, b) in sockPath.utf8.enumerated() { raw[k] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        var mock: KafkaMock?
        if daemon == "bridge" {
            mock = try KafkaMock(in: s.dir, topics: ["jobs"])
            p.arguments = ["bridge", "--brokers", mock!.bootstrap, "--jobs-out", "jobs", "--log-level", "warning"]
        } else {
            p.arguments = ["worker", "--llm-url", "builtin:echo", "--log-level", "warning"]
        }
        defer { mock?.stop() }
        var env = ProcessInfo.processInfo.environment
        env["LLMSPOOL_SPOOL"] = s.path
        env["NOTIFY_SOCKET"] = sockPath
        env["WATCHDOG_USEC"] = "400000"  // ping every 200 ms
        p.environment = env
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        var seen: [String] = []
        while !seen.contains(where: { $0.contains("WATCHDOG=1") }) {
            let m = receive()
            if m.isEmpty { break }
            seen.append(m)
        }
        #expect(seen.first?.contains("READY=1") == true, "\(seen)")
        #expect(seen.contains { $0.contains("WATCHDOG=1") }, "\(seen)")
        kill(p.processIdentifier, SIGTERM)
        var stopping = false
        while !stopping {
            let m = receive()
            if m.isEmpty { break }
            stopping = m.contains("STOPPING=1")
        }
        p.waitUntilExit()
        #expect(stopping)
        #expect(p.terminationStatus == 0)
    }
}
