import Foundation
import JSON
import Spool
import Submit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// llmspool-cgi under real lighttpd, nginx + fcgiwrap and Apache (mod_cgid), started from
/// contrib/'s configs and driven over HTTP with curl.
@Suite("Under real web servers", .serialized)
struct ServerTests {
    static let kinds = ServerKind.allCases.filter(\.available)

    @Test("POST → 202 + Location, durable in new/; GET shows it; GET /jobs lists it", arguments: kinds)
    func accepted(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let r = try s.post("alice", "Say hello")
        #expect(r.status == 202, "\(r)")
        let id = try #require(r.json?["jobId"]?.stringValue)
        #expect(r.json?["status"]?.stringValue == "queued")
        #expect(r.header("Location") == "/jobs/\(id)")
        #expect(s.names("new") == [id + ".json"])
        let job = try JSONParser.parse(try Data(contentsOf: URL(fileURLWithPath: s.spool + "/new/" + id + ".json")).map { $0 })
        #expect(job["prompt"]?.stringValue == "Say hello")
        #expect(job["userId"]?.stringValue == "alice")
        #expect(job["tenantId"]?.stringValue == "acme")

        let json = try s.post(
            "alice", #"{"messages":[{"role":"user","content":"Hi"}],"maxTokens":20,"metadata":{"k":"v"}}"#, type: "application/json; charset=utf-8")
        #expect(json.status == 202, "\(json)")

        let g = try s.get("alice", "/jobs/\(id)")
        #expect(g.status == 200, "\(g)")
        #expect(g.json?["status"]?.stringValue == "queued")
        let list = try s.get("alice", "/jobs")
        #expect(list.json?["jobs"]?.arrayValue?.count == 2, "\(list)")
    }

    @Test("two users cannot see each other's jobs; a tenant's other user neither", arguments: kinds)
    func ownership(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let id = try #require(try s.post("alice", "mine").json?["jobId"]?.stringValue)
        _ = try s.post("carol", "carol's")
        for user in ["bob", "carol"] {
            let g = try s.get(user, "/jobs/\(id)")
            #expect(g.status == 404, "\(user): \(g)")
            #expect(g.header("Content-Type") == "application/problem+json")
            #expect(try s.get(user, "/jobs/\(id)/events").status == 404)
            #expect(try HTTP.request("DELETE", s.base + "/jobs/\(id)", headers: bearer(user)).status == 404)
        }
        #expect(try s.get("bob", "/jobs").json?["jobs"]?.arrayValue?.isEmpty == true)
        #expect(try s.get("carol", "/jobs").json?["jobs"]?.arrayValue?.count == 1)
        #expect(try s.get("alice", "/jobs/no-such-job").status == 404)
    }

    @Test("events stream queued → running → done with the result, then resume with Last-Event-ID", arguments: kinds)
    func events(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let id = try #require(try s.post("alice", "echo me").json?["jobId"]?.stringValue)
        // The stream starts while the job waits; the worker starts after, so every stage is seen.
        nonisolated(unsafe) var stream: HTTPResult?
        let reader = Thread { stream = try? s.get("alice", "/jobs/\(id)/events", maxTime: 30) }
        reader.start()
        usleep(500_000)
        try s.startWorker(delayMs: 400)
        #expect(eventually(30) { reader.isFinished }, "the stream did not end when the job did")
        let r = try #require(stream)
        #expect(r.status == 200)
        #expect(r.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        let events = parseEvents(r.text)
        #expect(events.map(\.name) == ["queued", "running", "done"], "\(r.text.prefix(2000))")
        #expect(events.map(\.id) == ["1", "2", "3"])
        let done = try JSONParser.parse(events.last?.data ?? "")
        #expect(done["response"]?.stringValue == "echo me")
        #expect(done["status"]?.stringValue == "done")

        let resumed = try s.get("alice", "/jobs/\(id)/events", headers: ["Last-Event-ID": "1"])
        #expect(parseEvents(resumed.text).map(\.id) == ["3"], "\(resumed)")
        let over = try s.get("alice", "/jobs/\(id)/events", headers: ["Last-Event-ID": "3"])
        #expect(over.status == 204)
        let shown = try s.get("alice", "/jobs/\(id)")
        #expect(shown.json?["status"]?.stringValue == "done")
        #expect(shown.json?["response"]?.stringValue == "echo me")
    }

    @Test("401 without or with a bad token; Authorization reaches the program", arguments: kinds)
    func identity(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let none = try s.post(nil, "x")
        #expect(none.status == 401, "\(none)")
        #expect(none.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(none.header("Content-Type") == "application/problem+json")
        let bad = try s.post(nil, "x", headers: ["Authorization": "Bearer wrong"])
        #expect(bad.status == 401)
        #expect(bad.json?["type"]?.stringValue == "urn:llmspool:problem:invalid-token")
        #expect(bad.json?["field"]?.stringValue == "Authorization")
        #expect(s.names("new").isEmpty)
    }

    @Test("400 names the field, 415, 413, 405, and nothing is written", arguments: kinds)
    func badInput(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let syntax = try s.post("alice", "{\"prompt\": ", type: "application/json")
        #expect(syntax.status == 400, "\(syntax)")
        #expect(syntax.json?["type"]?.stringValue == "urn:llmspool:problem:invalid-json")
        let field = try s.post("alice", #"{"prompt":"x","temperature":7}"#, type: "application/json")
        #expect(field.status == 400)
        #expect(field.json?["field"]?.stringValue == "temperature", "\(field)")
        #expect(field.json?["status"]?.intValue == 400)
        #expect(field.json?["title"]?.stringValue != nil && field.json?["detail"]?.stringValue != nil)
        let typo = try s.post("alice", #"{"prompt":"x","max_tokens":7}"#, type: "application/json")
        #expect(typo.json?["field"]?.stringValue == "max_tokens")
        let spoof = try s.post("alice", #"{"prompt":"x","userId":"bob"}"#, type: "application/json")
        #expect(spoof.status == 400)
        #expect(spoof.json?["field"]?.stringValue == "userId")
        let media = try s.post("alice", "<x/>", type: "application/xml")
        #expect(media.status == 415, "\(media)")
        #expect(media.json?["field"]?.stringValue == "Content-Type")
        let big = try s.post("alice", String(repeating: "a", count: (1 << 20) + 100))
        #expect(big.status == 413, "\(big)")
        #expect(big.header("Content-Type") == "application/problem+json")
        let method = try HTTP.request("PUT", s.base + "/jobs", headers: bearer("alice"), body: Array("x".utf8))
        #expect(method.status == 405)
        #expect(method.header("Allow") == "GET, HEAD, POST")
        #expect(s.names("new").isEmpty)
        #expect(s.names("tmp").isEmpty)
    }

    @Test("a client that disconnects mid-body leaves nothing in new/", arguments: kinds)
    func disconnect(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(s.port).bigEndian
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(rc == 0)
        let head =
            "POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-secret-token\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\nonly part of it"
        _ = head.withCString { write(fd, $0, strlen($0)) }
        usleep(300_000)
        close(fd)
        usleep(500_000)
        #expect(s.names("new").isEmpty)
        // The server is still fine.
        #expect(try s.post("alice", "after").status == 202)
    }

    @Test("DELETE cancels a waiting job (dead letter kind cancelled), 409 once running", arguments: kinds)
    func cancel(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let id = try #require(try s.post("alice", "cancel me").json?["jobId"]?.stringValue)
        let d = try HTTP.request("DELETE", s.base + "/jobs/\(id)", headers: bearer("alice"))
        #expect(d.status == 200, "\(d)")
        #expect(d.json?["status"]?.stringValue == "cancelled")
        #expect(s.names("new").isEmpty)
        #expect(s.names("failed") == [id + ".json"])
        let again = try HTTP.request("DELETE", s.base + "/jobs/\(id)", headers: bearer("alice"))
        #expect(again.status == 200)

        // A job held by a worker (here: a claim this test holds) cannot be cancelled.
        let id2 = try #require(try s.post("alice", "running").json?["jobId"]?.stringValue)
        let spool = try Spool(path: s.spool)
        guard case .claimed(let claim) = try spool.claim(id2 + ".json") else { Issue.record("claim failed"); return }
        let busy = try HTTP.request("DELETE", s.base + "/jobs/\(id2)", headers: bearer("alice"))
        #expect(busy.status == 409, "\(busy)")
        #expect(busy.json?["type"]?.stringValue == "urn:llmspool:problem:job-running")
        #expect(try s.get("alice", "/jobs/\(id2)").json?["status"]?.stringValue == "running")
        try spool.finish(claim, answer: Answer(response: "ok"))
        #expect(try HTTP.request("DELETE", s.base + "/jobs/\(id2)", headers: bearer("alice")).status == 409)

        // A job handed to Kafka by the bridge is "forwarded", and cannot be cancelled either.
        let id3 = try #require(try s.post("alice", "elsewhere").json?["jobId"]?.stringValue)
        guard case .held(let hold) = try spool.hold(id3 + ".json") else { Issue.record("hold failed"); return }
        try spool.forward(batch: [hold])
        #expect(try s.get("alice", "/jobs/\(id3)").json?["status"]?.stringValue == "forwarded")
        let moved = try HTTP.request("DELETE", s.base + "/jobs/\(id3)", headers: bearer("alice"))
        #expect(moved.status == 409 && moved.json?["type"]?.stringValue == "urn:llmspool:problem:job-forwarded", "\(moved)")
        #expect(try s.get("bob", "/jobs/\(id3)").status == 404, "a forwarded job is still its owner's only")
    }

    @Test("Idempotency-Key: a retry returns the same job; another body → 422; per user", arguments: kinds)
    func idempotency(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let key = ["Idempotency-Key": "retry-1"]
        let a = try s.post("alice", "once", headers: key)
        let b = try s.post("alice", "once", headers: key)
        #expect(a.status == 202 && b.status == 202)
        #expect(a.json?["jobId"] == b.json?["jobId"])
        #expect(b.header("Idempotent-Replayed") == "true")
        #expect(s.names("new").count == 1)
        let other = try s.post("alice", "different", headers: key)
        #expect(other.status == 422, "\(other)")
        let bob = try s.post("bob", "once", headers: key)
        #expect(bob.status == 202)
        #expect(bob.json?["jobId"] != a.json?["jobId"])
        #expect(s.names("new").count == 2)
    }

    @Test("429 with Retry-After when a tenant has too many waiting jobs", arguments: kinds)
    func tooMany(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let spool = try Spool(path: s.spool)
        var jobs: [Job] = []
        for k in 0..<1000 {
            var j = Job(prompt: "filler \(k)")
            j.userId = "bob"
            j.tenantId = "acme"
            j.jobId = JobID.generate(tag: Identity(userId: "bob", tenantId: "acme").quotaTag)  // as the endpoint mints them
            jobs.append(j)
        }
        _ = try spool.enqueue(batch: jobs, durability: .volatile)
        let r = try s.post("alice", "one more")
        #expect(r.status == 429, "\(r)")
        #expect(r.header("Retry-After") != nil)
        #expect(try s.post("carol", "another tenant").status == 202)
        #expect(s.names("new").count == 1001)
    }

    /// Apache's mod_cgid turns a query string without `=` into the program's arguments (split on
    /// `+`): `--tokens FILE` once chose the token file, and `--tokens -` read it from the request
    /// body. Every server gets the same requests; none may change who the caller is.
    @Test("a query string that a server makes into arguments changes nothing: 401, nothing written", arguments: kinds)
    func queryArguments(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let id = try #require(try s.post("alice", "alice's secret").json?["jobId"]?.stringValue)
        // The attacker's own token file, naming alice, in a place the program can read.
        let forged = "sha256:\(SHA256.hex(Array("attacker".utf8))) alice acme\n"
        try forged.write(toFile: s.dir.file("forged"), atomically: true, encoding: .utf8)
        _ = try run("/bin/chmod", ["0644", s.dir.file("forged")])
        let attacker = ["Authorization": "Bearer attacker"]
        for query in ["--tokens+\(s.dir.file("forged"))", "--tokens=\(s.dir.file("forged"))", "--tokens+-", "--help", "--spool+/nonexistent"] {
            let list = try s.get(nil, "/jobs?" + query, headers: attacker)
            #expect(list.status == 401, "GET ?\(query): \(list)")
            #expect(list.text.contains("alice's") == false)
            let one = try s.get(nil, "/jobs/\(id)?" + query, headers: attacker)
            #expect(one.status == 401, "GET /jobs/ID?\(query): \(one)")
            let cancel = try HTTP.request("DELETE", s.base + "/jobs/\(id)?" + query, headers: attacker)
            #expect(cancel.status == 401, "DELETE ?\(query): \(cancel)")
            // `--tokens -` would read the token file from standard input: the body.
            let post = try HTTP.request(
                "POST", s.base + "/jobs?" + query, headers: attacker.merging(["Content-Type": "text/plain"]) { a, _ in a },
                body: Array(forged.utf8))
            #expect(post.status == 401, "POST ?\(query): \(post)")
        }
        #expect(s.names("new") == [id + ".json"], "nothing was cancelled or added")
        #expect(s.names("failed").isEmpty)
        // The owner still gets her job, whatever the query says.
        let own = try s.get("alice", "/jobs/\(id)?--spool+/nonexistent")
        #expect(own.status == 200, "\(own)")
        #expect(own.json?["jobId"]?.stringValue == id)
    }

    @Test("HEAD answers as GET without a body; …/events/ with a trailing slash streams; 202 says submittedAt", arguments: kinds)
    func headAndSlash(_ kind: ServerKind) throws {
        let s = try Server(kind)
        defer { s.close() }
        let posted = try s.post("alice", "echo me")
        #expect(posted.status == 202)
        let id = try #require(posted.json?["jobId"]?.stringValue)
        let submitted = try #require(posted.json?["submittedAt"]?.stringValue, "\(posted)")
        #expect(submitted.hasSuffix("Z") && submitted.count >= 20)
        let job = try JSONParser.parse(try Data(contentsOf: URL(fileURLWithPath: s.spool + "/new/" + id + ".json")).map { $0 })
        #expect(job["submittedAt"]?.stringValue == submitted, "the 202 says what the spool holds")

        for path in ["/jobs/\(id)", "/jobs", "/jobs/\(id)/events"] {
            let head = try HTTP.request("HEAD", s.base + path, headers: bearer("alice"), maxTime: 10)
            #expect(head.status == 200, "HEAD \(path): \(head)")
            #expect(head.body.isEmpty, "HEAD \(path)")
        }
        #expect(try HTTP.request("HEAD", s.base + "/jobs/\(id)", maxTime: 10).status == 401)
        #expect(try HTTP.request("HEAD", s.base + "/jobs/\(id)", headers: bearer("bob"), maxTime: 10).status == 404)

        try s.startWorker()
        #expect(eventually(20) { s.names("done") == [id + ".json"] })
        let slash = try s.get("alice", "/jobs/\(id)/events/")
        #expect(slash.status == 200, "\(slash)")
        #expect(parseEvents(slash.text).last?.name == "done", "\(slash)")
    }

    @Test("503 and no partial file when the spool's disk is full", arguments: kinds)
    func diskFull(_ kind: ServerKind) throws {
        guard geteuid() == 0 else { return }  // mounting a small tmpfs needs root (CI runs as root)
        let mnt = try TempDir("full")
        defer { mnt.remove() }
        guard (try? run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt.path]))?.status == 0 else { return }
        defer { _ = try? run("/bin/umount", [mnt.path]) }
        try Spool.create(at: mnt.file("spool"))
        let s = try Server(kind, spool: mnt.file("spool"))
        defer { s.close() }
        // Fill the disk.
        _ = try? run("/bin/dd", ["if=/dev/zero", "of=" + mnt.file("filler"), "bs=4k", "count=1000"])
        let r = try s.post("alice", String(repeating: "x", count: 20_000))
        #expect(r.status == 503, "\(r)")
        #expect(r.header("Retry-After") != nil)
        #expect(s.names("new").isEmpty)
        #expect(s.names("tmp").isEmpty)
    }
}

struct SSEEvent: Equatable {
    var id: String?
    var name: String?
    var data: String
}

/// Splits an event stream into events (comments and `retry:` dropped).
func parseEvents(_ text: String) -> [SSEEvent] {
    var events: [SSEEvent] = []
    for block in text.components(separatedBy: "\n\n") {
        var e = SSEEvent(id: nil, name: nil, data: "")
        var any = false
        for line in block.split(separator: "\n") {
            if line.hasPrefix("id: ") { e.id = String(line.dropFirst(4)); any = true }
            if line.hasPrefix("event: ") { e.name = String(line.dropFirst(7)); any = true }
            if line.hasPrefix("data: ") { e.data += String(line.dropFirst(6)); any = true }
        }
        if any, e.name != nil { events.append(e) }
    }
    return events
}
