public import ArgumentParser
import Spool

extension SpoolState: ExpressibleByArgument {
    /// The states `--state` offers: tmp/ is refused (it holds files being written, not jobs).
    static var allValueStrings: [String] { jobStates.map(\.rawValue) }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List jobs, one per line: ID, state, last change (RFC 3339), tab-separated.",
        discussion: """
            Jobs are listed by state (new, cur, forwarded, done, failed), oldest first within each. \
            A dead letter of a file that could not become a job has a fourth column when its key is \
            not the name it was dropped under: `dropped as NAME` (show and requeue accept either). \
            tmp/ is not a state (it holds files being written): `status` counts it.
            """)

    @OptionGroup var options: SpoolOptions

    @Option(help: "Only jobs in this state: new, cur, forwarded, done or failed.")
    var state: SpoolState?

    func validate() throws {
        if state == .tmp { throw ValidationError("tmp/ holds files being written, not jobs: use new, cur, forwarded, done or failed (status counts tmp/)") }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            for e in try spool.list(state.map { [$0] } ?? SpoolState.jobStates) {
                Output.line(
                    "\(e.id)\t\(e.state.rawValue)\t\(Timestamp.format(milliseconds: e.modifiedMilliseconds))"
                        + (e.droppedAs.map { "\tdropped as \($0)" } ?? ""))
            }
        }
    }
}
