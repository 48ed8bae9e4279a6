import Basics
import Dispatch
public import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Why the metrics endpoint could not start.
public struct MetricsServerError: Error, CustomStringConvertible, Sendable {
    public var address: String
    public var message: String
    public var description: String { "metrics address \(address): \(message)" }
}

/// A small HTTP/1.1 server for Prometheus: `GET /metrics` answers the exposition text, one request
/// per connection (`Connection: close`). Nothing else is served.
///
/// One thread and one `poll(2)` serve every connection at once, none of them blocking: a client
/// that sends its request slowly, or never, only holds its own connection, and only until the
/// request deadline (``Limits/requestTimeoutMs``, for the whole exchange, not per read). At most
/// ``Limits/maxConnections`` are open; a new one past that closes the oldest, so a flood of idle
/// connections cannot shut out a scrape. When the process is out of descriptors (`accept` fails
/// with `EMFILE` or `ENFILE`) accepting pauses for ``Limits/acceptPauseMs`` rather than spinning.
public final class MetricsServer: Sendable {
    /// How the listener keeps slow, idle or numerous clients from starving a scrape.
    public struct Limits: Sendable {
        /// Most connections open at once; accepting one more closes the oldest.
        public var maxConnections = 64
        /// The longest a whole exchange may take, request head in and answer out (ms).
        public var requestTimeoutMs: Int64 = 5_000
        /// How long accepting pauses when the process has no descriptor left (ms).
        public var acceptPauseMs: Int64 = 100
        /// Most connections accepted per turn of the loop, so the open ones are served in between.
        public var acceptsPerTurn = 16
        /// The largest request head read (bytes); a longer one is answered 431.
        public var maxHeadBytes = 8_192

        public init() {}
    }

    public let address: String
    public let limits: Limits
    private let listener: Int32
    private let wakeRead: Int32, wakeWrite: Int32
    private let body: @Sendable () -> [UInt8]
    private let stopped = DispatchSemaphore(value: 0)

    /// Splits `HOST:PORT` (`[::1]:9464` for IPv6); nil if malformed.
    public static func parse(_ address: String) -> (host: String, port: UInt16)? { HostPort.split(address) }

    /// Binds and listens on `address` (`HOST:PORT`); `body` gives the exposition text per scrape.
    public init(address: String, limits: Limits = Limits(), body: @escaping @Sendable () -> [UInt8]) throws(MetricsServerError) {
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
            let s = socket(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            if s < 0 { lastError = "socket: \(errnoText())"; continue }
            var one: Int32 = 1
            _ = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(s, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 {
                lastError = "cannot bind: \(errnoText())"; close(s); continue
            }
            // A deep backlog: a burst of connections waits for the loop instead of having its SYNs dropped.
            if listen(s, 1024) != 0 { lastError = "cannot listen: \(errnoText())"; close(s); continue }
            fd = s
            break
        }
        guard fd >= 0 else { throw fail(lastError) }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { close(fd); throw fail("pipe: \(errnoText())") }
        for p in pipeFDs { _ = fcntl(p, F_SETFD, FD_CLOEXEC) }
        self.address = address
        self.limits = limits
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

    /// One client: its request head as read so far, then the answer being sent.
    private struct Connection {
        var fd: Int32
        /// When the exchange must be over (monotonic ms).
        var deadline: Int64
        var head: [UInt8] = []
        var answer: [UInt8]?
        var sent = 0
    }

    private func serve() {
        // In the order accepted: the first is the oldest, and its deadline the nearest.
        var open: [Connection] = []
        var fds: [pollfd] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var acceptPausedUntil: Int64 = 0
        defer { for c in open { close(c.fd) } }
        while true {
            var now = Self.nowMs()
            open.removeAll { c in
                guard c.deadline <= now else { return false }
                close(c.fd)
                return true
            }
            let accepting = now >= acceptPausedUntil
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: accepting ? listener : -1, events: Int16(POLLIN), revents: 0))
            for c in open { fds.append(pollfd(fd: c.fd, events: Int16(c.answer == nil ? POLLIN : POLLOUT), revents: 0)) }
            var timeout = open.first.map { max(0, $0.deadline - now) } ?? -1
            if !accepting { timeout = timeout < 0 ? acceptPausedUntil - now : min(timeout, acceptPausedUntil - now) }
            let n = poll(&fds, nfds_t(fds.count), Int32(clamping: timeout))
            if n < 0 {
                if errno == EINTR { continue }
                usleep(100_000)  // ENOMEM: wait rather than spin
                continue
            }
            if fds[0].revents != 0 { return }
            if n == 0 { continue }
            var finished: [Int] = []
            for i in open.indices where fds[i + 2].revents != 0 {
                if !advance(&open[i], &buffer) { finished.append(i) }
            }
            for i in finished.reversed() { close(open.remove(at: i).fd) }
            if accepting && fds[1].revents != 0 {
                now = Self.nowMs()
                acceptPausedUntil = acceptWaiting(&open, &buffer, now: now)
            }
        }
    }

    /// Accepts up to ``Limits/acceptsPerTurn`` connections, closing the oldest past the cap, and
    /// serves each at once if its request is already there. Returns when accepting may resume
    /// (0: at once).
    private func acceptWaiting(_ open: inout [Connection], _ buffer: inout [UInt8], now: Int64) -> Int64 {
        for _ in 0..<limits.acceptsPerTurn {
            let c = accept(listener, nil, nil)
            if c < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // No descriptor: the listener stays readable, so polling it again would spin.
                    // Give back the oldest connection's descriptor and wait a moment.
                    if !open.isEmpty { close(open.removeFirst().fd) }
                    return now + limits.acceptPauseMs
                default:
                    return 0  // EAGAIN: none waiting
                }
            }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            if open.count >= limits.maxConnections { close(open.removeFirst().fd) }
            var conn = Connection(fd: c, deadline: now + limits.requestTimeoutMs)
            if advance(&conn, &buffer) { open.append(conn) } else { close(c) }
        }
        return 0
    }

    /// Reads what the client sent, or sends what is left of the answer, without blocking. Returns
    /// false when the connection is done with (answered, closed by the client, or failed).
    private func advance(_ c: inout Connection, _ buffer: inout [UInt8]) -> Bool {
        while c.answer == nil {
            let n = buffer.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK
            }
            if n == 0 { return false }
            let searchFrom = max(0, c.head.count - 3)
            c.head += buffer[0..<n]
            if Self.endOfHead(c.head, from: searchFrom) {
                c.answer = answer(c.head)
            } else if c.head.count >= limits.maxHeadBytes {
                c.answer = Self.response(
                    "431 Request Header Fields Too Large", "text/plain; charset=utf-8",
                    Array("request head over \(limits.maxHeadBytes) bytes\n".utf8))
            }
        }
        guard let answer = c.answer else { return false }
        while c.sent < answer.count {
            let n = answer.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.sent, $0.count - c.sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK
            }
            c.sent += n
        }
        return false
    }

    static func endOfHead(_ head: [UInt8], from: Int) -> Bool {
        guard head.count >= 4 else { return false }
        for i in from...(head.count - 4)
        where head[i] == 13 && head[i + 1] == 10 && head[i + 2] == 13 && head[i + 3] == 10 { return true }
        return false
    }

    /// The answer to a complete request head.
    private func answer(_ head: [UInt8]) -> [UInt8] {
        let firstLine = head.split(separator: UInt8(ascii: "\r"), maxSplits: 1).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let parts = firstLine.split(separator: " ")
        if parts.count != 3 || !parts[2].hasPrefix("HTTP/1.") {
            return Self.response("400 Bad Request", "text/plain; charset=utf-8", Array("bad request\n".utf8))
        } else if parts[1] != "/metrics" && !parts[1].hasPrefix("/metrics?") {
            return Self.response("404 Not Found", "text/plain; charset=utf-8", Array("only /metrics is served\n".utf8))
        } else if parts[0] == "GET" || parts[0] == "HEAD" {
            let text = body()
            return Self.response(
                "200 OK", "text/plain; version=0.0.4; charset=utf-8", text, length: text.count,
                withBody: parts[0] == "GET")
        } else {
            return Self.response(
                "405 Method Not Allowed", "text/plain; charset=utf-8", Array("use GET\n".utf8),
                extra: "Allow: GET, HEAD\r\n")
        }
    }

    static func response(
        _ status: String, _ type: String, _ body: [UInt8], length: Int? = nil, withBody: Bool = true,
        extra: String = ""
    ) -> [UInt8] {
        let head =
            "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(length ?? body.count)\r\n"
            + extra + "Connection: close\r\n\r\n"
        return Array(head.utf8) + (withBody ? body : [])
    }

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// The listener as one of the daemon's services: it serves from the group's start and stops,
/// closing its socket, when the group shuts down gracefully or is cancelled.
extension MetricsServer: Service {
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        stop()
    }
}
