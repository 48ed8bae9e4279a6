import Basics
public import JSON
public import Spool

/// Server-Sent Events for one job: pure formatting and the resume rule.
///
/// Event ids are the job's stage: `1` queued, `2` running (or forwarded to another host over Kafka), `3` finished (done, failed or
/// cancelled). A client that reconnects with `Last-Event-ID: N` gets only stages after N; one
/// that has seen stage 3 gets `204 No Content`, which tells an `EventSource` to stop.
/// A job given back to `new/` after its worker died does not go back a stage.
public enum EventStream {
    public static let finalStage = 3

    public static func stage(of state: SpoolState) -> Int {
        switch state {
        case .tmp, .new: 1
        case .cur, .forwarded: 2
        case .done, .failed: 3
        }
    }

    /// The stage a `Last-Event-ID` header names; 0 for none or an id this stream never sent.
    public static func resumeStage(_ lastEventID: String?) -> Int { resumePoint(lastEventID).stage }

    /// Where a `Last-Event-ID` resumes: the stage, and for a `delta`/`restart` id (`2.OFFSET`) the
    /// byte offset in the job's partial file after the last record the client got (else 0).
    public static func resumePoint(_ lastEventID: String?) -> (stage: Int, offset: Int) {
        guard let raw = lastEventID?.trimmingSpaces() else { return (0, 0) }
        if raw.hasPrefix("2."), let offset = Int(raw.dropFirst(2)), offset >= 0, offset <= 1 << 40 { return (2, offset) }
        guard let n = Int(raw), (1...finalStage).contains(n) else { return (0, 0) }
        return (n, 0)
    }

    /// The events of records read from a job's partial file: `delta` with `{"text": …}` and
    /// `restart` with `{"attempt": N}`, each with the id `2.OFFSET` (the offset just past it).
    /// A read that had to start over (`reset`: the client's offset is not in this file) begins
    /// with a `restart` event.
    public static func events(_ read: Partial.Read) -> [UInt8] {
        var out: [UInt8] = []
        if read.reset { out += Array("id: 2.0\nevent: restart\ndata: {\"attempt\":null}\n\n".utf8) }
        for (record, end) in read.records {
            switch record {
            case .delta(let text):
                out += Array("id: 2.\(end)\nevent: delta\ndata: ".utf8) + JSONValue.object(["text": .string(text)]).serialized()
            case .restart(let attempt):
                out +=
                    Array("id: 2.\(end)\nevent: restart\ndata: ".utf8)
                    + JSONValue.object(["attempt": attempt.map(JSONValue.integer) ?? .null]).serialized()
            }
            out += Array("\n\n".utf8)
        }
        return out
    }

    /// What a stream that has sent `sent` (since the last restart) still owes of the final
    /// `response`, read from the result after the partial file is gone (``Partial/tail(of:after:)``):
    /// a `delta` with the rest when `sent` is a prefix of it, else a `restart` and the whole
    /// response. No `id:` (there is no offset in a file that is gone); the final event follows at once.
    public static func tail(of response: String, after sent: String) -> [UInt8] {
        let tail = Partial.tail(of: response, after: sent)
        let delta = Array("event: delta\ndata: ".utf8) + JSONValue.object(["text": .string(tail.text)]).serialized() + Array("\n\n".utf8)
        return tail.restart ? Array("event: restart\ndata: {\"attempt\":null}\n\n".utf8) + delta : delta
    }

    /// One event: `id:`, `event:`, `data:` (the job's view, on one line), blank line.
    public static func event(stage: Int, name: String, data: JSONValue) -> [UInt8] {
        Array("id: \(stage)\nevent: \(name)\ndata: ".utf8) + data.serialized() + Array("\n\n".utf8)
    }

    /// The stream's first bytes: how long a client waits before reconnecting.
    public static let preamble: [UInt8] = Array("retry: 2000\n\n".utf8)

    /// A comment line that keeps proxies and clients from timing the stream out.
    public static let heartbeat: [UInt8] = Array(": heartbeat\n\n".utf8)

    /// The CGI header block of a stream (no Content-Length: the body runs until the job ends).
    public static let headers: [UInt8] = Array(
        ("Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            + "X-Accel-Buffering: no\r\n\r\n").utf8)
}
