import Foundation
import Spool
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `llmspool worker --metrics-address`: the Prometheus endpoint, scraped over a raw socket.
@Suite("Worker metrics", .serialized)
struct MetricsTests {
    @Test("GET /metrics: valid exposition text, and the finished jobs counted")
    func scrape() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let port = UInt16(try freeLoopbackPort())
        let (w, err) = try WorkerProcessTests.startWorker(
            s.path, ["--llm-url", "builtin:echo", "--metrics-address", "127.0.0.1:\(port)"])
        defer {
            if w.isRunning { kill(w.processIdentifier, SIGTERM) }
            w.waitUntilExit()
        }
        #expect(WorkerProcessTests.waitUntil(10) { (try? Self.get(port, "/metrics")) != nil }, "the metrics endpoint never answered")
        _ = try Spool(path: s.path).enqueue(batch: (0..<3).map { Job(prompt: "metrics \($0)") })
        #expect(WorkerProcessTests.waitUntil(15) { s.names("done").count == 3 }, "done/ has \(s.names("done").count) of 3")

        var text = ""
        let counted = WorkerProcessTests.waitUntil(5) {
            guard let r = try? Self.get(port, "/metrics") else { return false }
            text = r.body
            return Self.value(in: text, of: "llmspool_jobs_finished_total") == 3
        }
        #expect(counted, "llmspool_jobs_finished_total is not 3 in:\n\(text)")
        let r = try Self.get(port, "/metrics")
        #expect(r.status == 200)
        #expect(r.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true, "\(r.headers)")
        let problems = Self.validate(r.body)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))\n--- exposition ---\n\(r.body)")
        #expect(Self.value(in: r.body, of: "llmspool_jobs_claimed_total") == 3)
        #expect(Self.value(in: r.body, of: "llmspool_calls_in_flight") == 0)
        #expect(Self.value(in: r.body, of: "llmspool_llm_latency_seconds_count") == 3)
        #expect(r.body.contains("# TYPE llmspool_llm_latency_seconds histogram"))
        #expect(try Self.get(port, "/").status == 404)

        if let promtool = Self.which("promtool") {
            let file = s.dir.file("metrics.txt")
            try r.body.write(toFile: file, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: promtool)
            p.arguments = ["check", "metrics"]
            p.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "promtool check metrics: \(said)")
        }

        kill(w.processIdentifier, SIGTERM)
        w.waitUntilExit()
        #expect(w.terminationStatus == 0, "\(String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        #expect((try? Self.get(port, "/metrics")) == nil, "the endpoint outlived the worker")
    }

    @Test("an address already in use: a clear error naming it, exit 74")
    func bindFailure() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let (fd, port) = try Self.listen()
        defer { close(fd) }
        let r = try CLI.run(["worker", "--llm-url", "builtin:echo", "--metrics-address", "127.0.0.1:\(port)"], spool: s.path)
        #expect(r.status == 74)
        #expect(r.stderr.contains("127.0.0.1:\(port)") && r.stderr.contains("bind"), "\(r.stderr)")
    }

    @Test("a malformed --metrics-address is a usage error")
    func badAddress() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let r = try CLI.run(["worker", "--llm-url", "builtin:echo", "--metrics-address", "9464"], spool: s.path)
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("--metrics-address"), "\(r.stderr)")
    }

    // MARK: The exposition format (text 0.0.4)

    struct Sample { var name: String; var labels: [String: String]; var value: Double }

    /// Every problem found: sample lines that are not `name{labels} value`, metrics without a
    /// `# TYPE`, counters not named `…_total`.
    static func validate(_ text: String) -> [String] {
        var problems: [String] = []
        var types: [String: String] = [:]
        var samples: [Sample] = []
        if !text.hasSuffix("\n") { problems.append("the text does not end with a newline") }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            if line.hasPrefix("#") {
                let f = line.split(separator: " ", maxSplits: 3).map(String.init)
                if f.count >= 2 && f[1] == "TYPE" {
                    guard f.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(f[3]) else {
                        problems.append("line \(i + 1): bad TYPE line: \(line)"); continue
                    }
                    if types[f[2]] != nil { problems.append("line \(i + 1): second TYPE for \(f[2])") }
                    if samples.contains(where: { family($0.name, types) == f[2] }) { problems.append("line \(i + 1): TYPE after samples of \(f[2])") }
                    types[f[2]] = f[3]
                }
                continue
            }
            guard let s = parseSample(String(line)) else { problems.append("line \(i + 1): not `name{labels} value`: \(line)"); continue }
            samples.append(s)
        }
        for s in samples {
            guard let fam = family(s.name, types) else { problems.append("\(s.name): no # TYPE"); continue }
            if types[fam] == "counter" && !fam.hasSuffix("_total") { problems.append("\(fam): a counter not named …_total") }
            if types[fam] == "histogram" && s.name.hasSuffix("_bucket") && s.labels["le"] == nil { problems.append("\(s.name): a bucket without le") }
        }
        for (name, type) in types where type == "histogram" {
            let buckets = samples.filter { $0.name == name + "_bucket" && $0.labels["le"] == "+Inf" }
            let counts = samples.filter { $0.name == name + "_count" }
            if buckets.map(\.value) != counts.map(\.value) { problems.append("\(name): +Inf bucket differs from _count") }
        }
        return problems
    }

    /// The metric family a sample belongs to: its own name, or a histogram's/summary's base name.
    static func family(_ name: String, _ types: [String: String]) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let t = types[base], t == "histogram" || t == "summary" { return base }
        }
        return nil
    }

    /// `name{k="v",…} value [timestamp]`, or nil.
    static func parseSample(_ line: String) -> Sample? {
        let c = Array(line.unicodeScalars)
        var i = 0
        func isNameStart(_ u: Unicode.Scalar) -> Bool { u == "_" || u == ":" || (u.isASCII && u.properties.isAlphabetic) }
        func isName(_ u: Unicode.Scalar) -> Bool { isNameStart(u) || ("0"..."9").contains(u) }
        func name(allowColon: Bool) -> String? {
            guard i < c.count, isNameStart(c[i]), allowColon || c[i] != ":" else { return nil }
            var s = ""
            while i < c.count, isName(c[i]), allowColon || c[i] != ":" { s.unicodeScalars.append(c[i]); i += 1 }
            return s
        }
        guard let metric = name(allowColon: true) else { return nil }
        var labels: [String: String] = [:]
        if i < c.count && c[i] == "{" {
            i += 1
            while i < c.count && c[i] != "}" {
                guard let key = name(allowColon: false), i + 1 < c.count, c[i] == "=", c[i + 1] == "\"" else { return nil }
                i += 2
                var value = ""
                while i < c.count && c[i] != "\"" {
                    if c[i] == "\\" {
                        guard i + 1 < c.count, ["\\", "\"", "n"].contains(c[i + 1]) else { return nil }
                        value.unicodeScalars.append(c[i + 1] == "n" ? "\n" : c[i + 1])
                        i += 2
                    } else {
                        value.unicodeScalars.append(c[i]); i += 1
                    }
                }
                guard i < c.count else { return nil }
                i += 1
                guard labels.updateValue(value, forKey: key) == nil else { return nil }
                if i < c.count && c[i] == "," { i += 1 }
            }
            guard i < c.count else { return nil }
            i += 1
        }
        let rest = String(String.UnicodeScalarView(c[i...]))
        guard rest.hasPrefix(" ") else { return nil }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard (1...2).contains(fields.count) else { return nil }
        let v = String(fields[0])
        guard let value = ["+Inf": Double.infinity, "-Inf": -Double.infinity, "NaN": Double.nan][v] ?? Double(v) else { return nil }
        if fields.count == 2 && Int64(fields[1]) == nil { return nil }
        return Sample(name: metric, labels: labels, value: value)
    }

    /// The value of an unlabelled sample, or nil.
    static func value(in text: String, of name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return parseSample(String(line))?.value
        }
        return nil
    }

    // MARK: Sockets

    struct Response { var status: Int; var headers: [String: String]; var body: String }

    /// One HTTP/1.1 request over a fresh connection to 127.0.0.1, read to EOF.
    static func get(_ port: UInt16, _ path: String) throws -> Response {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = Self.loopback(port)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { throw POSIXError(.EIO) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw POSIXError(.EBADMSG) }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusLine = head[0].split(separator: " ")
        guard statusLine.count >= 2, statusLine[0] == "HTTP/1.1", let status = Int(statusLine[1]) else { throw POSIXError(.EBADMSG) }
        var headers: [String: String] = [:]
        for h in head.dropFirst() {
            guard let colon = h.firstIndex(of: ":") else { throw POSIXError(.EBADMSG) }
            headers[h[..<colon].lowercased()] = h[h.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = String(text[split.upperBound...])
        #expect(headers["content-length"] == String(body.utf8.count))
        return Response(status: status, headers: headers, body: body)
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    /// A socket listening on a free port of 127.0.0.1.
    static func listen() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var addr = loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && Glibc.listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { close(fd); throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        return (fd, UInt16(bigEndian: addr.sin_port))
    }

    static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let p = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}
