import JSON
import Settings
import Spool

/// Prints a job's answer as it is written (`submit --wait --stream`, `show --follow`): the text on
/// standard output as it comes, or with `json` one event per line
/// (`{"event":"delta","text":…,"offset":N}`, `{"event":"restart",…}`, then `{"event":"done",…}` or
/// `{"event":"failed",…}`). A restart (a new attempt after a failed one) is said on standard error
/// in text mode: the text after it replaces the text before. The text after the last restart is
/// always the whole answer: a follower that fell behind gets the rest from the result (a `delta`
/// without `offset`), see ``Spool/follow(_:from:timeoutMilliseconds:_:)``.
enum Follow {
    static func run(_ id: String, spool: Spool, json: Bool, timeout: String?) throws {
        fflushStdout()
        var printed = false
        let ms = timeout.flatMap(HumanDuration.parseMilliseconds) ?? -1
        let final = try spool.follow(id, timeoutMilliseconds: ms) { event in
            switch event {
            case .delta(let text, let offset):
                if json {
                    var o: JSONObject = ["event": .string("delta"), "text": .string(text)]
                    if let offset { o["offset"] = .integer(offset) }
                    Output.line(JSONValue.object(o).text)
                    fflushStdout()
                } else {
                    Output.standardOutput(Array(text.utf8))
                    printed = printed || !text.isEmpty
                }
            case .restart(let attempt, let offset):
                if json {
                    var o: JSONObject = ["event": .string("restart"), "attempt": attempt.map(JSONValue.integer) ?? .null]
                    if let offset { o["offset"] = .integer(offset) }
                    Output.line(JSONValue.object(o).text)
                    fflushStdout()
                } else {
                    Output.standardError(
                        "\n[llmspool: the answer restarts" + (attempt.map { " (attempt \($0))" } ?? "")
                            + "; the text above is void]\n")
                }
            }
        }
        guard let final else { throw Failed("job \(id) is not finished after \(timeout ?? "")", code: ExitStatus.temporary) }
        let doc = try? JSONParser.parse(final.bytes)
        if final.state == .done {
            if json {
                Output.line(
                    JSONValue.object([
                        "event": .string("done"), "jobId": .string(id), "response": .string(doc?["response"]?.stringValue ?? ""),
                    ]).text)
            } else {
                Output.standardOutput([0x0A])
            }
            return
        }
        let e = doc?["error"]
        if json { Output.line(JSONValue.object(["event": .string("failed"), "jobId": .string(id), "error": e ?? .null]).text) }
        if !json, printed { Output.standardOutput([0x0A]) }
        throw Failed(
            "job \(id) failed: \(e?["kind"]?.stringValue ?? "?"): \(e?["message"]?.stringValue ?? "")",
            code: ExitStatus.unavailable)
    }
}
