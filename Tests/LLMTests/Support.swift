// Helpers for the LLM tests: the fake LLM server process (Tests/peers/fake_llm.py), random
// sources with known output, and a thread's CPU time from /proc.
import Foundation
import JSON
import Testing

@testable import LLM

/// A running `fake_llm.py`, stopped by `stop()`.
final class FakeLLM: Sendable {
    static let script: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("peers/fake_llm.py").path

    private let process: Process
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    init(arguments: [String] = []) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-u", Self.script] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        var line: [UInt8] = []
        while let byte = try out.fileHandleForReading.read(upToCount: 1), let b = byte.first, b != 0x0A {
            line.append(b)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            p.terminate()
            throw LLMError(.configuration, "fake_llm.py did not print its port")
        }
        self.port = port
        process = p
    }

    /// Kills the server (SIGKILL: the signal mask Swift's threads hand down may block SIGTERM).
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The server's counters, fetched through `engine`.
    func stats(_ engine: CurlEngine) async throws -> (connections: Int, requests: Int, waiting: Int) {
        let response = try await engine.perform(HTTPRequest(url: "http://127.0.0.1:\(port)/stats"))
        let json = try JSONParser.parse(response.body)
        return (json["connections"]?.intValue ?? -1, json["requests"]?.intValue ?? -1, json["waiting"]?.intValue ?? -1)
    }

    /// Lets the requests held at gate `name` go.
    func release(_ name: String, _ engine: CurlEngine) async throws {
        _ = try await engine.perform(HTTPRequest(url: "http://127.0.0.1:\(port)/release/\(name)"))
    }
}

/// Runs `body` with a fresh fake server and engine, stopping both afterwards.
func withFakeLLM<T>(
    arguments: [String] = [],
    engine configuration: CurlEngine.Configuration = CurlEngine.Configuration(),
    _ body: (FakeLLM, CurlEngine) async throws -> T
) async throws -> T {
    let server = try FakeLLM(arguments: arguments)
    defer { server.stop() }
    let engine = try CurlEngine(configuration: configuration)
    defer { engine.shutdown() }
    return try await body(server, engine)
}

func chatClient(_ server: FakeLLM, _ engine: CurlEngine, key: String? = nil, timeout: Duration = .seconds(10)) throws -> ChatClient {
    ChatClient(
        configuration: .init(baseURL: server.baseURL, apiKey: try key.map { try APIKey($0) }, timeout: timeout),
        engine: engine)
}

/// A chat request whose prompt selects the fake server's behaviour.
func fake(_ behaviour: String) -> ChatRequest {
    ChatRequest(model: "fake-model", prompt: "fake:" + behaviour, maxTokens: 16, temperature: 0)
}

/// All ones: RetryPolicy's jitter gives the top of its range.
struct MaxRandom: RandomNumberGenerator {
    mutating func next() -> UInt64 { .max }
}

/// All zeros: RetryPolicy's jitter gives 0.
struct ZeroRandom: RandomNumberGenerator {
    mutating func next() -> UInt64 { 0 }
}

/// User plus system CPU time of one thread of this process, in clock ticks (1/100 s).
func threadCPUTicks(_ tid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
    return user + system
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
