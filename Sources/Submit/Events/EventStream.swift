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
    public static func resumeStage(_ lastEventID: String?) -> Int {
        guard let raw = lastEventID?.trimmingSpaces(), let n = Int(raw), (1...finalStage).contains(n) else { return 0 }
        return n
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
    public static let headers: [UInt8] = Array((
        "Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            + "X-Accel-Buffering: no\r\n\r\n").utf8)
}
