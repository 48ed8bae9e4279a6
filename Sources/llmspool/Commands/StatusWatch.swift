import Settings
import Spool
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The write end of the self-pipe SIGINT/SIGTERM wake `status --watch` through (-1: none).
/// A pipe, not a blocked signal mask: the async root command has other threads, any of which may take the signal.
private let watchSignalPipe = Atomic<Int32>(-1)

/// `llmspool status --watch`: counts per state, claims, oldest waiting job, backlog per tenant and
/// throughput, redrawn in place on a terminal, or one plain line per refresh otherwise.
struct StatusWatch {
    let spool: Spool
    let intervalMilliseconds: Int64
    /// How many files of `new/` are read per refresh to learn their tenants.
    var tenantScanLimit = 10_000
    /// Tenant rows shown on the terminal view.
    var tenantRows = 20
    let terminal: Bool

    /// One refresh's figures.
    struct Frame {
        var status: SpoolStatus
        var tenants: [(tenant: String, count: Int)]
        var scanned: Int
        var waiting: Int
        var doneRate: Double?
        var failedRate: Double?
        var wallMilliseconds: Int64
        var states: [SpoolState] = [.new, .cur, .done, .failed, .tmp]
    }

    /// Refreshes until SIGINT or SIGTERM; returns normally then (exit 0).
    func run() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw Failed("pipe: \(String(cString: strerror(errno)))", code: 74) }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        watchSignalPipe.store(fds[1], ordering: .sequentiallyConsistent)
        let handler: @convention(c) (Int32) -> Void = { _ in
            let fd = watchSignalPipe.load(ordering: .relaxed)
            guard fd >= 0 else { return }
            var byte: UInt8 = 1
            _ = Glibc.write(fd, &byte, 1)
        }
        let oldInt = signal(SIGINT, handler), oldTerm = signal(SIGTERM, handler)
        if terminal { write(Self.hideCursor) }
        defer {
            if terminal { write(Self.showCursor) }
            signal(SIGINT, oldInt)
            signal(SIGTERM, oldTerm)
            watchSignalPipe.store(-1, ordering: .sequentiallyConsistent)
            close(fds[0])
            close(fds[1])
        }

        var previous: (done: Int, failed: Int, at: Int64)?
        while true {
            let status: SpoolStatus
            do { status = try spool.status() } catch { throw Failed(error) }
            let at = Self.monotonicMilliseconds()
            let done = status.counts[.done] ?? 0, failed = status.counts[.failed] ?? 0
            var frame = Frame(
                status: status, tenants: [], scanned: 0, waiting: 0, doneRate: nil, failedRate: nil,
                wallMilliseconds: Timestamp.nowMilliseconds(), states: spool.displayStates)
            if let p = previous, at > p.at {
                let seconds = Double(at - p.at) / 1000
                frame.doneRate = Double(max(0, done - p.done)) / seconds
                frame.failedRate = Double(max(0, failed - p.failed)) / seconds
            }
            previous = (done, failed, at)
            (frame.tenants, frame.scanned, frame.waiting) = tenantBacklog()
            // A closed stdout (the reader of a pipe went away) ends the watch.
            guard write(terminal ? screen(frame) : Self.plainLine(frame) + "\n") else { return }
            if waitForSignal(fds[0], milliseconds: intervalMilliseconds) { return }
        }
    }

    /// Waiting jobs per tenant, most first, from the first `tenantScanLimit` files of `new/` (oldest first).
    func tenantBacklog() -> (tenants: [(tenant: String, count: Int)], scanned: Int, waiting: Int) {
        let names = (try? spool.waiting()) ?? []
        var counts: [String: Int] = [:]
        let scanned = min(names.count, tenantScanLimit)
        for name in names.prefix(tenantScanLimit) {
            guard let peeked = spool.peek(name) else { continue }  // claimed meanwhile
            let tenant: String
            switch peeked.job {
            case .success(let job): tenant = job.tenantId.flatMap { $0.isEmpty ? nil : $0 } ?? "(none)"
            case .failure: tenant = "(invalid)"
            }
            counts[tenant, default: 0] += 1
        }
        let sorted = counts.map { (tenant: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.tenant < $1.tenant }
        return (sorted, scanned, names.count)
    }

    /// `2026-11-26T13:00:00Z new=3 cur=1 done=10 failed=0 tmp=0 live=1 dead=0 oldest=12s done/s=2.0 failed/s=0.0 tenants=acme:2,(none):1`
    static func plainLine(_ f: Frame) -> String {
        let s = f.status
        var line = seconds(f.wallMilliseconds)
        for state in f.states { line += " \(state.rawValue)=\(s.counts[state] ?? 0)" }
        line += " live=\(s.liveClaims) dead=\(s.deadClaims)"
        line += " oldest=" + (s.oldestWaitingMilliseconds.map { HumanDuration.format(milliseconds: max(0, $0)) } ?? "-")
        line += " done/s=" + rate(f.doneRate) + " failed/s=" + rate(f.failedRate)
        line += " tenants=" + (f.tenants.isEmpty ? "-" : f.tenants.map { "\($0.tenant):\($0.count)" }.joined(separator: ","))
        if f.scanned < f.waiting { line += " tenants-scanned=\(f.scanned)/\(f.waiting)" }
        return line
    }

    /// The terminal view: cursor home, each line cleared to its end, the rest of the screen cleared.
    func screen(_ f: Frame) -> String {
        let s = f.status
        var lines: [String] = []
        lines.append("llmspool status  \(spool.path)")
        lines.append("\(Self.seconds(f.wallMilliseconds))  every \(HumanDuration.format(milliseconds: intervalMilliseconds)), Ctrl-C quits")
        lines.append("")
        lines.append("state".padding(10) + "jobs".leftPadding(9))
        for state in f.states {
            let n = s.counts[state] ?? 0
            var note = ""
            switch state {
            case .new: note = s.oldestWaitingMilliseconds.map { "oldest queued \(HumanDuration.format(milliseconds: max(0, $0))) ago" } ?? ""
            case .cur: note = "\(s.liveClaims) live, \(s.deadClaims) dead" + (s.deadClaims > 0 ? " (llmspool recover)" : "")
            case .done: note = Self.rate(f.doneRate) + " jobs/s"
            case .failed: note = Self.rate(f.failedRate) + " jobs/s"
            default: break
            }
            lines.append(state.rawValue.padding(10) + String(n).leftPadding(9) + (note.isEmpty ? "" : "  " + note))
        }
        lines.append("")
        if f.tenants.isEmpty {
            lines.append("backlog by tenant: none waiting")
        } else {
            lines.append("backlog by tenant (new/)")
            let width = min(40, max(8, f.tenants.prefix(tenantRows).map(\.tenant.count).max() ?? 0))
            for t in f.tenants.prefix(tenantRows) { lines.append("  " + t.tenant.padding(width) + String(t.count).leftPadding(9)) }
            if f.tenants.count > tenantRows { lines.append("  … and \(f.tenants.count - tenantRows) more tenants") }
        }
        if f.scanned < f.waiting {
            lines.append("  (tenants read from the first \(f.scanned) of \(f.waiting) waiting files)")
        }
        return "\u{1B}[H" + lines.map { $0 + "\u{1B}[K\n" }.joined() + "\u{1B}[J"
    }

    static let hideCursor = "\u{1B}[?25l\u{1B}[H\u{1B}[2J"
    static let showCursor = "\u{1B}[?25h"

    /// `2026-11-26T13:00:00Z`.
    static func seconds(_ ms: Int64) -> String {
        let t = Timestamp.format(milliseconds: ms)
        guard let dot = t.lastIndex(of: ".") else { return t }
        return String(t[..<dot]) + "Z"
    }

    /// One decimal, `-` before the second refresh.
    static func rate(_ r: Double?) -> String {
        guard let r, r.isFinite else { return "-" }
        let tenths = Int((r * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Sleeps up to `milliseconds`; true when SIGINT or SIGTERM arrived.
    func waitForSignal(_ fd: Int32, milliseconds: Int64) -> Bool {
        let deadline = Self.monotonicMilliseconds() + milliseconds
        while true {
            let left = deadline - Self.monotonicMilliseconds()
            if left <= 0 { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, Int32(clamping: left))
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    /// Writes all of `s` to stdout (fd 1) directly, so each refresh reaches a pipe at once.
    @discardableResult
    func write(_ s: String) -> Bool {
        fflushStdout()
        var bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(1, $0.baseAddress! + off, $0.count - off) }
            if n < 0 { if errno == EINTR { continue } else { return false } }
            off += n
        }
        return true
    }
}
