import JSON
import Testing

@testable import LLM

/// The `text/event-stream` parser and the chat stream decoder, without a network.
@Suite("Streamed answers: parsing")
struct StreamParsingTests {
    /// A recorded OpenAI-style stream (as api.openai.com sends it, usage included), with a comment,
    /// a multi-byte character cut by the split points below, and an empty first delta.
    static let recorded: String = {
        var s = ": OPENROUTER PROCESSING\n\n"
        s +=
            #"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
            + "\n\n"
        for piece in ["Hel", "lo", ", wörld", " — ", "naïve\ntext", " 🎉", "."] {
            s +=
                "data: "
                + JSONValue.object([
                    "id": .string("chatcmpl-1"), "object": .string("chat.completion.chunk"),
                    "choices": .array([.object(["index": .integer(0), "delta": .object(["content": .string(piece)]), "finish_reason": .null])]),
                ]).text + "\n\n"
        }
        s += #"data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"# + "\n\n"
        s += #"data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"# + "\n\n"
        s += "data: [DONE]\n\n"
        return s
    }()
    static let text = "Hello, wörld — naïve\ntext 🎉."

    static func decode(_ pieces: [[UInt8]]) throws -> (deltas: [String], completion: ChatCompletion) {
        var d = ChatStreamDecoder()
        var deltas: [String] = []
        for p in pieces { deltas += try d.feed(p) }
        return (deltas, try d.completion())
    }

    @Test func wholeStream() throws {
        let (deltas, c) = try Self.decode([Array(Self.recorded.utf8)])
        #expect(deltas.joined() == Self.text)
        #expect(deltas.count == 7)
        #expect(c.content == Self.text)
        #expect(c.finishReason == "stop")
        #expect(c.usage == TokenUsage(promptTokens: 9, completionTokens: 7, totalTokens: 16))
        #expect(c.model == "gpt-4o-mini")
        #expect(c.id == "chatcmpl-1")
    }

    @Test("every split of the recorded stream in two gives the same deltas, with LF and with CRLF", arguments: ["\n", "\r\n", "\r"])
    func everySplit(_ newline: String) throws {
        let bytes = Array(Self.recorded.replacingAll("\n\n", with: newline + newline).utf8)
        let whole = try Self.decode([bytes]).deltas
        #expect(whole.joined() == Self.text)
        for cut in 0...bytes.count {
            let (deltas, c) = try Self.decode([Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(deltas.joined() == Self.text, "split at \(cut)")
            #expect(c.content == Self.text)
        }
    }

    @Test("random splits into many pieces (1 byte each included) give the same text")
    func randomSplits() throws {
        let bytes = Array(Self.recorded.utf8)
        var rng = SplitMix(seed: 16)
        for round in 0..<300 {
            var pieces: [[UInt8]] = []
            var at = 0
            while at < bytes.count {
                let n = round == 0 ? 1 : Int(rng.next() % 40) + 1
                pieces.append(Array(bytes[at..<min(bytes.count, at + n)]))
                at += n
            }
            #expect(try Self.decode(pieces).deltas.joined() == Self.text, "round \(round)")
        }
    }

    @Test func sseFields() throws {
        var p = SSEParser()
        let events = try p.feed(Array("event: x\ndata: a\ndata:b\nid: 7\nretry: 5\n: c\n\ndata\n\n\n\nevent: only\n\n".utf8))
        #expect(events == [SSEEvent(event: "x", data: "a\nb", id: "7"), SSEEvent(event: "message", data: "", id: "7")])
    }

    @Test("a line over the limit fails, whatever the splits; memory stays bounded")
    func lineLimit() throws {
        var p = SSEParser(maxLineBytes: 100)
        #expect(throws: SSEParser.Overflow.self) {
            for _ in 0..<20 { _ = try p.feed(Array(repeating: UInt8(ascii: "a"), count: 10)) }
        }
        var d = ChatStreamDecoder(maxLineBytes: 64)
        #expect { _ = try d.feed(Array(("data: " + String(repeating: "x", count: 100) + "\n\n").utf8)) } throws: {
            ($0 as? LLMError)?.kind == .responseTooLarge
        }
    }

    @Test func errorEventMidStream() throws {
        var d = ChatStreamDecoder()
        let head = Self.recorded.components(separatedBy: "\n\n").prefix(3).joined(separator: "\n\n") + "\n\n"
        #expect(try d.feed(Array(head.utf8)) == ["Hel"])
        let error = #expect(throws: LLMError.self) {
            _ = try d.feed(Array("event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n".utf8))
        }
        #expect(error?.kind == .stream)
        #expect(error?.message.contains("overloaded") == true)
        #expect(error?.isTransient == true)
        // An {"error": …} chunk without the event name is the same.
        var e = ChatStreamDecoder()
        #expect { _ = try e.feed(Array("data: {\"error\":{\"message\":\"boom\"}}\n\n".utf8)) } throws: { ($0 as? LLMError)?.kind == .stream }
    }

    @Test func invalidJSONChunk() throws {
        var d = ChatStreamDecoder(secrets: ["sk-secret-1"])
        _ = try d.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".utf8))
        let error = #expect(throws: LLMError.self) { _ = try d.feed(Array("data: {\"choices\": [sk-secret-1\n\n".utf8)) }
        #expect(error?.kind == .malformedResponse)
        #expect(error?.message.contains("chunk 2") == true, "\(String(describing: error))")
        #expect(error?.message.contains("sk-secret-1") == false)
    }

    @Test("a stream that ends without [DONE] or a finish_reason was cut off: a transient failure")
    func cutOff() throws {
        var d = ChatStreamDecoder()
        _ = try d.feed(Array(Self.recorded.utf8.prefix(600)))
        let error = #expect(throws: LLMError.self) { _ = try d.completion() }
        #expect(error?.kind == .stream)
        #expect(error?.isTransient == true)
    }

    @Test("nothing after [DONE] counts")
    func afterDone() throws {
        let (deltas, _) = try Self.decode([Array((Self.recorded + "data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n").utf8)])
        #expect(deltas.joined() == Self.text)
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
