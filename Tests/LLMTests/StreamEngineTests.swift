import Foundation
import Synchronization
import Testing

@testable import LLM

/// Streamed calls through the engine against Tests/peers/fake_llm.py's streams and faults.
@Suite("Streamed answers against a fake LLM server", .timeLimit(.minutes(10)))
struct StreamEngineTests {
    /// Runs a streamed call; returns the deltas and the completion or the error.
    func stream(_ client: ChatClient, _ behaviour: String) async -> (deltas: [String], result: Result<ChatCompletion, any Error>) {
        let deltas = Mutex<[String]>([])
        let result: Result<ChatCompletion, any Error>
        do { result = .success(try await client.stream(fake(behaviour)) { d in deltas.withLock { $0.append(d) } }) } catch {
            result = .failure(error)
        }
        return (deltas.withLock { $0 }, result)
    }

    @Test("a stream gives word-by-word deltas whose concatenation is the content; usage from the last chunk", arguments: ["", "crlf,"])
    func success(_ option: String) async throws {
        try await withFakeLLM { server, engine in
            let (deltas, result) = await stream(try chatClient(server, engine), option + "chunkms=5,one two three")
            let c = try result.get()
            #expect(c.content == "echo: fake:\(option)chunkms=5,one two three")
            #expect(deltas.joined() == c.content)
            #expect(deltas.count == 4)
            #expect(c.finishReason == "stop")
            #expect(c.usage?.completionTokens == 4)
            #expect(c.requestID != nil)
        }
    }

    @Test("a server that ignores stream: true answers in one body: read as today, one delta")
    func ignoresStream() async throws {
        try await withFakeLLM { server, engine in
            let (deltas, result) = await stream(try chatClient(server, engine), "nostream,a b")
            let c = try result.get()
            #expect(c.content == "echo: fake:nostream,a b")
            #expect(deltas == [c.content!])
            #expect(c.usage != nil)
        }
    }

    @Test("no usage chunk: the completion has none (the worker estimates)")
    func noUsage() async throws {
        try await withFakeLLM { server, engine in
            let c = try await stream(try chatClient(server, engine), "nousage,x").result.get()
            #expect(c.usage == nil)
            #expect(c.content == "echo: fake:nousage,x")
        }
    }

    @Test("cut mid-answer: a transient failure after the first deltas")
    func cut() async throws {
        try await withFakeLLM { server, engine in
            let (deltas, result) = await stream(try chatClient(server, engine), "cut=2,a b c d")
            #expect(deltas.count == 2)
            guard case .failure(let e as LLMError) = result else { Issue.record("\(result)"); return }
            #expect(e.isTransient, "\(e)")
        }
    }

    @Test("a stall fails after the idle timeout (libcurl low-speed limit), long before the whole-call timeout")
    func stall() async throws {
        try await withFakeLLM { server, engine in
            var config = ChatClient.Configuration(baseURL: server.baseURL, timeout: .seconds(30))
            config.streamIdleTimeout = .seconds(1)
            let start = ContinuousClock.now
            let (deltas, result) = await stream(ChatClient(configuration: config, engine: engine), "stall=2,a b c")
            let took = ContinuousClock.now - start
            #expect(deltas.count == 2)
            guard case .failure(let e as LLMError) = result else { Issue.record("\(result)"); return }
            #expect(e.kind == .timeout)
            #expect(e.message.contains("idle timeout"), "\(e)")
            #expect(e.isTransient)
            // libcurl averages the speed over its last 5 s: an idle timeout of N s fires after N to
            // N + 6 s. The message above says it was the idle timeout and not the whole call's; the
            // time is only a lower bound, since a loaded full run may resume this task late.
            #expect(took >= .seconds(1), "\(took)")
        }
    }

    @Test("an error event mid-stream: a transient stream-error with the server's message")
    func errorEvent() async throws {
        try await withFakeLLM { server, engine in
            let (deltas, result) = await stream(try chatClient(server, engine), "errorevent=2,a b c")
            #expect(deltas.count == 2)
            guard case .failure(let e as LLMError) = result else { Issue.record("\(result)"); return }
            #expect(e.kind == .stream)
            #expect(e.message.contains("fake overload mid-stream"), "\(e)")
        }
    }

    @Test("invalid JSON in one chunk: a malformed-response failure naming the chunk")
    func badChunk() async throws {
        try await withFakeLLM { server, engine in
            let (deltas, result) = await stream(try chatClient(server, engine), "badchunk=2,a b c")
            #expect(deltas.count == 1)
            guard case .failure(let e as LLMError) = result else { Issue.record("\(result)"); return }
            #expect(e.kind == .malformedResponse)
            #expect(e.message.contains("chunk 2"), "\(e)")
        }
    }

    @Test("an HTTP error to a streamed call is read as today")
    func httpError() async throws {
        try await withFakeLLM { server, engine in
            let (deltas, result) = await stream(try chatClient(server, engine), "status=503")
            #expect(deltas.isEmpty)
            guard case .failure(let e as LLMError) = result else { Issue.record("\(result)"); return }
            #expect(e.kind == .http && e.httpStatus == 503)
        }
    }
}
