public import ArgumentParser
import Spool

extension SpoolState: ExpressibleByArgument {}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List jobs, one per line: ID, state, last change (RFC 3339), tab-separated.",
        discussion: "Jobs are listed by state (new, cur, forwarded, done, failed), oldest first within each.")

    @OptionGroup var options: SpoolOptions

    @Option(help: "Only jobs in this state: new, cur, forwarded, done or failed.")
    var state: SpoolState?

    func validate() throws {
        if state == .tmp { throw ValidationError("tmp/ holds files being written, not jobs; use new, cur, forwarded, done or failed") }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            for e in try spool.list(state.map { [$0] } ?? SpoolState.jobStates) {
                Output.line("\(e.id)\t\(e.state.rawValue)\t\(Timestamp.format(milliseconds: e.modifiedMilliseconds))")
            }
        }
    }
}
