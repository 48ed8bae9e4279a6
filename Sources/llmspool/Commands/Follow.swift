import JSON
import Settings
import Spool

/// Prints a job's answer as it is written (`submit --wait --stream`, `show --follow`): the text on
/// standard output as it comes, or with `json` one event per line
/// (`{"event":"delta","text":…,"offset":N}`, `{"event":"restart",…}`, then `{"event":"done",…}` or
/// `{"event":"failed",…}`). A restart (a new attempt after a failed one) is said on standard error
/// in text mode: the text after it replaces the text before.
enum Follow {
    static func run(_ id: String, spool: Spool, json: Bool, timeout: String?) throws {
        fflushStdout()
        var attemptText: [UInt8] = []
        let ms = timeout.flatMap(HumanDuration.parseMilliseconds) ?? -1
        let state = try spool.follow(id, timeoutMilliseconds: ms) { event in
            switch event {
            case .delta(let text, let offset):
                attemptText += Array(text.utf8)
                if json {
                    Output.line(JSONValue.object(["event": .string("delta"), "text": .string(text), "offset": .integer(offset)]).text)
                    fflushStdout()
                } else {
                    Output.standardOutput(Array(text.utf8))
                }
            case .restart(let attempt, let offset):
                attemptText = []
                if json {
                    Output.line(
                        JSONValue.object([
                            "event": .string("restart"), "attempt": attempt.map(JSONValue.integer) ?? .null,
                            "offset": .integer(offset),
                        ]).text)
                    fflushStdout()
                } else {
                    Output.standardError(
                        "\n[llmspool: the answer restarts" + (attempt.map { " (attempt \($0))" } ?? "")
                            + "; the text above is void]\n")
                }
            }
        }
        guard let state else { throw Failed("job \(id) is not finished after \(timeout ?? "")", code: ExitStatus.temporary) }
        guard let loc = try spool.find(id), let doc = try? JSONParser.parse(loc.bytes) else { throw SpoolError.notFound(id: id) }
        if state == .done {
            let response = Array((doc["response"]?.stringValue ?? "").utf8)
            if json {
                Output.line(
                    JSONValue.object(["event": .string("done"), "jobId": .string(id), "response": .string(String(decoding: response, as: UTF8.self))]).text)
                return
            }
            // The tail may be only in the result: the partial file goes once the result is durable.
            if response.starts(with: attemptText) {
                Output.standardOutput(Array(response[attemptText.count...]))
            } else {
                if !attemptText.isEmpty { Output.standardError("\n[llmspool: the final answer differs from the text above; it follows]\n") }
                Output.standardOutput(response)
            }
            Output.standardOutput([0x0A])
        } else {
            let e = doc["error"]
            if json { Output.line(JSONValue.object(["event": .string("failed"), "jobId": .string(id), "error": e ?? .null]).text) }
            if !json, !attemptText.isEmpty { Output.standardOutput([0x0A]) }
            throw Failed(
                "job \(id) failed: \(e?["kind"]?.stringValue ?? "?"): \(e?["message"]?.stringValue ?? "")",
                code: ExitStatus.unavailable)
        }
    }
}
