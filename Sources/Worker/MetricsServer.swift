import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Why the metrics endpoint could not start.
public struct MetricsServerError: Error, CustomStringConvertible, Sendable {
    public var address: String
    public var message: String
    public var description: String { "metrics address \(address): \(message)" }
}

/// A tiny HTTP/1.1 server for Prometheus: `GET /metrics` answers the exposition text, one request
/// per connection (`Connection: close`), on a thread of its own. Nothing else is served.
public final class MetricsServer: Sendable {
    public let address: String
    private let listener: Int32
    private let wakeRead: Int32, wakeWrite: Int32
    private let body: @Sendable () -> [UInt8]
    private let stopped = DispatchSemaphore(value: 0)

    /// Splits `HOST:PORT` (`[::1]:9464` for IPv6); nil if malformed.
    public static func parse(_ address: String) -> (host: String, port: UInt16)? {
        guard let colon = address.lastIndex(of: ":") else { return nil }
        var host = String(address[..<colon])
        guard let port = UInt16(address[address.index(after: colon)...]), port > 0 else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(":") || address.hasPrefix("[") else { return nil }
        return (host, port)
    }

    /// Binds and listens on `address` (`HOST:PORT`); `body` gives the exposition text per scrape.
    public init(address: String, body: @escaping @Sendable () -> [UInt8]) throws(MetricsServerError) {
        func fail(_ m: String) -> MetricsServerError { MetricsServerError(address: address, message: m) }
        func errnoText() -> String { String(cString: strerror(errno)) }
        guard let (host, port) = Self.parse(address) else { throw fail("expected HOST:PORT, e.g. 127.0.0.1:9464") }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else { throw fail("cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(res) }
        var fd: Int32 = -1
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let s = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if s < 0 { lastError = "socket: \(errnoText())"; continue }
            var one: Int32 = 1
            _ = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(s, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 {
                lastError = "cannot bind: \(errnoText())"; close(s); continue
            }
            if listen(s, 64) != 0 { lastError = "cannot listen: \(errnoText())"; close(s); continue }
            fd = s
            break
        }
        guard fd >= 0 else { throw fail(lastError) }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { close(fd); throw fail("pipe: \(errnoText())") }
        for p in pipeFDs { _ = fcntl(p, F_SETFD, FD_CLOEXEC) }
        self.address = address
        listener = fd
        wakeRead = pipeFDs[0]
        wakeWrite = pipeFDs[1]
        self.body = body
    }

    /// Serves scrapes until `stop()`.
    public func start() {
        DispatchQueue(label: "llmspool.metrics").async { [self] in
            serve()
            stopped.signal()
        }
    }

    /// Stops serving and closes the socket; returns once the server thread has ended.
    public func stop() {
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
        stopped.wait()
        close(listener)
        close(wakeRead)
        close(wakeWrite)
    }

    private func serve() {
        while true {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, -1)
            if n < 0 { if errno == EINTR { continue } else { return } }
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLIN) == 0 { continue }
            let c = accept(listener, nil, nil)
            if c < 0 { continue }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            handle(c)
            close(c)
        }
    }

    /// Reads one request head (2 s, 8 KiB at most) and answers it.
    private func handle(_ c: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        _ = setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var head: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 2048)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while head.count < 8192 {
            let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            head += buf[0..<n]
            if head.count >= 4 && (0...(head.count - 4)).contains(where: { Array(head[$0..<($0 + 4)]) == end }) { break }
        }
        let firstLine = head.split(separator: UInt8(ascii: "\r"), maxSplits: 1).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let parts = firstLine.split(separator: " ")
        let response: [UInt8]
        if parts.count != 3 || !parts[2].hasPrefix("HTTP/1.") {
            response = Self.response("400 Bad Request", "text/plain; charset=utf-8", Array("bad request\n".utf8))
        } else if parts[1] != "/metrics" && !parts[1].hasPrefix("/metrics?") {
            response = Self.response("404 Not Found", "text/plain; charset=utf-8", Array("only /metrics is served\n".utf8))
        } else if parts[0] == "GET" || parts[0] == "HEAD" {
            let text = body()
            response = Self.response("200 OK", "text/plain; version=0.0.4; charset=utf-8", text, length: text.count,
                                     withBody: parts[0] == "GET")
        } else {
            response = Self.response("405 Method Not Allowed", "text/plain; charset=utf-8", Array("use GET\n".utf8),
                                     extra: "Allow: GET, HEAD\r\n")
        }
        var sent = 0
        while sent < response.count {
            let n = response.withUnsafeBytes { send(c, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            sent += n
        }
    }

    static func response(_ status: String, _ type: String, _ body: [UInt8], length: Int? = nil, withBody: Bool = true,
                         extra: String = "") -> [UInt8] {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(length ?? body.count)\r\n"
            + extra + "Connection: close\r\n\r\n"
        return Array(head.utf8) + (withBody ? body : [])
    }
}
