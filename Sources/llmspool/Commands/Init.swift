import ArgumentParser
import Spool

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a spool (tmp/ new/ cur/ done/ failed/), or complete one that lacks directories.",
        discussion: "Directories get mode 2770 (owner and group may enqueue and work; files inherit the group).")

    @OptionGroup var options: SpoolOptions

    @Argument(help: ArgumentHelp("The spool to create (default: --spool, LLMSPOOL_SPOOL or ./spool).", valueName: "DIR"))
    var directory: String?

    func run() throws {
        try reporting {
            let spool = try Failed.creating { try Spool.create(at: directory ?? options.path) }
            Output.line(spool.path)
        }
    }
}
