import ArgumentParser
import Spool
import Submit

#if canImport(Glibc)
import Glibc
#endif

@main
struct LLMSpool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llmspool",
        abstract: "A crash-safe job queue for slow LLM calls, whose broker is a directory.",
        discussion: """
            A spool is a directory with tmp/ new/ cur/ done/ failed/. A job is one JSON file; every \
            state change is a rename. Select the spool with --spool DIR or LLMSPOOL_SPOOL (default ./spool).

            Exit codes (sysexits.h):
              0   success
              64  usage error (bad flag or argument)
              65  bad data (an invalid job document or configuration file, an id that already exists)
              66  no such job, the directory is not a spool, or no such configuration file
              69  submit --wait: the job failed (its dead letter's error is printed)
              74  I/O error (a system call failed; the message names the call and path)
              75  temporary failure (disk full, out of descriptors), or submit --wait timed out
            """,
        subcommands: [
            Init.self, Submit.self, WorkerCommand.self, Status.self, Show.self, List.self, Requeue.self, Recover.self, Purge.self,
            CGICommand.self, DebugClaim.self, BridgeCommand.self, ConfigCommand.self, BatchCommand.self,
        ]
    )

    /// `llmspool cgi` run by a web server (`GATEWAY_INTERFACE` set) answers the request without
    /// parsing its command line at all: a server may build it from the client's query string
    /// (Apache does, for a query without `=`), so `?--help` or `?--spool+x` must mean nothing.
    ///
    /// Otherwise the command line is parsed once and the command run, as ArgumentParser's own
    /// `main` does, but its errors (`Error: …`, from parsing and `validate()`) are reported like
    /// every other error: `llmspool: error: …`, then the usage. `submit`'s file operands past the
    /// first are set aside before parsing and added after it: ArgumentParser's time grows with the
    /// square of the operand count (2,500 files took 2.4 s, 5,000 took 9.6 s), and a shell glob
    /// may give tens of thousands.
    static func main() async {
        // Signals blocked by whoever started us (a test harness, a shell's job control) would
        // keep SIGTERM and SIGINT from the daemons' handlers and `status --watch`: start clean.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "cgi", getenv("GATEWAY_INTERFACE") != nil { Glibc.exit(CGI.main()) }
        var setAside: [String] = []
        if arguments.first == Submit.configuration.commandName ?? "submit" {
            (arguments, setAside) = Submit.setAsideOperands(arguments)
        }
        do {
            var command = try parseAsRoot(arguments)
            if !setAside.isEmpty, var submit = command as? Submit {
                submit.files += setAside
                do { try submit.validate() } catch {
                    // As ArgumentParser words a validate() error of a subcommand.
                    Output.standardError(
                        """
                        llmspool: error: \(Submit.message(for: error))
                        Usage: \(usageString(for: Submit.self))
                          See 'llmspool submit --help' for more information.

                        """)
                    exit(withError: ExitCode.validationFailure)
                }
                command = submit
            }
            if var async = command as? any AsyncParsableCommand { try await async.run() } else { try command.run() }
        } catch {
            let code = exitCode(for: error), message = fullMessage(for: error)
            if code != .success, message.hasPrefix("Error: ") {
                Output.standardError("llmspool: error: " + message.dropFirst("Error: ".count) + "\n")
                exit(withError: code)
            }
            exit(withError: error)
        }
    }
}

/// `--spool DIR`, shared by every command that works on a spool.
struct SpoolOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The spool directory (env LLMSPOOL_SPOOL, default ./spool).", valueName: "DIR"))
    var spool: String?

    var path: String { spool ?? Environment.get("LLMSPOOL_SPOOL").flatMap { $0.isEmpty ? nil : $0 } ?? "./spool" }

    func open() throws -> Spool {
        do { return try Spool(path: path) } catch { throw Failed(error) }
    }
}

/// An error reported as `llmspool: error: MESSAGE` with its sysexits code.
struct Failed: Error, CustomStringConvertible {
    var message: String
    var code: Int32

    init(_ message: String, code: Int32) {
        self.message = message
        self.code = code
    }

    init(_ error: any Error) {
        switch error {
        case let e as Failed: self = e
        case let e as SpoolError: self.init(e.description, code: Failed.code(of: e))
        case let e as BatchEnqueueError: self.init(e.description, code: Failed.code(of: e.error))
        default: self.init(String(describing: error), code: ExitStatus.software)
        }
    }

    static func code(of e: SpoolError) -> Int32 {
        switch e {
        case .notASpool, .notFound: ExitStatus.noInput
        case .invalidJob, .idExists, .cannotRequeue: ExitStatus.dataError
        case .system(let s):
            s.isTemporary ? ExitStatus.temporary : s.errno == .noSuchFileOrDirectory ? ExitStatus.noInput : ExitStatus.ioError
        }
    }

    var description: String { message }

    /// Runs `body`, which creates what it names: a failed system call is an I/O error (74), even
    /// ENOENT (a path that cannot be made), which elsewhere means missing input (66).
    static func creating<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch SpoolError.system(let s) where !s.isTemporary {
            throw Failed(s.description, code: ExitStatus.ioError)
        }
    }
}

enum ExitStatus {
    static let usage: Int32 = 64
    static let dataError: Int32 = 65
    static let noInput: Int32 = 66
    static let unavailable: Int32 = 69
    static let software: Int32 = 70
    static let ioError: Int32 = 74
    static let temporary: Int32 = 75
}

/// Runs a command body, turning a thrown error into a message on stderr and a sysexits code.
func reporting(_ body: () throws -> Void) throws {
    do { try body() } catch let code as ExitCode {
        throw code
    } catch {
        let f = Failed(error)
        Output.error(f.message)
        throw ExitCode(f.code)
    }
}
