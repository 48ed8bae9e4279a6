import ArgumentParser
import Spool

#if canImport(Glibc)
import Glibc
#endif

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a spool (tmp/ new/ cur/ done/ failed/), or complete one that lacks directories.",
        discussion: """
            Without options, directories get mode 2770: the owner and the spool's group may do \
            everything (files inherit the group). With --worker-user U --web-group G (as root), the \
            two-user layout: U owns the spool; G (the web server's group, which U must be in) may \
            enqueue, cancel waiting jobs and read results, but cannot write cur/, done/, forwarded/ \
            or .leases/, nor touch U's files in tmp/. Running it again on an existing spool converts \
            it. See docs/spool-format.md, "Who can do what".
            """)

    @OptionGroup var options: SpoolOptions

    @Argument(help: ArgumentHelp("The spool to create (default: --spool, LLMSPOOL_SPOOL or ./spool).", valueName: "DIR"))
    var directory: String?

    @Option(
        name: .customLong("worker-user"), help: ArgumentHelp("Two-user layout: the user the worker and bridge run as; it owns the spool.", valueName: "USER"))
    var workerUser: String?

    @Option(
        name: .customLong("web-group"), help: ArgumentHelp("Two-user layout: the web server's group, which may enqueue, cancel and read.", valueName: "GROUP"))
    var webGroup: String?

    func validate() throws {
        if (workerUser == nil) != (webGroup == nil) {
            throw ValidationError("--worker-user and --web-group go together (the two-user layout needs both)")
        }
    }

    func run() throws {
        try reporting {
            let path = directory ?? options.path
            let spool: Spool
            if let workerUser, let webGroup {
                let layout = try Init.twoUserLayout(worker: workerUser, group: webGroup)
                spool = try Failed.creating { try Spool.create(at: path, layout: layout) }
            } else {
                spool = try Failed.creating { try Spool.create(at: path) }
            }
            Output.line(spool.path)
        }
    }

    /// The two-user layout for USER and GROUP, checked: both exist, and the user is in the group
    /// (else the worker could not read the jobs the web server writes).
    static func twoUserLayout(worker: String, group: String) throws -> SpoolLayout {
        guard let pw = getpwnam(worker) else { throw Failed("--worker-user \(worker): no such user", code: ExitStatus.usage) }
        guard let gr = getgrnam(group) else { throw Failed("--web-group \(group): no such group", code: ExitStatus.usage) }
        let uid = pw.pointee.pw_uid, primary = pw.pointee.pw_gid, gid = gr.pointee.gr_gid
        var member = primary == gid
        if !member, var m = gr.pointee.gr_mem {
            while let name = m.pointee {
                if String(cString: name) == worker { member = true; break }
                m += 1
            }
        }
        guard member else {
            throw Failed(
                "--worker-user \(worker) is not in group \(group): the worker could not read the jobs the web server writes (add it: usermod -aG \(group) \(worker))",
                code: ExitStatus.usage)
        }
        return .twoUser(worker: uid, group: gid)
    }
}
