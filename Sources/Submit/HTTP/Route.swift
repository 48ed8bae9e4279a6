import Spool

/// What a request asks for. The API is mounted anywhere: routing looks at the path's last
/// segments (`…/jobs`, `…/jobs/ID`, `…/jobs/ID/events`), and links keep the prefix before `jobs`.
public enum Route: Sendable, Equatable {
    case submit
    case list
    case show(id: String)
    case events(id: String)
    case cancel(id: String)
    // The OpenAI Batch API (docs/batch.md), under `…/v1/`.
    case uploadFile
    case file(id: String)
    case fileContent(id: String)
    case deleteFile(id: String)
    case createBatch
    case listBatches
    case batch(id: String)
    case cancelBatch(id: String)

    /// Routes a method and path, or says why not (404 for an unknown path or an impossible id,
    /// 405 with `Allow` for a wrong method). A trailing slash is ignored (`…/events/` is
    /// `…/events`). `HEAD` reaches here as `GET` (the CGI drops the body).
    public static func resolve(method: String, path: String) throws(Problem) -> (route: Route, base: String) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let n = segments.count
        func base(_ jobsIndex: Int) -> String { "/" + segments[0...jobsIndex].joined(separator: "/") }
        func checkID(_ id: String) throws(Problem) -> String {
            guard JobID.isValid(id) else { throw Problem.notFound(id.count > 140 ? String(id.prefix(140)) + "…" : id) }
            return id
        }
        func allow(_ methods: String) -> Problem {
            Problem(
                .methodNotAllowed, "method-not-allowed", "Method not allowed.",
                detail: "\(method) is not allowed here; use \(methods)", headers: ["Allow": methods])
        }
        // The Batch API: …/v1/files[/ID[/content]], …/v1/batches[/ID[/cancel]].
        func v1(_ k: Int, _ what: String) -> Bool { n >= k && segments[n - k] == "v1" && segments[n - k + 1] == what }
        if v1(2, "files") {
            guard method == "POST" else { throw allow("POST") }
            return (.uploadFile, base(n - 2))
        }
        if v1(3, "files") {
            let id = try checkID(segments[n - 1])
            switch method {
            case "GET": return (.file(id: id), base(n - 3))
            case "DELETE": return (.deleteFile(id: id), base(n - 3))
            default: throw allow("GET, HEAD, DELETE")
            }
        }
        if v1(4, "files"), segments[n - 1] == "content" {
            guard method == "GET" else { throw allow("GET, HEAD") }
            return (.fileContent(id: try checkID(segments[n - 2])), base(n - 4))
        }
        if v1(2, "batches") {
            switch method {
            case "POST": return (.createBatch, base(n - 2))
            case "GET": return (.listBatches, base(n - 2))
            default: throw allow("GET, HEAD, POST")
            }
        }
        if v1(3, "batches") {
            guard method == "GET" else { throw allow("GET, HEAD") }
            return (.batch(id: try checkID(segments[n - 1])), base(n - 3))
        }
        if v1(4, "batches"), segments[n - 1] == "cancel" {
            guard method == "POST" else { throw allow("POST") }
            return (.cancelBatch(id: try checkID(segments[n - 2])), base(n - 4))
        }
        if n >= 3, segments[n - 3] == "jobs", segments[n - 1] == "events" {
            guard method == "GET" else { throw allow("GET, HEAD") }
            return (.events(id: try checkID(segments[n - 2])), base(n - 3))
        }
        if n >= 2, segments[n - 2] == "jobs" {
            let id = try checkID(segments[n - 1])
            switch method {
            case "GET": return (.show(id: id), base(n - 2))
            case "DELETE": return (.cancel(id: id), base(n - 2))
            default: throw allow("GET, HEAD, DELETE")
            }
        }
        if n >= 1, segments[n - 1] == "jobs" {
            switch method {
            case "POST": return (.submit, base(n - 1))
            case "GET": return (.list, base(n - 1))
            default: throw allow("GET, HEAD, POST")
            }
        }
        throw Problem(
            .notFound, "not-found", "No such resource.",
            detail: "the API is POST/GET …/jobs, GET/DELETE …/jobs/ID, GET …/jobs/ID/events, and the Batch API under …/v1/files and …/v1/batches")
    }
}
