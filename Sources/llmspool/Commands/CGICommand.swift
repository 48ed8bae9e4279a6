import ArgumentParser
import Submit

/// `llmspool cgi`: the submit endpoint as a CGI program, for servers pointed at `llmspool`
/// itself (through a one-line wrapper). `llmspool-cgi` runs the same code and starts faster.
struct CGICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cgi",
        abstract: "Answer one HTTP request as a CGI program (RFC 3875): POST/GET /jobs, GET/DELETE /jobs/ID, GET /jobs/ID/events.",
        discussion: """
            Run by a web server, once per request. Settings come from the environment the server \
            passes: LLMSPOOL_SPOOL, LLMSPOOL_TOKENS, LLMSPOOL_TENANT, LLMSPOOL_MAX_BODY, \
            LLMSPOOL_MAX_WAITING, LLMSPOOL_COUNT_CACHE, LLMSPOOL_HEARTBEAT, LLMSPOOL_STREAM_MAX (see \
            docs/cgi.md). With LLMSPOOL_CONFIG set, the configuration file's spool and "cgi" section \
            are read first and the variables override them (docs/configuration.md). \
            The llmspool-cgi executable is the same program without this command's start-up cost. \
            No setting is taken from the command line: a server may build it from the client's query string.
            """
    )

    /// Servers may pass an ISINDEX-style query string as arguments (RFC 3875 4.4): they are the
    /// client's, so they are ignored (under a server, `LLMSpool.main` never parses them at all).
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var ignored: [String] = []

    func run() throws {
        let status = CGI.main()
        if status != 0 { throw ExitCode(status) }
    }
}
