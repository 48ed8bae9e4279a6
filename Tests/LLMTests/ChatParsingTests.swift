import Foundation
import JSON
import Testing

@testable import LLM

@Suite("Chat requests and responses")
struct ChatParsingTests {
    @Test func requestBody() throws {
        let r = ChatRequest(
            model: "gpt-x", messages: [.system("be brief"), .user("hi \"there\"")], maxTokens: 64, temperature: 0.2,
            extra: ["user": .string("tenant-a"), "model": .string("ignored")])
        #expect(
            r.json.text
                == #"{"model":"gpt-x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi \"there\""}],"max_tokens":64,"temperature":0.2,"user":"tenant-a"}"#
        )
        #expect(ChatRequest(model: "m", prompt: "p").json.text == #"{"model":"m","messages":[{"role":"user","content":"p"}]}"#)
    }

    @Test func httpRequest() throws {
        let engine = try CurlEngine()
        defer { engine.shutdown() }
        let client = ChatClient(
            configuration: .init(
                baseURL: "https://api.example.com/v1/", apiKey: try APIKey("sk-test"), timeout: .seconds(30),
                headers: ["OpenAI-Organization": "org-1"]),
            engine: engine)
        let h = client.httpRequest(for: ChatRequest(model: "m", prompt: "p"))
        #expect(h.method == "POST")
        #expect(h.url == "https://api.example.com/v1/chat/completions")
        #expect(h.headers["authorization"] == "Bearer sk-test")
        #expect(h.headers["content-type"] == "application/json")
        #expect(h.headers["openai-organization"] == "org-1")
        #expect(h.timeout == .seconds(30))
        #expect(throws: Never.self) { try h.validate() }
    }

    static let okBody = #"""
        {"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024","choices":[{"index":0,
         "message":{"role":"assistant","content":"Hello!"},"finish_reason":"length"}],
         "usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}
        """#

    @Test func parsesCompletion() throws {
        let response = HTTPResponse(
            status: 200, headers: ["x-request-id": "req-7", "x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "1s"],
            body: Array(Self.okBody.utf8))
        let c = try ChatCompletion.parse(response)
        #expect(c.content == "Hello!")
        #expect(c.finishReason == "length")
        #expect(c.usage == TokenUsage(promptTokens: 9, completionTokens: 12, totalTokens: 21))
        #expect(c.model == "gpt-4o-2024")
        #expect(c.id == "chatcmpl-1")
        #expect(c.requestID == "req-7")
        #expect(c.rateLimits.tokens == .init(remaining: 10, reset: .seconds(1)))
    }

    @Test func nullContentAndNoUsage() throws {
        let body = #"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"no"},"finish_reason":"content_filter"}]}"#
        let c = try ChatCompletion.parse(HTTPResponse(status: 200, body: Array(body.utf8)))
        #expect(c.content == nil)
        #expect(c.finishReason == "content_filter")
        #expect(c.usage == nil)
    }

    @Test(
        "malformed 2xx bodies are permanent errors",
        arguments: [
            #"{"choices": [{"message": {"role": "assistant", "cont"#,
            "<html>Bad gateway</html>",
            "",
            "[]",
            #"{"choices": []}"#,
            #"{"choices": [{"finish_reason": "stop"}]}"#,
            #"{"choices": [{"message": {"content": 42}}]}"#,
            #"{"error": {"message": "quota exceeded"}}"#,
        ])
    func malformed(body: String) {
        do {
            _ = try ChatCompletion.parse(HTTPResponse(status: 200, body: Array(body.utf8)))
            Issue.record("parsed \(body)")
        } catch {
            #expect(error.kind == .malformedResponse)
            #expect(error.httpStatus == 200)
            #expect(!error.isTransient)
        }
    }

    @Test func errorStatusCarriesServerMessageAndRetryAfter() {
        let body = #"{"error":{"message":"Rate limit reached for gpt-x","type":"requests","code":"rate_limit_exceeded"}}"#
        let response = HTTPResponse(status: 429, headers: ["retry-after": "20", "x-request-id": "req-9"], body: Array(body.utf8))
        do {
            _ = try ChatCompletion.parse(response)
            Issue.record("parsed a 429")
        } catch {
            #expect(error.kind == .http)
            #expect(error.httpStatus == 429)
            #expect(error.retryAfter == .seconds(20))
            #expect(error.requestID == "req-9")
            #expect(error.message == "HTTP 429: Rate limit reached for gpt-x")
            #expect(error.isTransient)
            #expect("\(error)" == "http: HTTP 429: Rate limit reached for gpt-x [request req-9]")
        }
    }

    @Test func errorBodiesNeverQuoteTheKey() {
        let body = #"{"error":{"message":"Incorrect API key provided: sk-secret-123"}}"#
        do {
            _ = try ChatCompletion.parse(HTTPResponse(status: 401, body: Array(body.utf8)), secrets: ["sk-secret-123"])
        } catch {
            #expect(!error.message.contains("sk-secret-123"))
            #expect(error.message.contains("[redacted]"))
            #expect(!error.isTransient)
        }
        do {
            _ = try ChatCompletion.parse(HTTPResponse(status: 502, body: Array("upstream sk-secret-123 down\n".utf8)), secrets: ["sk-secret-123"])
        } catch {
            #expect(error.message == "HTTP 502: upstream [redacted] down ")
        }
    }

    @Test func apiKeyIsNeverPrinted() throws {
        let key = try APIKey("  sk-abc123\n")
        #expect(key.value == "sk-abc123")
        #expect("\(key)" == "APIKey(redacted)")
        #expect(String(reflecting: key) == "APIKey(redacted)")
        var dumped = ""
        dump(key, to: &dumped)
        #expect(!dumped.contains("sk-abc123"))
        #expect(throws: LLMError.self) { try APIKey("\n") }
        #expect(throws: LLMError.self) { try APIKey("sk-a\nsk-b") }
    }

    @Test func apiKeyFromFileEnvironmentAndCredentials() throws {
        let dir = NSTemporaryDirectory() + "llm-key-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "sk-from-file\n".write(toFile: dir + "/key", atomically: true, encoding: .utf8)
        #expect(try APIKey.fromFile(dir + "/key").value == "sk-from-file")
        do {
            _ = try APIKey.fromFile(dir + "/missing")
            Issue.record("read a missing file")
        } catch {
            #expect(error.kind == .configuration)
            #expect(error.message.contains(dir + "/missing"))
        }

        let variable = "LLMSPOOL_TEST_KEY_\(UUID().uuidString.prefix(8))"
        setenv(variable, "sk-from-env\r\n", 1)
        defer { unsetenv(variable) }
        #expect(try APIKey.fromEnvironment(variable).value == "sk-from-env")
        #expect(throws: LLMError.self) { try APIKey.fromEnvironment(variable + "_UNSET") }

        // systemd's LoadCredential: $CREDENTIALS_DIRECTORY/<name>. The variable is process-wide,
        // so this is the only test that sets it.
        try "sk-from-credential\n".write(toFile: dir + "/openai", atomically: true, encoding: .utf8)
        setenv("CREDENTIALS_DIRECTORY", dir, 1)
        defer { unsetenv("CREDENTIALS_DIRECTORY") }
        #expect(try APIKey.fromCredential("openai").value == "sk-from-credential")
        #expect(try APIKey.load(credential: "openai", environmentVariable: variable)?.value == "sk-from-credential")
        #expect(try APIKey.load(credential: "absent", environmentVariable: variable)?.value == "sk-from-env")
        #expect(try APIKey.load(file: dir + "/key", credential: "openai")?.value == "sk-from-file")
        #expect(try APIKey.load(credential: "absent", environmentVariable: variable + "_UNSET") == nil)
    }
}
