import JSON
import Spool
import Submit
import Testing

@Suite("SHA-256 and tokens")
struct IdentityTests {
    @Test(
        "FIPS 180-4 test vectors",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            (String(repeating: "a", count: 1000), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
        ])
    func vectors(_ input: String, _ hex: String) {
        #expect(SHA256.hex(Array(input.utf8)) == hex)
    }

    @Test("token file: hashed tokens map to user and tenant; bad lines name their line")
    func tokenFile() throws {
        let text = "# comment\n\nsha256:\(SHA256.hex(Array("t1".utf8))) alice acme\nsha256:\(SHA256.hex(Array("t2".utf8))) bob\n"
        let file = try TokenFile.parse(text)
        #expect(file.identify(token: "t1") == Identity(userId: "alice", tenantId: "acme"))
        #expect(file.identify(token: "t2") == Identity(userId: "bob"))
        #expect(file.identify(token: "t3") == nil)
        #expect(throws: TokenFileError.self) { try TokenFile.parse("sha256:abcd alice\n") }
        #expect(throws: TokenFileError.self) { try TokenFile.parse("x\n") }
        #expect(throws: TokenFileError.self) { try TokenFile.parse("sha256:\(SHA256.hex([1])) ../evil\n") }
    }

    @Test("a token file line holding the hash of the empty string is refused, naming its line; an empty token is no one's")
    func emptyToken() throws {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 alice acme\n"
        #expect(SHA256.hex([]) == String(empty.dropFirst(7).prefix(64)))
        do {
            _ = try TokenFile.parse("# ok\nsha256:\(SHA256.hex(Array("t1".utf8))) bob\n" + empty)
            Issue.record("the empty token's hash was accepted")
        } catch {
            #expect(error.line == 3)
            #expect(error.description.contains("empty"))
        }
        // Even a file that somehow holds it never maps "" (or spaces, trimmed away) to anyone.
        let file = TokenFile(entries: [TokenEntry(digest: SHA256.hash([]), identity: Identity(userId: "alice"))])
        #expect(file.identify(token: "") == nil)
        for header in ["Bearer ", "Bearer    ", "Bearer \t"] {
            let r = try Request.fromCGI { ["HTTP_AUTHORIZATION": header][$0] }
            #expect(throws: Problem.self) { try Authenticator.identify(r) { () throws(Problem) -> TokenFile? in file } }
        }
    }

    @Test("REMOTE_USER wins; empty counts as absent; Bearer checked; none → 401")
    func authenticator() throws {
        let tokens = try TokenFile.parse("sha256:\(SHA256.hex(Array("tok".utf8))) alice acme\n")
        func id(_ env: [String: String]) throws(Problem) -> Identity {
            let r = try Request.fromCGI { env[$0] }
            return try Authenticator.identify(r) { () throws(Problem) -> TokenFile? in tokens }
        }
        #expect(try id(["REMOTE_USER": "bob"]) == Identity(userId: "bob"))
        #expect(try id(["REMOTE_USER": "", "HTTP_AUTHORIZATION": "Bearer tok"]) == Identity(userId: "alice", tenantId: "acme"))
        #expect(try id(["HTTP_AUTHORIZATION": "bearer tok"]).userId == "alice")
        #expect(throws: Problem.self) { try id([:]) }
        #expect(throws: Problem.self) { try id(["HTTP_AUTHORIZATION": "Basic YTpi"]) }
        #expect(throws: Problem.self) { try id(["HTTP_AUTHORIZATION": "Bearer nope"]) }
        #expect(throws: Problem.self) { try id(["REMOTE_USER": "a b"]) }
        do { _ = try id([:]) } catch { #expect(error.status == 401) }
    }

    @Test("ownership: same user and tenant only; documents without a user belong to no one")
    func owns() throws {
        let alice = Identity(userId: "alice", tenantId: "acme")
        #expect(alice.owns(try JSONParser.parse(#"{"userId":"alice","tenantId":"acme"}"#)))
        #expect(!alice.owns(try JSONParser.parse(#"{"userId":"alice","tenantId":"other"}"#)))
        #expect(!alice.owns(try JSONParser.parse(#"{"userId":"alice"}"#)))
        #expect(!alice.owns(try JSONParser.parse(#"{"prompt":"x"}"#)))
        #expect(Identity(userId: "alice").owns(try JSONParser.parse(#"{"userId":"alice"}"#)))
        #expect(alice.owns(try JSONParser.parse(#"{"job":{"userId":"alice","tenantId":"acme"}}"#)))
    }
}

@Suite("Routing and requests")
struct RoutingTests {
    @Test(
        "routes by the last segments and keeps the mount prefix",
        arguments: [
            ("POST", "/jobs", Route.submit, "/jobs"),
            ("GET", "/jobs", Route.list, "/jobs"),
            ("GET", "/api/v1/jobs/abc", Route.show(id: "abc"), "/api/v1/jobs"),
            ("DELETE", "/jobs/abc", Route.cancel(id: "abc"), "/jobs"),
            ("GET", "/jobs/abc/events", Route.events(id: "abc"), "/jobs"),
            ("GET", "/jobs/jobs", Route.show(id: "jobs"), "/jobs"),
            ("GET", "/jobs/events", Route.show(id: "events"), "/jobs"),
            ("GET", "//jobs//x/", Route.show(id: "x"), "/jobs"),
            ("GET", "/jobs/abc/events/", Route.events(id: "abc"), "/jobs"),
        ])
    func routes(_ method: String, _ path: String, _ route: Route, _ base: String) throws {
        let r = try Route.resolve(method: method, path: path)
        #expect(r.route == route)
        #expect(r.base == base)
    }

    @Test(
        "wrong method → 405 with Allow; bad id or path → 404",
        arguments: [
            ("PUT", "/jobs", 405), ("POST", "/jobs/x", 405), ("POST", "/jobs/x/events", 405),
            ("GET", "/jobs/..", 404), ("GET", "/jobs/.hidden", 404), ("GET", "/other", 404), ("GET", "/", 404),
        ])
    func refused(_ method: String, _ path: String, _ status: Int) {
        do {
            _ = try Route.resolve(method: method, path: path)
            Issue.record("routed \(method) \(path)")
        } catch {
            #expect(error.status == status)
            if status == 405 { #expect(error.extraHeaders["Allow"] != nil) }
        }
    }

    @Test("CGI variables: empty is absent, SCRIPT_NAME + PATH_INFO, bad CONTENT_LENGTH → 400")
    func request() throws {
        let r = try Request.fromCGI {
            [
                "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/api", "PATH_INFO": "/jobs", "CONTENT_LENGTH": "12",
                "REMOTE_USER": "", "HTTP_IDEMPOTENCY_KEY": "k", "QUERY_STRING": "limit=5&x=%41+b",
            ][$0]
        }
        #expect(r.path == "/api/jobs")
        #expect(r.contentLength == 12)
        #expect(r.remoteUser == nil)
        #expect(r.idempotencyKey == "k")
        #expect(r.queryValue("limit") == "5")
        #expect(r.queryValue("x") == "A b")
        for bad in ["-1", "12a", "99999999999999999999", " 1"] {
            #expect(throws: Problem.self) { try Request.fromCGI { ["CONTENT_LENGTH": bad][$0] } }
        }
    }

    @Test("responses always carry Status:, and problems are RFC 9457 documents")
    func responses() throws {
        let p = Problem(.badRequest, "invalid-job", "The job is not valid.", detail: "prompt: must not be empty", field: "prompt")
        let text = String(decoding: p.response.cgiBytes(), as: UTF8.self)
        #expect(text.hasPrefix("Status: 400 Bad Request\r\n"))
        #expect(text.contains("Content-Type: application/problem+json\r\n"))
        let body = try JSONParser.parse(String(text.split(separator: "\r\n\r\n", maxSplits: 1)[1]))
        #expect(body["type"]?.stringValue == "urn:llmspool:problem:invalid-job")
        #expect(body["status"]?.intValue == 400)
        #expect(body["field"]?.stringValue == "prompt")
        #expect(body["title"] != nil && body["detail"] != nil)
    }
}

@Suite("Submissions and events")
struct SubmissionTests {
    let alice = Identity(userId: "alice", tenantId: "acme")

    @Test("text/plain is the prompt; JSON is a job; identity is stamped")
    func accepted() throws {
        let t = try Submission.job(body: Array("hi".utf8), contentType: "text/plain; charset=UTF-8", identity: alice)
        #expect(t.prompt == "hi")
        #expect(t.userId == "alice" && t.tenantId == "acme")
        let j = try Submission.job(
            body: Array(#"{"prompt":"p","model":"m","maxTokens":5,"userId":"alice","x":1}"#.utf8),
            contentType: "application/json", identity: alice)
        #expect(j.model == "m" && j.maxTokens == 5 && j.extra.count == 1)
    }

    @Test(
        "refusals name the field",
        arguments: [
            (#"{"prompt":5}"#, "application/json", 400, "prompt"),
            (#"{"messages":[{"role":"x","content":"c"}]}"#, "application/json", 400, "messages[0].role"),
            (#"{"prompt":"p","jobId":"mine"}"#, "application/json", 400, "jobId"),
            (#"{"prompt":"p","tenantId":"other"}"#, "application/json", 400, "tenantId"),
            (#"{"prompt":"p","maxtokens":3}"#, "application/json", 400, "maxtokens"),
            (#"[1]"#, "application/json", 400, ""),
            (#"{"prompt":"p",}"#, "application/json", 400, ""),
            ("", "text/plain", 400, "prompt"),
            ("x", "application/xml", 415, "Content-Type"),
            ("x", "text/plain; charset=latin1", 415, "Content-Type"),
            ("x", "nonsense", 415, "Content-Type"),
        ])
    func refused(_ body: String, _ type: String, _ status: Int, _ field: String) {
        do {
            _ = try Submission.job(body: Array(body.utf8), contentType: type, identity: alice)
            Issue.record("accepted \(body)")
        } catch {
            #expect(error.status == status, "\(error)")
            #expect(error.field == field, "\(error)")
        }
    }

    @Test("invalid UTF-8 in a text/plain prompt is refused")
    func utf8() {
        #expect(throws: Problem.self) { try Submission.job(body: [0xFF, 0xFE], contentType: "text/plain", identity: alice) }
    }

    @Test("event format and the resume rule")
    func events() {
        #expect(EventStream.resumeStage(nil) == 0)
        #expect(EventStream.resumeStage("2") == 2)
        #expect(EventStream.resumeStage(" 3 ") == 3)
        #expect(EventStream.resumeStage("9") == 0)
        #expect(EventStream.resumeStage("x") == 0)
        let e = String(decoding: EventStream.event(stage: 2, name: "running", data: .object(["a": .integer(1)])), as: UTF8.self)
        #expect(e == "id: 2\nevent: running\ndata: {\"a\":1}\n\n")
        #expect(EventStream.stage(of: .new) == 1 && EventStream.stage(of: .cur) == 2 && EventStream.stage(of: .failed) == 3)
    }
}
