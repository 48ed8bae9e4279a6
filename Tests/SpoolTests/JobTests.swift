import JSON
import Testing

@testable import Spool

private func job(_ text: String, limits: Limits = .default) throws -> Job {
    try Job(json: JSONParser.parse(text), limits: limits)
}

/// The DocumentError a job text gives, or nil when it is valid.
private func documentError(_ text: String, limits: Limits = .default) throws -> DocumentError? {
    let value = try JSONParser.parse(text)
    do {
        _ = try Job(json: value, limits: limits)
        return nil
    } catch {
        return error
    }
}

private func intakeError(_ bytes: [UInt8], limits: Limits = .default) -> IntakeError? {
    do {
        _ = try Job.decode(bytes, limits: limits)
        return nil
    } catch {
        return error
    }
}

private let long129 = String(repeating: "a", count: 129)
private let long128 = String(repeating: "b", count: 128)

@Suite("Job documents: valid jobs")
struct JobValidTests {
    /// The example of DESIGN.md, with its placeholders filled in.
    static let designExample = """
        {"jobId": "job-2026-001", "prompt": "Summarise this.", "userId": "alice", "tenantId": "acme",
         "model": "gpt-4o-mini", "maxTokens": 512, "temperature": 0.2,
         "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
         "metadata": {"any": "json"}, "submittedAt": "2026-11-26T10:00:00Z"}
        """

    @Test func designExampleIsAccepted() throws {
        let j = try job(Self.designExample)
        #expect(j.jobId == "job-2026-001")
        #expect(j.prompt == "Summarise this.")
        #expect(j.userId == "alice")
        #expect(j.tenantId == "acme")
        #expect(j.model == "gpt-4o-mini")
        #expect(j.maxTokens == 512)
        #expect(j.temperature == 0.2)
        #expect(j.messages == [Job.Message(role: "system", content: "Be brief."), Job.Message(role: "user", content: "Hello")])
        #expect(j.metadata == ["any": .string("json")])
        #expect(j.submittedAt == "2026-11-26T10:00:00Z")
        #expect(j.attempts == 0)
        #expect(j.history.isEmpty)
        #expect(j.extra.isEmpty)
    }

    @Test func springJobEventIsAccepted() throws {
        let j = try job(#"{"jobId":"42","prompt":"hi","userId":"u1"}"#)
        #expect(j.jobId == "42" && j.prompt == "hi" && j.userId == "u1")
        #expect(j.messages == nil && j.model == nil && j.maxTokens == nil && j.temperature == nil)
    }

    @Test func designExampleRoundTripsThroughJSON() throws {
        let j = try job(Self.designExample)
        let again = try Job(json: JSONParser.parse(j.json().serialized()))
        #expect(again == j)
        #expect(
            j.json().objectValue?.keys == [
                "jobId", "prompt", "messages", "userId", "tenantId", "model", "maxTokens", "temperature",
                "metadata", "submittedAt",
            ])
    }

    @Test(
        "boundary values are accepted",
        arguments: [
            #""temperature":0"#, #""temperature":2"#, #""temperature":2.0"#, #""temperature":1e-3"#,
            #""maxTokens":1"#, #""maxTokens":1000000"#,
            #""userId":"a.b_c@d+e-f""#, "\"userId\":\"\(long128)\"", "\"tenantId\":\"\(long128)\"", #""tenantId":"0""#,
            "\"jobId\":\"\(long128)\"", #""jobId":"A.b_c-9""#, #""jobId":null"#, #""userId":null"#,
            #""model":"x""#, #""metadata":{}"#, #""metadata":{"deep":{"a":[1,{"b":null}]}}"#,
            #""submittedAt":"2026-11-26T10:00:00.123456+05:30""#, #""attempts":3"#, #""history":[{"kind":"x"}]"#,
            #""messages":[{"role":"developer","content":""},{"role":"assistant","content":"a"},{"role":"tool","content":"t"}]"#,
        ])
    func boundaryValues(_ field: String) throws {
        #expect(throws: Never.self) { try job(#"{"prompt":"hi","# + field + "}") }
    }

    @Test func messagesAloneAreEnough() throws {
        let j = try job(#"{"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(j.prompt == nil)
        #expect(j.messages?.count == 1)
        // An empty prompt is allowed when there are messages.
        #expect(throws: Never.self) { try job(#"{"prompt":"","messages":[{"role":"user","content":"hi"}]}"#) }
    }

    @Test func unknownFieldsAreKeptInOrderAndRoundTrip() throws {
        let j = try job(#"{"traceId":"t-1","prompt":"hi","nested":{"a":[1,2.50]},"x":null,"userId":"u"}"#)
        #expect(j.extra.map(\.key) == ["traceId", "nested", "x"])
        #expect(j.extra[1].value == .object(["a": .array([.number("1"), .number("2.50")])]))
        let json = j.json()
        #expect(json.objectValue?.keys == ["prompt", "userId", "traceId", "nested", "x"])
        #expect(json.text == #"{"prompt":"hi","userId":"u","traceId":"t-1","nested":{"a":[1,2.50]},"x":null}"#)
        #expect(try Job(json: JSONParser.parse(json.serialized())) == j)
    }

    @Test func attemptsAndHistoryRoundTrip() throws {
        let j = try job(#"{"prompt":"hi","attempts":2,"history":[{"kind":"abandoned"},{"kind":"abandoned"}]}"#)
        #expect(j.attempts == 2)
        #expect(j.history.count == 2)
        #expect(try Job(json: j.json()) == j)
        // attempts 0 is the default and is not written.
        #expect(try job(#"{"prompt":"hi","attempts":0}"#).json().text == #"{"prompt":"hi"}"#)
    }

    @Test func programmaticJobRoundTrips() throws {
        var j = Job(prompt: "p", messages: [Job.Message(role: "user", content: "c")])
        j.jobId = "id-1"
        j.temperature = 0.7
        j.maxTokens = 10
        j.metadata = ["k": .array([.bool(true)])]
        j.extra = [JSONObject.Member("custom", .integer(5))]
        #expect(try Job(json: JSONParser.parse(j.json().serialized())) == j)
    }

    @Test func idFromFileName() {
        #expect(Job.id(fromFileName: "abc.json") == "abc")
        #expect(Job.id(fromFileName: "abc") == "abc")
        #expect(Job.id(fromFileName: "a.b.json") == "a.b")
        #expect(Job.id(fromFileName: "abc.JSON") == "abc.JSON")
    }
}

@Suite("Job documents: each bad field is named")
struct JobFieldErrorTests {
    static let withPrompt: [(String, String)] = [
        (#""jobId":"""#, "jobId"), (#""jobId":"a/b""#, "jobId"), (#""jobId":".hidden""#, "jobId"),
        (#""jobId":"-x""#, "jobId"), ("\"jobId\":\"\(long129)\"", "jobId"), (#""jobId":"..\/etc""#, "jobId"),
        (#""jobId":"é""#, "jobId"), (#""jobId":"a b""#, "jobId"), (#""jobId":5"#, "jobId"), (#""jobId":["a"]"#, "jobId"),
        (#""maxTokens":1.5"#, "maxTokens"), (#""maxTokens":0"#, "maxTokens"), (#""maxTokens":-1"#, "maxTokens"),
        (#""maxTokens":1000001"#, "maxTokens"), (#""maxTokens":"5""#, "maxTokens"), (#""maxTokens":1e3"#, "maxTokens"),
        (#""maxTokens":true"#, "maxTokens"), (#""maxTokens":99999999999999999999"#, "maxTokens"),
        (#""temperature":-0.1"#, "temperature"), (#""temperature":2.01"#, "temperature"),
        (#""temperature":"0.5""#, "temperature"), (#""temperature":1e400"#, "temperature"),
        (#""temperature":true"#, "temperature"), (#""temperature":null"#, "temperature"),
        (#""metadata":[]"#, "metadata"), (#""metadata":"x""#, "metadata"), (#""metadata":1"#, "metadata"),
        (#""metadata":null"#, "metadata"),
        (#""submittedAt":"yesterday""#, "submittedAt"), (#""submittedAt":"2026-11-26""#, "submittedAt"),
        (#""submittedAt":"2026-11-26T10:00:00""#, "submittedAt"), (#""submittedAt":1795687200"#, "submittedAt"),
        (#""submittedAt":"2026-02-30T10:00:00Z""#, "submittedAt"), (#""submittedAt":"26 Nov 2026 10:00 GMT""#, "submittedAt"),
        (#""userId":"""#, "userId"), (#""userId":"bob smith""#, "userId"), (#""userId":"-bob""#, "userId"),
        (#""userId":"bob/x""#, "userId"), (#""userId":"é""#, "userId"), ("\"userId\":\"\(long129)\"", "userId"),
        (#""userId":5"#, "userId"), (#""tenantId":"""#, "tenantId"), (#""tenantId":"acme corp""#, "tenantId"),
        (#""tenantId":".acme""#, "tenantId"), (#""tenantId":{}"#, "tenantId"),
        (#""model":"""#, "model"), (#""model":"a\u0001b""#, "model"), ("\"model\":\"\(String(repeating: "m", count: 257))\"", "model"),
        (#""model":1"#, "model"),
        (#""attempts":-1"#, "attempts"), (#""attempts":"1""#, "attempts"), (#""attempts":1.5"#, "attempts"),
        (#""history":"x""#, "history"), (#""history":{}"#, "history"),
        (#""messages":[]"#, "messages"), (#""messages":{}"#, "messages"), (#""messages":null"#, "messages"),
        (#""prompt2":1,"messages":"hi""#, "messages"),
    ]

    @Test("a bad field next to a good prompt", arguments: withPrompt)
    func badFieldNextToPrompt(_ member: String, _ field: String) throws {
        let error = try #require(try documentError(#"{"prompt":"hi","# + member + "}"), "accepted \(member)")
        #expect(error.field == field, "\(member): \(error)")
        #expect(!error.message.isEmpty)
        #expect(error.description.hasPrefix(field + ": "))
    }

    static let wholeDocuments: [(String, String)] = [
        ("{}", "prompt"), (#"{"userId":"alice"}"#, "prompt"), (#"{"prompt":null}"#, "prompt"),
        (#"{"prompt":""}"#, "prompt"), (#"{"prompt":5}"#, "prompt"), (#"{"prompt":["hi"]}"#, "prompt"),
        (#"{"messages":[]}"#, "messages"), (#"{"messages":"hi"}"#, "messages"),
        (#"{"messages":[{"role":"user","content":"a"},{"role":"robot","content":"b"}]}"#, "messages[1].role"),
        (#"{"messages":[{"role":"user","content":"a"},{"content":"b"}]}"#, "messages[1].role"),
        (#"{"messages":[{"role":"User","content":"a"}]}"#, "messages[0].role"),
        (#"{"messages":[{"role":5,"content":"a"}]}"#, "messages[0].role"),
        (#"{"messages":[{"role":"user"}]}"#, "messages[0].content"),
        (#"{"messages":[{"role":"user","content":null}]}"#, "messages[0].content"),
        (#"{"messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
        (#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b","name":"x"}]}"#, "messages[1].name"),
        (#"{"messages":["hi"]}"#, "messages[0]"), (#"{"messages":[{"role":"user","content":"a"},null]}"#, "messages[1]"),
        ("[]", ""), (#""prompt""#, ""), ("null", ""), ("1", ""),
    ]

    @Test("a bad document", arguments: wholeDocuments)
    func badDocument(_ text: String, _ field: String) throws {
        let error = try #require(try documentError(text), "accepted \(text)")
        #expect(error.field == field, "\(text): \(error)")
    }

    @Test func roleErrorNamesTheRoleFound() throws {
        let error = try #require(try documentError(#"{"messages":[{"role":"user","content":"a"},{"role":"robot","content":"b"}]}"#))
        #expect(error.description.contains("messages[1].role"))
        #expect(error.message.contains("\"robot\""))
    }

    @Test(
        "near-miss field names are refused with a suggestion",
        arguments: [
            ("max_tokens", "maxTokens"), ("MaxTokens", "maxTokens"), ("maxtokens", "maxTokens"), ("MAX-TOKENS", "maxTokens"),
            ("JobID", "jobId"), ("job_id", "jobId"), ("user-id", "userId"), ("TENANTID", "tenantId"),
            ("Temperature", "temperature"), ("submitted_at", "submittedAt"), ("Messages", "messages"), ("META_DATA", "metadata"),
            ("Model", "model"), ("History", "history"),
        ])
    func nearMiss(_ key: String, _ known: String) throws {
        let error = try #require(try documentError(#"{"prompt":"hi",""# + key + #"":1}"#), "accepted \(key)")
        #expect(error.field == key)
        #expect(error.message.contains("did you mean \"\(known)\""), "\(error)")
    }

    @Test func unrelatedUnknownNamesAreNotNearMisses() throws {
        for key in ["maxTokensLimit", "tokens", "prompts", "user", "job"] {
            #expect(try documentError(#"{"prompt":"hi",""# + key + #"":1}"#) == nil, "\(key) was refused")
        }
    }
}

@Suite("Job documents: limits")
struct JobLimitTests {
    @Test func promptLimitCountsUTF8Bytes() throws {
        let limits = Limits.with { $0.maxPromptBytes = 10 }
        #expect(try documentError(#"{"prompt":"1234567890"}"#, limits: limits) == nil)
        #expect(try documentError(#"{"prompt":"12345678901"}"#, limits: limits)?.field == "prompt")
        #expect(try documentError(#"{"prompt":"ééééé"}"#, limits: limits) == nil, "10 bytes")
        let error = try #require(try documentError(#"{"prompt":"éééééé"}"#, limits: limits), "12 bytes in 6 characters")
        #expect(error.field == "prompt")
        #expect(error.message.contains("12 bytes"))
        // Message contents count together, and with the prompt.
        #expect(
            try documentError(
                #"{"messages":[{"role":"user","content":"12345"},{"role":"user","content":"12345"}]}"#,
                limits: limits) == nil)
        #expect(
            try documentError(
                #"{"messages":[{"role":"user","content":"123456"},{"role":"user","content":"12345"}]}"#,
                limits: limits)?.field == "messages")
        #expect(
            try documentError(
                #"{"prompt":"12345","messages":[{"role":"user","content":"123456"}]}"#,
                limits: limits)?.field == "prompt")
    }

    @Test func defaultPromptLimit() throws {
        let big = String(repeating: "x", count: Limits.default.maxPromptBytes)
        #expect(try documentError("{\"prompt\":\"\(big)\"}") == nil)
        #expect(try documentError("{\"prompt\":\"\(big)y\"}")?.field == "prompt")
    }

    @Test func messageCountLimit() throws {
        let limits = Limits.with { $0.maxMessages = 2 }
        let m = #"{"role":"user","content":"a"}"#
        #expect(try documentError(#"{"messages":["# + [m, m].joined(separator: ",") + "]}", limits: limits) == nil)
        #expect(try documentError(#"{"messages":["# + [m, m, m].joined(separator: ",") + "]}", limits: limits)?.field == "messages")
    }

    @Test func metadataLimitIsOnItsSerializedSize() throws {
        let limits = Limits.with { $0.maxMetadataBytes = 12 }
        #expect(try documentError(#"{"prompt":"p","metadata":{"a":"1234"}}"#, limits: limits) == nil)  // {"a":"1234"} = 12
        let error = try #require(try documentError(#"{"prompt":"p","metadata":{"a":"12345"}}"#, limits: limits))
        #expect(error.field == "metadata")
        #expect(error.message.contains("13 bytes"))
    }

    @Test func maxTokensLimit() throws {
        let limits = Limits.with { $0.maxTokens = 100 }
        #expect(try documentError(#"{"prompt":"p","maxTokens":100}"#, limits: limits) == nil)
        #expect(try documentError(#"{"prompt":"p","maxTokens":101}"#, limits: limits)?.field == "maxTokens")
    }
}

@Suite("Job.decode: intake errors")
struct JobDecodeTests {
    @Test func validBytes() throws {
        let j = try Job.decode(Array(#"{"prompt":"hi"}"#.utf8))
        #expect(j.prompt == "hi")
    }

    @Test func tooLargeIsCheckedBeforeParsing() throws {
        let limits = Limits.with { $0.maxFileBytes = 16 }
        let exact = Array(#"{"prompt":"abc"}"#.utf8)
        #expect(exact.count == 16)
        #expect(intakeError(exact, limits: limits) == nil)
        let e = try #require(intakeError(Array(#"{"prompt":"abcd"}"#.utf8), limits: limits))
        #expect(e.kind == .tooLarge)
        // Even garbage over the limit is "too large", not "invalid JSON".
        #expect(intakeError([UInt8](repeating: 0xFF, count: 17), limits: limits)?.kind == .tooLarge)
    }

    @Test func emptyFileIsTruncatedJSON() throws {
        let e = try #require(intakeError([]))
        #expect(e.kind == .invalidJSON)
        #expect(e.truncated)
        #expect(e.message == "file is empty")
    }

    @Test func cutOffJSONIsTruncated() throws {
        let e = try #require(intakeError(Array(#"{"prompt":"hel"#.utf8)))
        #expect(e.kind == .invalidJSON)
        #expect(e.truncated)
        #expect(e.field == nil)
    }

    @Test func brokenJSONIsNotTruncated() throws {
        let e = try #require(intakeError(Array(#"{"prompt":}"#.utf8)))
        #expect(e.kind == .invalidJSON)
        #expect(!e.truncated)
        #expect(e.message.contains("line 1, column 11"))
    }

    @Test func invalidJobNamesTheField() throws {
        let e = try #require(intakeError(Array(#"{"prompt":"hi","maxTokens":0}"#.utf8)))
        #expect(e.kind == .invalidJob)
        #expect(e.field == "maxTokens")
        #expect(!e.truncated)
        #expect(e.description.hasPrefix("invalid-job: maxTokens"))
    }

    @Test func kindsHaveStableNames() {
        #expect(IntakeError.Kind.invalidJSON.rawValue == "invalid-json")
        #expect(IntakeError.Kind.invalidJob.rawValue == "invalid-job")
        #expect(IntakeError.Kind.tooLarge.rawValue == "too-large")
        #expect(IntakeError.Kind.badId.rawValue == "bad-id")
        #expect(IntakeError.Kind.idClash.rawValue == "id-clash")
        #expect(IntakeError.Kind.notRegularFile.rawValue == "not-a-regular-file")
        #expect(IntakeError.Kind.abandoned.rawValue == "abandoned")
    }
}

@Suite("Job documents: a job's own retry settings and deadline")
struct JobRetryTests {
    @Test("retry and deadline are read, and written back the same")
    func roundTrip() throws {
        let j = try job(#"{"prompt": "x", "deadline": "2026-11-26T11:00:00Z", "retry": {"maxAttempts": 5, "timeBudgetSeconds": 90.5}}"#)
        #expect(j.deadline == "2026-11-26T11:00:00Z")
        #expect(j.retry == JobRetry(maxAttempts: 5, timeBudgetMs: 90_500))
        #expect(try Job(json: j.json()) == j)
        #expect(try job(#"{"prompt": "x", "retry": {}}"#).retry == JobRetry())
        #expect(try job(#"{"prompt": "x", "retry": null, "deadline": null}"#).retry == nil)
    }

    @Test(
        "bad values are refused, naming the field",
        arguments: [
            (#"{"prompt": "x", "deadline": "tomorrow"}"#, "deadline"),
            (#"{"prompt": "x", "deadline": 1764151200}"#, "deadline"),
            (#"{"prompt": "x", "retry": 5}"#, "retry"),
            (#"{"prompt": "x", "retry": {"maxAttempts": 0}}"#, "retry.maxAttempts"),
            (#"{"prompt": "x", "retry": {"maxAttempts": 101}}"#, "retry.maxAttempts"),
            (#"{"prompt": "x", "retry": {"maxAttempts": "3"}}"#, "retry.maxAttempts"),
            (#"{"prompt": "x", "retry": {"timeBudgetSeconds": 0}}"#, "retry.timeBudgetSeconds"),
            (#"{"prompt": "x", "retry": {"timeBudgetSeconds": 604801}}"#, "retry.timeBudgetSeconds"),
            (#"{"prompt": "x", "retry": {"timeBudgetSeconds": "1h"}}"#, "retry.timeBudgetSeconds"),
            (#"{"prompt": "x", "retry": {"budget": 10}}"#, "retry.budget"),
            (#"{"prompt": "x", "Deadline": "2026-11-26T11:00:00Z"}"#, "Deadline"),
        ])
    func refused(_ text: String, _ field: String) throws {
        #expect(try documentError(text)?.field == field)
    }
}
