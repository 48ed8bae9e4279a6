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

    /// Runs a streamed call, noting when each delta arrived and when the call ended.
    func timedStream(
        _ client: ChatClient, _ behaviour: String
    ) async -> (deltas: [(text: String, at: ContinuousClock.Instant)], result: Result<ChatCompletion, any Error>, ended: ContinuousClock.Instant) {
        let deltas = Mutex<[(text: String, at: ContinuousClock.Instant)]>([])
        let result: Result<ChatCompletion, any Error>
        do {
            result = .success(try await client.stream(fake(behaviour)) { d in deltas.withLock { $0.append((d, ContinuousClock.now)) } })
        } catch {
            result = .failure(error)
        }
        return (deltas.withLock { $0 }, result, ContinuousClock.now)
    }

    func idleClient(_ server: FakeLLM, _ engine: CurlEngine, idle: Duration, timeout: Duration = .seconds(30)) -> ChatClient {
        var config = ChatClient.Configuration(baseURL: server.baseURL, timeout: timeout)
        config.streamIdleTimeout = idle
        return ChatClient(configuration: config, engine: engine)
    }

    @Test("a stream that stalls mid-answer is cut once no byte came for the idle timeout (700 ms), not on whole seconds")
    func stall() async throws {
        try await withFakeLLM { server, engine in
            let cut = FinishWatch(engine, finished: 1)
            let (deltas, result, _) = await timedStream(idleClient(server, engine, idle: .milliseconds(700)), "stall=2,a b c")
            #expect(deltas.count == 2)
            guard case .failure(let e as LLMError) = result else { Issue.record("\(result)"); return }
            #expect(e.kind == .timeout)
            #expect(e.message.contains("no byte of the streamed answer for 0.7 seconds (the stream's idle timeout)"), "\(e)")
            #expect(e.isTransient)
            // The engine restarts a stream's idle clock after handing its bytes over (the delta
            // noted here came first): never sooner than 700 ms after the last delta. The end is
            // noted on a thread of its own (in a full run this task may resume seconds late); the
            // upper bound is only generous (a loaded CI machine). libcurl's low-speed limit, used
            // before, cut a stall 1 to 6 s after it began, in whole seconds.
            let last = try #require(deltas.last?.at)
            let idle = try #require(await cut.instant()) - last
            #expect(idle >= .milliseconds(700), "\(idle)")
            #expect(idle < .milliseconds(3700), "\(idle)")
            #expect(engine.statistics.inFlight == 0)
        }
    }

    @Test("a slow but steady stream (a chunk every 300 ms) is not cut by a 700 ms idle timeout")
    func slowButSteady() async throws {
        try await withFakeLLM { server, engine in
            // 10 chunks, 300 ms apart: 3 s in all, far past the idle timeout.
            let behaviour = "chunkms=300,a b c d e f g h i"
            let started = ContinuousClock.now
            let (deltas, result, ended) = await timedStream(idleClient(server, engine, idle: .milliseconds(700)), behaviour)
            let c = try result.get()
            #expect(c.content == "echo: fake:" + behaviour)
            #expect(deltas.map { $0.text }.joined() == c.content)
            #expect(deltas.count == 10)
            #expect(ended - started >= .seconds(3))
        }
    }

    @Test("a pause shorter than the idle timeout mid-answer is only a pause")
    func pause() async throws {
        try await withFakeLLM { server, engine in
            let behaviour = "stall=2,stallms=300,a b c"
            let (deltas, result, _) = await timedStream(idleClient(server, engine, idle: .milliseconds(1500)), behaviour)
            let c = try result.get()
            #expect(c.content == "echo: fake:" + behaviour)
            #expect(deltas.map { $0.text }.joined() == c.content)
        }
    }

    @Test("the wait for the answer's first byte is the whole-call timeout's, not the idle timeout's")
    func slowFirstByte() async throws {
        try await withFakeLLM { server, engine in
            let behaviour = "latency=1200,a b"
            let (_, result, _) = await timedStream(idleClient(server, engine, idle: .milliseconds(500)), behaviour)
            let c = try result.get()
            #expect(c.content == "echo: fake:" + behaviour)
        }
    }

    @Test("200 streams at once, every fifth stalling: exactly those are cut, at their idle timeout; then the engine sleeps")
    func manyStreams() async throws {
        try await withFakeLLM { server, engine in
            // Generous against a loaded machine: a healthy stream sends a chunk every 100 ms.
            let client = idleClient(server, engine, idle: .seconds(2), timeout: .seconds(120))
            let outcomes = await withTaskGroup(of: (Int, Result<ChatCompletion, any Error>, Int).self) { group in
                for k in 0..<200 {
                    group.addTask {
                        let behaviour = (k % 5 == 0 ? "stall=3," : "") + "chunkms=100,stream \(k) of many words"
                        let (deltas, result, _) = await timedStream(client, behaviour)
                        return (k, result, deltas.count)
                    }
                }
                var all: [(Int, Result<ChatCompletion, any Error>, Int)] = []
                for await o in group { all.append(o) }
                return all.sorted { $0.0 < $1.0 }
            }
            #expect(outcomes.count == 200)
            var cut: [Int] = []
            for (k, result, deltaCount) in outcomes {
                switch result {
                case .success(let c):
                    #expect(k % 5 != 0, "stream \(k) should have stalled")
                    #expect(c.content == "echo: fake:chunkms=100,stream \(k) of many words")
                case .failure(let e as LLMError) where e.kind == .timeout && e.message.contains("idle timeout"):
                    cut.append(k)
                    #expect(deltaCount == 3, "stream \(k)")
                case .failure(let e):
                    Issue.record("stream \(k): \(e)")
                }
            }
            #expect(cut == Array(stride(from: 0, to: 200, by: 5)))
            #expect(engine.statistics.inFlight == 0)
            // No stream is timed any more, so nothing is left to wake the loop.
            try await Task.sleep(for: .milliseconds(200))
            #expect(engine.shared.idleTimed.load(ordering: .relaxed) == 0)
            let turnsBefore = engine.shared.iterations.load(ordering: .relaxed)
            try await Task.sleep(for: .seconds(2))
            let turns = engine.shared.iterations.load(ordering: .relaxed) - turnsBefore
            #expect(turns <= 6, "the loop woke \(turns) times in 2 s with no transfer in flight")
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

/// Notes when an engine's count of finished transfers first reaches `count`, on a thread of its
/// own that looks every half millisecond for at most a minute.
final class FinishWatch: Sendable {
    let at = Mutex<ContinuousClock.Instant?>(nil)

    init(_ engine: CurlEngine, finished count: Int) {
        let deadline = ContinuousClock.now + .seconds(60)
        Thread { [self] in
            while ContinuousClock.now < deadline {
                if engine.statistics.finished >= count {
                    at.withLock { $0 = .now }
                    return
                }
                usleep(500)
            }
        }.start()
    }

    /// The instant, once the thread has noted it (nil if it never did within a minute).
    func instant() async -> ContinuousClock.Instant? {
        for _ in 0..<6000 {
            if let t = at.withLock({ $0 }) { return t }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}
