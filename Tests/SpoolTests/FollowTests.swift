import Foundation
import JSON
import Testing

@testable import Spool

/// `Spool.follow` against partial files and results written by hand: the text it emits since the
/// last restart always adds up to the result's response, also when the partial file went early.
@Suite("Following a partial answer to its result")
struct FollowTests {
    func line(_ text: String) -> String { String(decoding: JSONValue.string(text).serialized(), as: UTF8.self) + "\n" }

    /// Writes job `id`'s partial file (when given) and its result, then follows it from offset 0.
    func follow(partial: String?, response: String) throws -> (events: [FollowEvent], state: SpoolState?) {
        let s = try TestSpool()
        defer { s.remove() }
        let id = "job-1"
        if let partial { s.drop(Partial.fileName(id), Array(partial.utf8), into: .cur) }
        let result = JSONValue.object(["jobId": .string(id), "status": .string("done"), "response": .string(response)])
        s.drop(id + ".json", result.serialized(), into: .done)
        var events: [FollowEvent] = []
        let loc = try s.spool.follow(id, timeoutMilliseconds: 5000) { events.append($0) }
        return (events, loc?.state)
    }

    /// The text after the last restart.
    func text(_ events: [FollowEvent]) -> String {
        var t = ""
        for e in events {
            switch e {
            case .delta(let d, _): t += d
            case .restart: t = ""
            }
        }
        return t
    }

    @Test("the partial file holds the whole answer: its records, nothing from the result")
    func complete() throws {
        let (events, state) = try follow(partial: line("hello") + line(" world"), response: "hello world")
        #expect(state == .done)
        #expect(events == [.delta("hello", offset: 8), .delta(" world", offset: 17)])
    }

    @Test("the partial file has only the start (the reader was behind when it went): the rest comes from the result, without offset")
    func tail() throws {
        let (events, _) = try follow(partial: line("a") + "{\"restart\":{\"attempt\":2}}\n" + line("hel"), response: "hello")
        #expect(events.last == .delta("lo", offset: nil))
        #expect(text(events) == "hello")
    }

    @Test("the partial file is gone: the whole response, as one delta")
    func gone() throws {
        let (events, state) = try follow(partial: nil, response: "all of it")
        #expect(state == .done)
        #expect(events == [.delta("all of it", offset: nil)])
    }

    @Test("the text so far is not the start of the response (a restart the file no longer shows): restart, then the whole response")
    func unseenRestart() throws {
        let (events, _) = try follow(partial: line("first attempt"), response: "second")
        #expect(events.suffix(2) == [.restart(attempt: nil, offset: nil), .delta("second", offset: nil)])
        #expect(text(events) == "second")
    }

    @Test(
        "Partial.tail: the rest after a prefix, else a restart and all",
        arguments: [
            ("hello", "he", false, "llo"), ("hello", "", false, "hello"), ("hello", "hello", false, ""), ("hello", "x", true, "hello"),
            ("ünï", "ü", false, "nï"),
        ])
    func tailRule(_ response: String, _ sent: String, _ restart: Bool, _ rest: String) {
        let t = Partial.tail(of: response, after: sent)
        #expect(t.restart == restart && t.text == rest)
    }
}
