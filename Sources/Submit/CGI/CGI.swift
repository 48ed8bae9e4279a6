import Spool

#if canImport(Glibc)
import Glibc
#endif

/// The CGI program (RFC 3875): one request from the environment and standard input, one
/// response to standard output. Both `llmspool-cgi` and `llmspool cgi` run this.
public enum CGI {
    /// Handles the request of this process and returns the exit status (0 unless the response
    /// could not be written). It takes no arguments on purpose: a server may build the command
    /// line from the client's query string (Apache does, for one without `=`), so settings come
    /// from the environment and the configuration file only.
    public static func main() -> Int32 {
        signal(SIGPIPE, SIG_IGN)  // a client that goes away is a failed write, not a killed process
        let env: (String) -> String? = { name in getenv(name).map { String(cString: $0) } }
        let configuration = Configuration.from(env: env)
        if let why = configuration.settingsError {
            StandardIO.drain(.standardInput, upTo: 16 << 20)
            return StandardIO.write(Handler.serverProblem(why).response.cgiBytes()) ? 0 : 1
        }
        let handler = Handler(configuration: configuration)
        var request: Request
        do { request = try Request.fromCGI(env) } catch {
            StandardIO.drain(.standardInput, upTo: 16 << 20)
            return StandardIO.write(error.response.cgiBytes()) ? 0 : 1
        }
        // HEAD is GET without the body (RFC 9110 9.3.2): same status and headers.
        let head = request.method == "HEAD"
        if head { request.method = "GET" }
        let out: ([UInt8]) -> Bool = head ? headOnly() : { StandardIO.write($0) }
        let route = (try? Route.resolve(method: request.method, path: request.path))?.route
        let limit = route == .uploadFile ? configuration.maxFileBytes : configuration.maxBodyBytes  // a Batch API upload
        let body: Body = request.hasBody ? StandardIO.readBody(contentLength: request.contentLength, limit: limit) : .bytes([])
        if case .events? = route {
            if let response = handler.streamEvents(request, write: out) {
                return out(response.cgiBytes()) || head ? 0 : 1
            }
            return 0
        }
        return out(handler.respond(request, body: body).cgiBytes()) || head ? 0 : 1
    }

    /// A writer that passes on the header block (up to the first blank line) and then reports
    /// the client gone, so that a HEAD request gets no body and an event stream ends at once.
    static func headOnly() -> ([UInt8]) -> Bool {
        var seen: [UInt8] = []
        return { bytes in
            seen += bytes
            guard let end = StandardIO.endOfHeaders(seen) else { return true }
            _ = StandardIO.write(Array(seen[..<end]))
            return false
        }
    }
}
