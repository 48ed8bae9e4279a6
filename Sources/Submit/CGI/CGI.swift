#if canImport(Glibc)
import Glibc
#endif
import Spool

/// The CGI program (RFC 3875): one request from the environment and standard input, one
/// response to standard output. Both `llmspool-cgi` and `llmspool cgi` run this.
public enum CGI {
    /// Handles the request of this process and returns the exit status (0 unless the response
    /// could not be written).
    public static func main(arguments: [String]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)  // a client that goes away is a failed write, not a killed process
        let env: (String) -> String? = { name in getenv(name).map { String(cString: $0) } }
        let configuration = Configuration.from(env: env, arguments: arguments)
        if let why = configuration.settingsError {
            StandardIO.drain(.standardInput, upTo: 16 << 20)
            return StandardIO.write(Handler.serverProblem(why).response.cgiBytes()) ? 0 : 1
        }
        let handler = Handler(configuration: configuration)
        let request: Request
        do { request = try Request.fromCGI(env) } catch {
            StandardIO.drain(.standardInput, upTo: 16 << 20)
            return StandardIO.write(error.response.cgiBytes()) ? 0 : 1
        }
        let body: Body = request.hasBody
            ? StandardIO.readBody(contentLength: request.contentLength, limit: configuration.maxBodyBytes)
            : .bytes([])
        if request.method == "GET", request.path.hasSuffix("/events") {
            if let response = handler.streamEvents(request, write: { StandardIO.write($0) }) {
                return StandardIO.write(response.cgiBytes()) ? 0 : 1
            }
            return 0
        }
        return StandardIO.write(handler.respond(request, body: body).cgiBytes()) ? 0 : 1
    }
}
