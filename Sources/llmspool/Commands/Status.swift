import ArgumentParser
import Spool

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count the jobs in each state, and give the age of the oldest waiting job.",
        discussion: """
            --json prints one object: {"spool":DIR,"tmp":N,"new":N,"cur":N,"done":N,"failed":N, \
            "oldestWaitingSeconds":S|null,"liveClaims":N,"deadClaims":N}. Dead claims are jobs in cur/ \
            whose worker died; `llmspool recover` (or any running worker) gives them back.
            """)

    @OptionGroup var options: SpoolOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try reporting {
            let spool = try options.open()
            let s = try spool.status()
            if json {
                var o: JSONObject = ["spool": .string(spool.path)]
                for state in SpoolState.allCases { o[state.rawValue] = .integer(s.counts[state] ?? 0) }
                o["oldestWaitingSeconds"] = s.oldestWaitingMilliseconds.map { .double(Double($0) / 1000) } ?? .null
                o["liveClaims"] = .integer(s.liveClaims)
                o["deadClaims"] = .integer(s.deadClaims)
                Output.line(JSONValue.object(o).text)
                return
            }
            Output.line("spool   \(spool.path)")
            for state in [SpoolState.new, .cur, .done, .failed, .tmp] {
                let n = s.counts[state] ?? 0
                var note = ""
                if state == .new, let age = s.oldestWaitingMilliseconds { note = "  oldest waiting \(HumanDuration.format(milliseconds: age))" }
                if state == .cur, n > 0 { note = "  \(s.liveClaims) live, \(s.deadClaims) dead" + (s.deadClaims > 0 ? " (llmspool recover)" : "") }
                Output.line(state.rawValue.padding(8) + String(n).leftPadding(7) + note)
            }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    func leftPadding(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
