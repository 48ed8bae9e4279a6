import ArgumentParser
import JSON
import Settings
import Spool

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count the jobs in each state, and say how long ago the oldest job in new/ was queued.",
        discussion: """
            --json prints one object: {"spool":DIR,"tmp":N,"new":N,"cur":N,"done":N,"failed":N, \
            "oldestWaitingSeconds":S|null,"liveClaims":N,"deadClaims":N,"circuitBreakers":[…]}. Dead claims \
            are jobs in cur/ whose worker died; `llmspool recover` (or any running worker) gives them back. \
            circuitBreakers has one entry per live worker: {"worker":LEASE,"endpoint":URL,"state":"closed"|"open"|"probing", \
            "openSince":TIME|null,"updatedAt":TIME}, with "probes" and "probeIntervalSeconds" while not closed. \
            A spool with forwarded/ (a bridge's --jobs-out) also has \
            "oldestForwardedSeconds":S|null, the age of the oldest job out on Kafka.

            The age of the oldest job in new/ (`oldest queued … ago`, oldestWaitingSeconds) counts \
            from when its file was last written there: a job given back by a stopping worker or \
            recovered from a dead one is queued again and counts from then (its submittedAt and \
            history keep the first submission). Only file times are read, so this costs no more \
            than listing new/.

            --watch refreshes every --interval (default 1s) until SIGINT or SIGTERM (exit 0): on a \
            terminal, a view redrawn in place with throughput (jobs/s into done/ and failed/) and the \
            backlog per tenant (read from the first 10,000 files of new/); otherwise one plain line per \
            refresh, e.g. `2026-11-26T13:00:00Z new=3 cur=1 done=10 failed=0 tmp=0 live=1 dead=0 \
            oldest=12s done/s=2.0 failed/s=0.0 tenants=acme:2,(none):1`.
            """)

    @OptionGroup var options: SpoolOptions

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Refresh until interrupted: a live view on a terminal, one plain line per refresh otherwise.")
    var watch = false

    @Option(help: ArgumentHelp("With --watch, the time between refreshes (default 1s).", valueName: "DURATION"))
    var interval: String?

    func validate() throws {
        if let interval {
            guard watch else { throw ValidationError("--interval needs --watch") }
            guard let ms = HumanDuration.parseMilliseconds(interval), ms > 0 else {
                throw ValidationError("--interval: not a positive duration: \(interval) (e.g. 1s, 500ms, 1m)")
            }
        }
        if watch && json { throw ValidationError("--watch and --json cannot be combined") }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            if watch {
                let ms = interval.flatMap(HumanDuration.parseMilliseconds) ?? 1000
                try StatusWatch(spool: spool, intervalMilliseconds: ms, terminal: Output.stdoutIsTerminal).run()
                return
            }
            let s = try spool.status()
            if json {
                var o: JSONObject = ["spool": .string(spool.path)]
                for state in SpoolState.allCases { o[state.rawValue] = .integer(s.counts[state] ?? 0) }
                o["oldestWaitingSeconds"] = s.oldestWaitingMilliseconds.map { .double(Double($0) / 1000) } ?? .null
                if spool.hasForwarded {
                    o["oldestForwardedSeconds"] = s.oldestForwardedMilliseconds.map { .double(Double($0) / 1000) } ?? .null
                }
                o["liveClaims"] = .integer(s.liveClaims)
                o["deadClaims"] = .integer(s.deadClaims)
                o["circuitBreakers"] = .array(
                    breakers(spool).map { b in
                        var e: JSONObject = ["worker": .string(b.worker)]
                        if case .object(let doc) = b.doc { for m in doc.members { e[m.key] = m.value } }
                        return .object(e)
                    })
                Output.line(JSONValue.object(o).text)
                return
            }
            Output.line("spool      \(spool.path)")
            for state in spool.displayStates {
                let n = s.counts[state] ?? 0
                var note = ""
                if state == .new, let age = s.oldestWaitingMilliseconds { note = "  oldest queued \(HumanDuration.format(milliseconds: age)) ago" }
                if state == .forwarded, n > 0 {
                    note = "  handed to Kafka, waiting for results"
                    if let age = s.oldestForwardedMilliseconds { note += "; oldest queued \(HumanDuration.format(milliseconds: age)) ago" }
                }
                if state == .cur, n > 0 { note = "  \(s.liveClaims) live, \(s.deadClaims) dead" + (s.deadClaims > 0 ? " (llmspool recover)" : "") }
                Output.line(state.rawValue.padding(10) + String(n).leftPadding(7) + note)
            }
            for b in breakers(spool) where b.doc["state"]?.stringValue != "closed" {
                Output.line(
                    "breaker    \(b.doc["state"]?.stringValue ?? "?") since \(b.doc["openSince"]?.stringValue ?? "?")"
                        + "  \(b.doc["endpoint"]?.stringValue ?? "?") (worker \(b.worker), \(b.doc["probes"]?.intValue ?? 0) probes)")
            }
        }
    }
}

/// The circuit breakers live workers published (see `Worker`), for status.
func breakers(_ spool: Spool) -> [(worker: String, doc: JSONValue)] {
    ((try? spool.liveStates()) ?? []).compactMap { s in s.document["circuitBreaker"].map { (s.leaseID, $0) } }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    func leftPadding(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

extension Spool {
    /// The states `status` shows, in order (`forwarded` only when the spool has that directory).
    var displayStates: [SpoolState] { hasForwarded ? [.new, .cur, .done, .failed, .forwarded, .tmp] : [.new, .cur, .done, .failed, .tmp] }
}
