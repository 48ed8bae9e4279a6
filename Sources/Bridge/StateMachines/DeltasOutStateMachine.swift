import JSON
import Spool

/// Deltas out: which streamed jobs are followed, where each one's partial file is read next, the
/// messages a read becomes, and what is in flight. Pure: ``DeltasOut`` reads and produces.
///
/// Per job it keeps a position: the offset in the partial file just past the last record
/// produced, and the bytes of text since the last `restart` (the `textBytes` of the `done`
/// message). Jobs with something to read wait in a queue and get one read each in turn, so
/// that one job's long backlog does not hold up the others. Ids of jobs finished (or not to be
/// published) are remembered for a while, so that a late event about one is not taken for a
/// new stream.
struct DeltasOutStateMachine {
    /// How a followed job ended.
    enum Ending: String, Equatable, Sendable {
        case done, failed
    }

    /// One message on the deltas topic (docs/bridge.md, "Deltas out").
    enum Message: Equatable {
        /// Text, and the partial file's offset just past it.
        case delta(text: String, offset: Int)
        /// What came before is void: a new attempt (`attempt` when the worker said which).
        case restart(attempt: Int?, offset: Int)
        /// The job is in `done/` (with the bytes of text since the last restart) or `failed/`.
        case end(Ending, textBytes: Int)

        var type: String {
            switch self {
            case .delta: "delta"
            case .restart: "restart"
            case .end(let e, _): e.rawValue
            }
        }

        /// The message's value: a small JSON object (`jobId` and `type` first).
        func value(jobId: String) -> [UInt8] {
            var o: JSONObject = ["jobId": .string(jobId), "type": .string(type)]
            switch self {
            case .delta(let text, let offset):
                o["offset"] = .integer(offset)
                o["text"] = .string(text)
            case .restart(let attempt, let offset):
                o["offset"] = .integer(offset)
                o["attempt"] = attempt.map(JSONValue.integer) ?? .null
            case .end(.done, let textBytes):
                o["textBytes"] = .integer(textBytes)
            case .end(.failed, _):
                break
            }
            return JSONValue.object(o).serialized()
        }
    }

    /// Where a stream stands: the next read starts at `offset`.
    struct Position: Equatable {
        var offset = 0
        /// UTF-8 bytes of text since the last restart.
        var textBytes = 0
    }

    /// A message to produce, and where the stream stands once it is: nil for a piece of a long
    /// record that is not its last (a read stopped there starts again at the record).
    struct Planned: Equatable {
        var message: Message
        var after: Position?
    }

    struct Stream {
        var position = Position()
        var ending: Ending?
    }

    /// The most text in one `delta` (UTF-8 bytes): a longer record is sent in pieces, so that a
    /// message stays below Kafka's default `message.max.bytes` (1,000,000) even when every
    /// character is escaped (`\u0001` takes 6 bytes).
    let maxTextBytes: Int
    /// Messages and bytes produced and not yet confirmed, at most: beyond that, reading waits for
    /// delivery reports (the producer's queue is shared with jobs, results and dead letters).
    let maxInFlight: Int
    let maxInFlightBytes: Int
    /// How many finished (or ignored) ids are remembered.
    let maxSettled: Int

    init(maxTextBytes: Int = 128 << 10, maxInFlight: Int = 10_000, maxInFlightBytes: Int = 32 << 20, maxSettled: Int = 10_000) {
        precondition(maxTextBytes >= 4, "a piece must hold any one character")
        self.maxTextBytes = maxTextBytes
        self.maxInFlight = maxInFlight
        self.maxInFlightBytes = maxInFlightBytes
        self.maxSettled = maxSettled
    }

    private(set) var streams: [String: Stream] = [:]
    private var queue: [String] = []
    private var queueHead = 0
    private var queued: Set<String> = []
    private var settled: Set<String> = []
    private var settledOrder: [String] = []
    private var settledHead = 0
    private var sending: [Int: (id: String, type: String, bytes: Int)] = [:]
    private(set) var inFlightBytes = 0

    var inFlight: Int { sending.count }
    /// Whether more may be produced now.
    var hasRoom: Bool { sending.count < maxInFlight && inFlightBytes < maxInFlightBytes }
    /// Whether a followed job waits for a read.
    var hasQueued: Bool { queueHead < queue.count }

    func isFollowing(_ id: String) -> Bool { streams[id] != nil }
    /// Finished or ignored lately: an event about it is not a new stream.
    func isSettled(_ id: String) -> Bool { settled.contains(id) }
    func position(_ id: String) -> Position? { streams[id]?.position }
    var followed: [String] { Array(streams.keys) }

    // MARK: following

    /// Starts following `id` from the start of its partial file.
    mutating func follow(_ id: String) {
        guard streams[id] == nil else { return }
        streams[id] = Stream()
        enqueue(id)
    }

    /// Its partial file changed (or may have): read it.
    mutating func changed(_ id: String) {
        if streams[id] != nil { enqueue(id) }
    }

    /// Its result (or dead letter) is durable: read what is left, then end.
    mutating func ended(_ id: String, _ ending: Ending) {
        guard streams[id] != nil else { return }
        streams[id]?.ending = ending
        enqueue(id)
    }

    /// The next job to read, in turn.
    mutating func next() -> String? {
        while queueHead < queue.count {
            let id = queue[queueHead]
            queueHead += 1
            queued.remove(id)
            if queueHead > 64, queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            if streams[id] != nil { return id }
        }
        return nil
    }

    /// Read it again (there is more, or producing stopped).
    mutating func requeue(_ id: String) { enqueue(id) }

    private mutating func enqueue(_ id: String) {
        guard !queued.contains(id) else { return }
        queued.insert(id)
        queue.append(id)
    }

    /// Stops following `id` (ended, or its file is gone) and remembers it as settled.
    mutating func settle(_ id: String) {
        streams[id] = nil
        guard !settled.contains(id) else { return }
        settled.insert(id)
        settledOrder.append(id)
        if settledOrder.count - settledHead > maxSettled {
            settled.remove(settledOrder[settledHead])
            settledHead += 1
            if settledHead * 2 > settledOrder.count {
                settledOrder.removeFirst(settledHead)
                settledHead = 0
            }
        }
    }

    // MARK: messages

    /// The messages of records read from `id`'s partial file, and where the stream stands after
    /// all of them (past lines that were skipped, too).
    func plan(_ id: String, _ read: Partial.Read) -> (messages: [Planned], after: Position) {
        guard var p = streams[id]?.position else { return ([], Position()) }
        // The file is never truncated while the job lives; a read that had to start over found it
        // shorter than what was read (someone else's doing): count the text afresh.
        if read.reset { p = Position() }
        var out: [Planned] = []
        var start = p.offset
        for (record, end) in read.records {
            switch record {
            case .restart(let attempt):
                p = Position(offset: end, textBytes: 0)
                out.append(Planned(message: .restart(attempt: attempt, offset: end), after: p))
            case .delta(let text):
                let pieces = Self.split(text, maxBytes: maxTextBytes)
                p.offset = end
                p.textBytes += text.utf8.count
                for (i, piece) in pieces.enumerated() {
                    let last = i == pieces.count - 1
                    // Pieces of one record get increasing offsets within it, the last its end.
                    let offset = last ? end : start + (end - start) * (i + 1) / pieces.count
                    out.append(Planned(message: .delta(text: piece, offset: offset), after: last ? p : nil))
                }
            }
            start = end
        }
        p.offset = max(p.offset, read.end)
        return (out, p)
    }

    /// The messages of a job whose partial file was gone before it could be opened (it ran from
    /// start to end between two looks): its whole answer, from the result, as deltas whose
    /// offsets are byte positions in the text, then `done`.
    func whole(_ text: String) -> [Message] {
        var out: [Message] = []
        var at = 0
        for piece in Self.split(text, maxBytes: maxTextBytes) {
            at += piece.utf8.count
            out.append(.delta(text: piece, offset: at))
        }
        return out + [.end(.done, textBytes: text.utf8.count)]
    }

    /// Produced: in flight until its delivery report; the stream moves on.
    mutating func produced(_ id: String, _ planned: Planned, seq: Int, bytes: Int) {
        sent(id, planned.message, seq: seq, bytes: bytes)
        if let after = planned.after { streams[id]?.position = after }
    }

    /// Produced, outside any stream (``whole(_:)``'s messages, an end).
    mutating func sent(_ id: String, _ message: Message, seq: Int, bytes: Int) {
        sending[seq] = (id, message.type, bytes)
        inFlightBytes += bytes
    }

    /// Every message of a read was produced: the stream stands past it.
    mutating func advance(_ id: String, to position: Position) {
        streams[id]?.position = position
    }

    /// Passes over a line that is too long to publish (the stream's text is then incomplete).
    mutating func skip(_ id: String, to offset: Int) {
        guard let p = streams[id]?.position, offset > p.offset else { return }
        streams[id]?.position.offset = offset
    }

    /// After a read that reached the end of the file: the last message when the job has ended.
    func endMessage(_ id: String) -> Message? {
        guard let s = streams[id], let ending = s.ending else { return nil }
        return .end(ending, textBytes: s.position.textBytes)
    }

    // MARK: delivery reports

    enum Delivery: Equatable {
        case confirmed(id: String, type: String)
        case failed(id: String, type: String)
        case unknown
    }

    /// A delivery report. A failed message is not sent again (the deltas are a courtesy: the
    /// answer is the result); the `done` message's `textBytes` lets a consumer see the gap.
    mutating func delivered(seq: Int, ok: Bool) -> Delivery {
        guard let s = sending.removeValue(forKey: seq) else { return .unknown }
        inFlightBytes -= s.bytes
        return ok ? .confirmed(id: s.id, type: s.type) : .failed(id: s.id, type: s.type)
    }

    // MARK: helpers

    /// `text` in pieces of at most `maxBytes` UTF-8 bytes, cut between characters (Unicode
    /// scalars); none for empty text.
    static func split(_ text: String, maxBytes: Int) -> [String] {
        let bytes = Array(text.utf8)
        guard bytes.count > maxBytes else { return bytes.isEmpty ? [] : [text] }
        var pieces: [String] = []
        var start = 0
        while start < bytes.count {
            var end = min(bytes.count, start + maxBytes)
            // Not inside a scalar: back off continuation bytes (10xxxxxx).
            while end < bytes.count, end > start + 1, bytes[end] & 0xC0 == 0x80 { end -= 1 }
            pieces.append(String(decoding: bytes[start..<end], as: UTF8.self))
            start = end
        }
        return pieces
    }
}
