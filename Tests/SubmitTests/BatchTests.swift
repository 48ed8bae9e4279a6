import Foundation
import JSON
import Spool
import Submit
import Testing

@Suite("The Batch API: multipart, input lines, the store")
struct BatchUnitTests {
    @Test("multipart/form-data: parts, names, filenames; malformed bodies refused with a reason")
    func multipart() throws {
        let body = Array(
            "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\nline1\r\n--X\nline2\r\n--XyZ--\r\n"
                .utf8)
        let parts = try Multipart.parse(body, boundary: "XyZ")
        #expect(parts.map(\.name) == ["purpose", "file"])
        #expect(String(decoding: parts[0].data, as: UTF8.self) == "batch")
        #expect(parts[1].filename == "a \"b\".jsonl")
        #expect(String(decoding: parts[1].data, as: UTF8.self) == "line1\r\n--X\nline2")
        for bad in [
            "", "--XyZ\r\nno colon\r\n\r\nx\r\n--XyZ--", "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed",
            "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",
        ] {
            #expect(throws: MultipartError.self) { try Multipart.parse(Array(bad.utf8), boundary: "XyZ") }
        }
        // Linear: a 4 MiB body of near-boundaries parses (or fails) without quadratic work.
        let hostile =
            Array("--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n".utf8) + Array(repeating: Array("\r\n--Xy".utf8), count: 700_000).flatMap { $0 }
        let t0 = ContinuousClock.now
        #expect(throws: MultipartError.self) { try Multipart.parse(hostile, boundary: "XyZ") }
        #expect(ContinuousClock.now - t0 < .seconds(5))
    }

    @Test("input lines: each error names its line; nothing is taken from a file with one")
    func input() throws {
        func line(_ id: String, url: String = "/v1/chat/completions", body: String = #"{"messages":[{"role":"user","content":"x"}]}"#) -> String {
            #"{"custom_id":"\#(id)","method":"POST","url":"\#(url)","body":\#(body)}"#
        }
        let who = Identity(userId: "alice", tenantId: "acme")
        let good = [line("a"), line("b", body: #"{"model":"m","messages":[{"role":"user","content":"y"}],"max_tokens":5,"top_p":0.5}"#), ""].joined(
            separator: "\n")
        guard case .success(let jobs) = BatchInput.jobs(Array(good.utf8), batchID: "batch_x", identity: who, limits: .default) else {
            Issue.record("refused a good file"); return
        }
        #expect(jobs.map(\.jobId) == ["batch_x.0", "batch_x.1"])
        #expect(jobs[1].maxTokens == 5 && jobs[1].model == "m" && jobs[1].userId == "alice" && jobs[1].tenantId == "acme")
        #expect(jobs[1].extra.first { $0.key == "request" }?.value == .object(["top_p": .number("0.5")]))
        let cases: [(String, String, Int)] = [
            ([line("a"), "{not json"].joined(separator: "\n"), "invalid_json_line", 2),
            ([line("a"), line("a")].joined(separator: "\n"), "duplicate_custom_id", 2),
            (line("a", url: "/v1/embeddings"), "invalid_url", 1),
            (#"{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{}}"#, "invalid_method", 1),
            (line("a", body: #"{"messages":[{"role":"user","content":"x"}],"stream":true}"#), "invalid_request", 1),
            (line("a", body: #"{"messages":[]}"#), "invalid_request", 1),
            (line(String(repeating: "c", count: 600)), "invalid_request", 1),
            ("\n\n", "empty_file", 0),
        ]
        for (text, code, at) in cases {
            guard case .failure(let invalid) = BatchInput.jobs(Array(text.utf8), batchID: "batch_x", identity: who, limits: .default) else {
                Issue.record("accepted: \(text.prefix(80))"); continue
            }
            #expect(invalid.errors.first?.code == code, "\(text.prefix(80)): \(invalid.errors)")
            #expect((invalid.errors.first?.line ?? 0) == at)
        }
        // One request over the limit: refused whole, naming the line; the cost stays linear (50,001 lines).
        let limit = BatchInput.maxRequests
        let over = (0...limit).map { line("r\($0)") }.joined(separator: "\n")
        let t0 = ContinuousClock.now
        guard case .failure(let tooMany) = BatchInput.jobs(Array(over.utf8), batchID: "b", identity: who, limits: .default) else {
            Issue.record("accepted \(limit + 1) requests"); return
        }
        #expect(tooMany.errors.map(\.code) == ["too_many_requests"])
        #expect(tooMany.errors.first?.line == limit + 1)
        #expect(ContinuousClock.now - t0 < .seconds(30))
        let many = String(repeating: line("x") + "\n", count: 3)
        guard case .failure(let dup) = BatchInput.jobs(Array(many.utf8), batchID: "b", identity: who, limits: .default) else { return }
        #expect(dup.errors.map(\.line) == [2, 3])
    }

    @Test("the store: owners only; a batch completes when its jobs settle, once; cancel stops what has not started")
    func store() throws {
        let dir = try TempDir("batch")
        defer { dir.remove() }
        let spool = try Spool.create(at: dir.file("spool"))
        let alice = BatchStore(spool: spool, owner: Identity(userId: "alice", tenantId: "acme"), maxFileBytes: 1 << 20)
        let bob = BatchStore(spool: spool, owner: Identity(userId: "bob", tenantId: "acme"), maxFileBytes: 1 << 20)
        let text = (0..<5).map {
            #"{"custom_id":"r\#($0)","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"p\#($0)"}]}}"#
        }.joined(separator: "\n")
        let file = try alice.createFile(Array(text.utf8), filename: "in.jsonl", purpose: "batch")
        let fileID = try #require(file["id"]?.stringValue)
        #expect(throws: Problem.self) { try bob.fileObject(fileID) }
        #expect(throws: Problem.self) { try alice.createFile([], filename: "x", purpose: "assistants") }
        #expect(throws: Problem.self) { try alice.createFile(Array(repeating: 0x20, count: (1 << 20) + 1), filename: "x", purpose: "batch") }
        let created = try alice.createBatch([
            "input_file_id": .string(fileID), "endpoint": .string("/v1/chat/completions"), "completion_window": .string("24h"),
        ])
        let id = try #require(created["id"]?.stringValue)
        #expect(created["status"]?.stringValue == "in_progress")
        #expect(created["userId"] == nil, "the owner is not shown")
        #expect(try spool.names(in: .new).count == 5)
        #expect(throws: Problem.self) { try bob.batch(id) }
        #expect(try bob.list(after: nil, limit: 10)["data"]?.arrayValue?.isEmpty == true)

        // Settle three jobs by hand as a worker would: two done, one failed.
        for k in 0..<3 {
            guard case .claimed(let claim) = try spool.claim("\(id).\(k).json") else { Issue.record("claim"); return }
            if k < 2 {
                try spool.finish(claim, answer: Answer(response: "a\(k)", model: "m", finishReason: "stop", usage: Usage(promptTokens: 1, completionTokens: 2)))
            } else {
                try spool.fail(claim, Failure(kind: "http", message: "400 bad", httpStatus: 400))
            }
        }
        var b = try alice.batch(id)
        #expect(b["status"]?.stringValue == "in_progress")
        #expect(b["request_counts"] == .object(["total": .integer(5), "completed": .integer(2), "failed": .integer(1)]))
        b = try alice.cancel(id)
        #expect(b["status"]?.stringValue == "cancelled", "\(b)")
        #expect(try spool.names(in: .new).isEmpty)
        let out = String(decoding: try alice.fileContent(try #require(b["output_file_id"]?.stringValue)), as: UTF8.self)
        let lines = out.split(separator: "\n").map { try? JSONParser.parse(Array($0.utf8)) }
        #expect(lines.map { $0?["custom_id"]?.stringValue } == ["r0", "r1"])
        #expect(lines[1]?["response"]?["body"]?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == "a1")
        #expect(lines[0]?["response"]?["body"]?["usage"]?["total_tokens"]?.intValue == 3)
        let errors = String(decoding: try alice.fileContent(try #require(b["error_file_id"]?.stringValue)), as: UTF8.self).split(separator: "\n")
        #expect(errors.count == 3)
        #expect(errors.first?.contains("\"status_code\":400") == true)
        #expect(errors.last?.contains("batch_cancelled") == true)
        // Read again: nothing changes (the output is assembled once).
        #expect(try alice.batch(id)["output_file_id"] == b["output_file_id"])
    }
}

@Suite("The Batch API through the CGI program")
struct BatchCGITests {
    @Test("an upload over LLMSPOOL_MAX_FILE is a 413; a job body stays at the job limit; another user's file is a 404")
    func limits() throws {
        let dir = try TempDir("batchcgi")
        defer { dir.remove() }
        let spool = dir.file("spool")
        try Spool.create(at: spool)
        try (testTokens.map { "sha256:\(SHA256.hex(Array($0.token.utf8))) \($0.user) \($0.tenant)" }.joined(separator: "\n") + "\n")
            .write(toFile: dir.file("tokens"), atomically: true, encoding: .utf8)
        func upload(_ content: String, user: String, maxFile: Int) throws -> (String, JSONValue?) {
            let body =
                "--B\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.jsonl\"\r\n\r\n\(content)\r\n--B--\r\n"
            let env = [
                "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST", "PATH_INFO": "/v1/files", "LLMSPOOL_SPOOL": spool,
                "LLMSPOOL_TOKENS": dir.file("tokens"), "LLMSPOOL_MAX_FILE": String(maxFile), "HTTP_AUTHORIZATION": bearer(user)["Authorization"]!,
                "CONTENT_TYPE": "multipart/form-data; boundary=B", "CONTENT_LENGTH": String(body.utf8.count),
            ]
            let out = try run(Bin.cgi, [], env: env, stdin: Array(body.utf8), inheritEnvironment: false)
            let parts = out.text.components(separatedBy: "\r\n\r\n")
            return (parts[0], parts.count > 1 ? try? JSONParser.parse(Array(parts[1].utf8)) : nil)
        }
        let line = #"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"x"}]}}"#
        let big = try upload(String(repeating: line + "\n", count: 40), user: "alice", maxFile: 2_000)
        #expect(big.0.hasPrefix("Status: 413"), "\(big)")
        #expect(big.0.contains("application/problem+json"))
        let ok = try upload(line, user: "alice", maxFile: 2_000)
        #expect(ok.0.hasPrefix("Status: 200"), "\(ok)")
        let id = try #require(ok.1?["id"]?.stringValue)
        let env = [
            "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/v1/files/\(id)/content", "LLMSPOOL_SPOOL": spool,
            "LLMSPOOL_TOKENS": dir.file("tokens"),
        ]
        let mine = try run(Bin.cgi, [], env: env.merging(["HTTP_AUTHORIZATION": bearer("alice")["Authorization"]!]) { a, _ in a }, inheritEnvironment: false)
        #expect(mine.text.hasPrefix("Status: 200") && mine.text.hasSuffix(line), "\(mine.text)")
        let theirs = try run(Bin.cgi, [], env: env.merging(["HTTP_AUTHORIZATION": bearer("bob")["Authorization"]!]) { a, _ in a }, inheritEnvironment: false)
        #expect(theirs.text.hasPrefix("Status: 404"), "\(theirs.text)")
    }
}

/// The official `openai` Python SDK, unchanged, against llmspool under lighttpd with a worker.
@Suite("The Batch API with the openai SDK", .serialized)
struct BatchSDKTests {
    static var sdk: Bool { (try? run("/usr/bin/env", ["python3", "-c", "import openai"]))?.status == 0 }

    @Test("files.create → batches.create → retrieve → files.content: 10,000 lines, each custom_id answered once; list, cancel, bad input")
    func roundTrip() throws {
        guard BatchSDKTests.sdk, ServerKind.lighttpd.available else {
            Issue.record("needs python3 with the openai package (pip install openai) and lighttpd; .ci/run installs both")
            return
        }
        let s = try Server(.lighttpd)
        defer { s.close() }
        try s.startWorker()
        let out = try run("/usr/bin/env", ["python3", Bin.repo + "/Tests/peers/openai_batch.py", s.base + "/v1", testTokens[0].token, "10000", "240"])
        #expect(out.status == 0, "\(out.text) \(out.stderr.suffix(3000))")
        let summary = try JSONParser.parse(out.stdout.split(separator: 0x0A).last.map(Array.init) ?? [])
        #expect(summary["answered"]?.intValue == 10_000)
        #expect(summary["answered_twice"]?.intValue == 0)
        print("openai SDK batch of 10,000 lines: \(out.text)")
    }
}
