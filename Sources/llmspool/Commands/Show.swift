import ArgumentParser
import JSON
import Settings
import Spool

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show where a job is and its document.",
        discussion: """
            ID is a job id, or the name a file was dropped under when it could not become a job \
            (it is dead-lettered under a new key: `show` then says the key). --json prints \
            {"jobId":ID,"state":"new|cur|done|failed","file":PATH,"document":{...}} with, when done, \
            "response", when failed, "error", and for a dead letter found by its dropped name, \
            "droppedAs". Exit 66 when there is no such job. --follow prints the answer as it is \
            written until the job ends, then a newline (exit 0), or the reason it failed (exit 69); \
            with --json one event per line: {"event":"delta","text":…,"offset":N} ("offset" is \
            absent for text taken from the result), {"event":"restart","attempt":N}, then \
            {"event":"done","response":…} or {"event":"failed","error":{…}}.
            """)

    @OptionGroup var options: SpoolOptions

    @Argument(help: "The job id, or the name a rejected file was dropped under.")
    var id: String

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Print the answer as it is written until the job ends (with --json: one event per line).")
    var follow = false

    func validate() throws {
        if id.isEmpty || id.contains("/") { throw ValidationError("job id \"\(id)\" is not a job id or a file name") }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            let (loc, droppedAs) = try spool.locate(id)
            if follow, droppedAs == nil {
                try Follow.run(loc.id, spool: spool, json: json, timeout: nil)
                return
            }
            let file = spool.path(of: loc.name, in: loc.state)
            let document = try? JSONParser.parse(loc.bytes)
            if json {
                var o: JSONObject = ["jobId": .string(loc.id), "state": .string(loc.state.rawValue), "file": .string(file)]
                if let droppedAs { o["droppedAs"] = .string(droppedAs) }
                if let document {
                    if loc.state == .done, let r = document["response"] { o["response"] = r }
                    if loc.state == .failed, let e = document["error"] { o["error"] = e }
                    o["document"] = document
                } else {
                    o["document"] = .null
                    o["problem"] = .string("the file is not valid JSON (\(loc.bytes.count) bytes)")
                }
                Output.line(JSONValue.object(o).text)
                return
            }
            Output.line("job     \(loc.id)" + (droppedAs.map { " (dead-lettered under this key; dropped as \($0))" } ?? ""))
            Output.line("state   \(loc.state.rawValue)")
            Output.line("file    \(file)")
            Output.line("age     \(HumanDuration.format(milliseconds: max(0, Timestamp.nowMilliseconds() - loc.modifiedMilliseconds)))")
            if loc.state == .done, let r = document?["response"]?.stringValue { Output.line("response\n\(r)") }
            if loc.state == .failed, let e = document?["error"] {
                Output.line("error   \(e["kind"]?.stringValue ?? "?"): \(e["message"]?.stringValue ?? "")")
            }
            Output.line("document")
            Output.line(document?.prettyText() ?? "(not valid JSON, \(loc.bytes.count) bytes)")
        }
    }
}

extension Spool {
    /// A job by its id, else the newest dead letter of a file dropped as `name` (with that name).
    /// When several files were dropped under the name, a note on stderr gives the other keys.
    func locate(_ name: String) throws -> (JobLocation, droppedAs: String?) {
        if let loc = try find(name) { return (loc, nil) }
        let dead = try deadLetters(droppedAs: name)
        guard let newest = dead.last else {
            let why = JobID.problem(name).map { " (not a job id: it \($0))" } ?? ""
            throw Failed("no job with id \(name)\(why), and no dead letter of a file dropped as \(name)", code: ExitStatus.noInput)
        }
        if dead.count > 1 {
            Output.note(
                "\(dead.count) files dropped as \(name) were dead-lettered; showing the newest, \(newest.id); the others: "
                    + dead.dropLast().map(\.id).joined(separator: ", "))
        }
        return (newest, name)
    }
}
