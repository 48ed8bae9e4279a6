import ArgumentParser
import Spool

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show where a job is and its document.",
        discussion: """
            --json prints {"jobId":ID,"state":"new|cur|done|failed","file":PATH,"document":{...}} with, \
            when done, "response", and when failed, "error". Exit 66 when there is no such job.
            """)

    @OptionGroup var options: SpoolOptions

    @Argument(help: "The job id.")
    var id: String

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if let p = JobID.problem(id) { throw ValidationError("job id \"\(id)\" \(p)") }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            guard let loc = try spool.find(id) else { throw SpoolError.notFound(id: id) }
            let file = spool.path(of: loc.name, in: loc.state)
            let document = try? JSONParser.parse(loc.bytes)
            if json {
                var o: JSONObject = ["jobId": .string(id), "state": .string(loc.state.rawValue), "file": .string(file)]
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
            Output.line("job     \(id)")
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
