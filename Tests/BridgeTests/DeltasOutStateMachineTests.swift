import JSON
import Spool
import Testing

@testable import Bridge

@Suite("Deltas-out state machine")
struct DeltasOutStateMachineTests {
    typealias M = DeltasOutStateMachine

    /// A partial file's bytes, as the worker writes them: one JSON value a line.
    static func lines(_ values: [JSONValue]) -> [UInt8] { values.flatMap { $0.serialized() + [0x0A] } }

    static func restart(_ n: Int) -> JSONValue { .object(["restart": .object(["attempt": .integer(n), "at": .string("2026-12-05T00:00:00Z")])]) }

    /// The text of the deltas after the last restart.
    static func text(_ messages: [M.Message]) -> String {
        var t = ""
        for m in messages {
            switch m {
            case .delta(let s, _): t += s
            case .restart: t = ""
            case .end: break
            }
        }
        return t
    }

    /// Plans and "produces" everything of `bytes` read from the stream's position.
    static func drain(_ m: inout M, _ id: String, _ bytes: [UInt8], seq: inout Int) -> [M.Message] {
        let from = m.position(id)!.offset
        let read = Partial.parse(Array(bytes[from...]), at: from)
        let (planned, after) = m.plan(id, read)
        for p in planned {
            seq += 1
            m.produced(id, p, seq: seq, bytes: 10)
        }
        m.advance(id, to: after)
        return planned.map(\.message)
    }

    @Test("a stream read in two looks: deltas carry the offset past their line, a restart voids the text, and done counts the bytes since it")
    func deltasAndRestart() throws {
        var m = M()
        m.follow("j")
        var seq = 0
        let first = Self.lines([.string("Hello"), .string(", wor")])
        let all = first + Self.lines([Self.restart(2), .string("Hé"), .string("llo")])
        let a = Self.drain(&m, "j", first, seq: &seq)
        #expect(a == [.delta(text: "Hello", offset: 8), .delta(text: ", wor", offset: 16)])
        let b = Self.drain(&m, "j", all, seq: &seq)
        let restartEnd = try #require(all.firstIndex(of: 0x0A, after: 16)) + 1
        #expect(b.first == .restart(attempt: 2, offset: restartEnd))
        #expect(b.dropFirst().map(\.type) == ["delta", "delta"])
        // Offsets only grow: a consumer that drops what it has passed drops nothing here.
        let offsets = (a + b).compactMap { m -> Int? in
            switch m {
            case .delta(_, let o), .restart(_, let o): o
            case .end: nil
            }
        }
        #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count)
        if case .delta(_, let last) = b.last { #expect(last == all.count) }
        #expect(Self.text(a + b) == "Héllo")
        #expect(m.endMessage("j") == nil, "not ended yet")
        m.ended("j", .done)
        #expect(m.endMessage("j") == .end(.done, textBytes: "Héllo".utf8.count))
    }

    @Test("a half line waits for its newline; a line that is not JSON, or neither text nor restart, is passed over")
    func hostileLines() {
        var m = M()
        m.follow("j")
        var seq = 0
        var bytes = Self.lines([.string("a")]) + Array("not json\n".utf8) + Self.lines([.integer(7), .string("b")]) + Array("\"hal".utf8)
        let first = Self.drain(&m, "j", bytes, seq: &seq)
        #expect(first.map(\.type) == ["delta", "delta"])
        #expect(Self.text(first) == "ab")
        #expect(m.position("j")?.offset == bytes.count - 4, "stops before the half line")
        bytes += Array("f\"\n".utf8)
        let second = Self.drain(&m, "j", bytes, seq: &seq)
        #expect(second == [.delta(text: "half", offset: bytes.count)])
        #expect(m.position("j")?.textBytes == 6)
    }

    @Test("a long record goes in pieces cut between characters, with increasing offsets inside its line, the last at its end")
    func pieces() {
        var m = M(maxTextBytes: 8)
        m.follow("j")
        var seq = 0
        let text = "ab€cdéfgh𝄞ijklmnop"  // 1-, 2-, 3- and 4-byte characters
        let bytes = Self.lines([.string("x"), .string(text)])
        let out = Self.drain(&m, "j", bytes, seq: &seq)
        let pieces = out.dropFirst().compactMap { m -> (String, Int)? in
            if case .delta(let t, let o) = m { return (t, o) }
            return nil
        }
        #expect(pieces.count >= 3)
        #expect(pieces.map(\.0).joined() == text)
        #expect(pieces.allSatisfy { $0.0.utf8.count <= 8 && !$0.0.isEmpty })
        let offsets = [4] + pieces.map(\.1)
        #expect(zip(offsets, offsets.dropFirst()).allSatisfy { $0 < $1 }, "\(offsets)")
        #expect(pieces.last?.1 == bytes.count)
        #expect(M.split("", maxBytes: 8).isEmpty)
        #expect(M.split("𝄞𝄞", maxBytes: 4) == ["𝄞", "𝄞"])
    }

    @Test("producing stopped after a piece: the stream stays at the record, and the next plan gives the same pieces again")
    func stoppedMidRecord() {
        var m = M(maxTextBytes: 4)
        m.follow("j")
        let read = Partial.parse(Self.lines([.string("abcdefghij")]), at: 0)
        let (planned, after) = m.plan("j", read)
        #expect(planned.count == 3)
        #expect(planned.map { $0.after == nil } == [true, true, false])
        m.produced("j", planned[0], seq: 1, bytes: 1)
        #expect(m.position("j") == M.Position())
        let again = m.plan("j", read)
        #expect(again.messages == planned && again.after == after)
        for (i, p) in planned.enumerated() { m.produced("j", p, seq: 2 + i, bytes: 1) }
        #expect(m.position("j") == M.Position(offset: 13, textBytes: 10))
    }

    @Test("jobs take turns, each queued once; ended and changed jobs are queued; settled ids are remembered, a bounded number of them")
    func turns() {
        var m = M(maxSettled: 3)
        m.follow("a")
        m.follow("b")
        m.changed("a")
        m.changed("zzz")  // not followed: nothing
        #expect(m.next() == "a")
        m.requeue("a")
        #expect(m.next() == "b")
        #expect(m.next() == "a")
        #expect(m.next() == nil)
        m.ended("b", .failed)
        #expect(m.next() == "b")
        #expect(m.endMessage("b") == .end(.failed, textBytes: 0))
        m.settle("b")
        m.changed("b")
        #expect(!m.isFollowing("b") && m.isSettled("b") && m.next() == nil)
        for id in ["c", "d", "e"] { m.settle(id) }
        #expect(!m.isSettled("b"), "the oldest settled id is forgotten beyond the bound")
        #expect(m.isSettled("c") && m.isSettled("e"))
        // A stream settled while queued is skipped.
        m.follow("f")
        m.follow("g")
        m.settle("f")
        #expect(m.next() == "g")
    }

    @Test("in flight: bounded by count and bytes; reports free the room, say which job and type, and an unknown report is ignored")
    func inFlight() {
        var m = M(maxInFlight: 2, maxInFlightBytes: 100)
        m.follow("j")
        #expect(m.hasRoom)
        m.sent("j", .delta(text: "x", offset: 4), seq: 1, bytes: 10)
        m.sent("j", .end(.done, textBytes: 1), seq: 2, bytes: 10)
        #expect(!m.hasRoom && m.inFlight == 2)
        #expect(m.delivered(seq: 1, ok: true) == .confirmed(id: "j", type: "delta"))
        #expect(m.hasRoom)
        #expect(m.delivered(seq: 2, ok: false) == .failed(id: "j", type: "done"))
        #expect(m.delivered(seq: 2, ok: true) == .unknown)
        m.sent("j", .delta(text: "big", offset: 9), seq: 3, bytes: 100)
        #expect(!m.hasRoom && m.inFlightBytes == 100)
    }

    @Test("the messages' values: small JSON objects, jobId and type first")
    func values() throws {
        #expect(
            String(decoding: M.Message.delta(text: "a \"b\"", offset: 12).value(jobId: "j1"), as: UTF8.self)
                == #"{"jobId":"j1","type":"delta","offset":12,"text":"a \"b\""}"#)
        #expect(
            String(decoding: M.Message.restart(attempt: 2, offset: 40).value(jobId: "j1"), as: UTF8.self)
                == #"{"jobId":"j1","type":"restart","offset":40,"attempt":2}"#)
        #expect(
            String(decoding: M.Message.restart(attempt: nil, offset: 40).value(jobId: "j1"), as: UTF8.self)
                == #"{"jobId":"j1","type":"restart","offset":40,"attempt":null}"#)
        #expect(String(decoding: M.Message.end(.done, textBytes: 5).value(jobId: "j1"), as: UTF8.self) == #"{"jobId":"j1","type":"done","textBytes":5}"#)
        #expect(String(decoding: M.Message.end(.failed, textBytes: 5).value(jobId: "j1"), as: UTF8.self) == #"{"jobId":"j1","type":"failed"}"#)
    }

    @Test("a job that ended before its file could be read: its answer in pieces whose offsets are byte positions in the text, then done")
    func whole() {
        let m = M(maxTextBytes: 4)
        #expect(m.whole("abcdéf") == [.delta(text: "abcd", offset: 4), .delta(text: "éf", offset: 7), .end(.done, textBytes: 7)])
        #expect(m.whole("") == [.end(.done, textBytes: 0)])
    }

    @Test("a read that had to start over (the file shorter than what was read) counts the text afresh")
    func reset() {
        var m = M()
        m.follow("j")
        var seq = 0
        _ = Self.drain(&m, "j", Self.lines([.string("abc"), .string("def")]), seq: &seq)
        let read = Partial.parse(Self.lines([.string("x")]), at: 0, reset: true)
        let (planned, after) = m.plan("j", read)
        #expect(planned.map(\.message) == [.delta(text: "x", offset: 4)])
        #expect(after == M.Position(offset: 4, textBytes: 1))
    }
}

extension Array where Element == UInt8 {
    fileprivate func firstIndex(of byte: UInt8, after start: Int) -> Int? { self[start...].firstIndex(of: byte) }
}
