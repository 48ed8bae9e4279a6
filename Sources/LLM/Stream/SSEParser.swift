/// One Server-Sent Event: its name (`message` when the server gave none), its data (`data:` lines
/// joined by LF) and its `id:` if any.
public struct SSEEvent: Sendable, Equatable {
    public var event: String
    public var data: String
    public var id: String?

    public init(event: String = "message", data: String, id: String? = nil) {
        self.event = event
        self.data = data
        self.id = id
    }
}

/// An incremental `text/event-stream` parser (the WHATWG rules): bytes go in as they arrive, cut
/// anywhere; events come out when their blank line has arrived.
///
/// Lines end with CRLF, LF or CR (a CRLF cut between its two bytes is one line end). Lines
/// starting with `:` are comments. `data:` lines accumulate; `event:` names the event; `id:` is
/// kept; other fields are ignored. One space after the colon is dropped. Everything from the
/// server is bounded: a line longer than ``maxLineBytes`` or an event's data longer than
/// ``maxEventBytes`` is an error, so memory stays linear in those limits and the cost linear in
/// the input.
public struct SSEParser: Sendable {
    public struct Overflow: Error, Sendable, Equatable, CustomStringConvertible {
        public var limit: Int
        public var what: String
        public var description: String { "\(what) is longer than \(limit) bytes" }
    }

    public let maxLineBytes: Int
    public let maxEventBytes: Int
    private var line: [UInt8] = []
    private var afterCR = false
    private var data: [UInt8] = []
    private var hasData = false
    private var eventName: String?
    private var lastID: String?
    /// Bytes fed so far.
    public private(set) var bytesFed = 0

    public init(maxLineBytes: Int = 1 << 20, maxEventBytes: Int = 4 << 20) {
        self.maxLineBytes = maxLineBytes
        self.maxEventBytes = maxEventBytes
    }

    /// Feeds `bytes`; calls `emit` for each event completed by them, in order. `emit` returns
    /// false to stop: the rest of `bytes` is then dropped and `feed` returns false.
    @discardableResult
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (SSEEvent) -> Bool) throws(Overflow) -> Bool {
        bytesFed += bytes.count
        var start = 0
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if afterCR {
                afterCR = false
                if b == 0x0A {  // the LF of a CRLF whose CR ended the last feed or the last line
                    i += 1
                    start = i
                    continue
                }
            }
            if b == 0x0A || b == 0x0D {
                try append(bytes, start, i)
                afterCR = b == 0x0D
                guard try endLine(emit) else { return false }
                i += 1
                start = i
                continue
            }
            i += 1
        }
        try append(bytes, start, n)
        return true
    }

    /// Convenience for arrays and tests: every event that `bytes` completes.
    public mutating func feed(_ bytes: [UInt8]) throws(Overflow) -> [SSEEvent] {
        var out: [SSEEvent] = []
        let result: Result<Bool, Overflow> = bytes.withUnsafeBytes { raw in
            Result { () throws(Overflow) in
                try feed(raw) {
                    out.append($0); return true
                }
            }
        }
        _ = try result.get()
        return out
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer, _ from: Int, _ to: Int) throws(Overflow) {
        guard to > from else { return }
        guard line.count + (to - from) <= maxLineBytes else {
            throw Overflow(limit: maxLineBytes, what: "a line of the event stream")
        }
        line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[from..<to]))
    }

    private mutating func endLine(_ emit: (SSEEvent) -> Bool) throws(Overflow) -> Bool {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            // A blank line dispatches the event, if it has data.
            if hasData {
                let event = SSEEvent(event: eventName ?? "message", data: String(decoding: data, as: UTF8.self), id: lastID)
                data.removeAll(keepingCapacity: true)
                hasData = false
                eventName = nil
                return emit(event)
            }
            eventName = nil
            return true
        }
        if line[0] == UInt8(ascii: ":") { return true }  // a comment
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.count
        var valueStart = min(colon + 1, line.count)
        if valueStart < line.count, line[valueStart] == 0x20 { valueStart += 1 }
        let field = line[0..<colon]
        let value = line[valueStart...]
        if field.elementsEqual("data".utf8) {
            guard data.count + value.count + 1 <= maxEventBytes else {
                throw Overflow(limit: maxEventBytes, what: "an event's data")
            }
            if hasData { data.append(0x0A) }
            data.append(contentsOf: value)
            hasData = true
        } else if field.elementsEqual("event".utf8) {
            eventName = String(decoding: value, as: UTF8.self)
        } else if field.elementsEqual("id".utf8), !value.contains(0) {
            lastID = String(decoding: value, as: UTF8.self)
        }
        return true
    }
}
