import Foundation
import Spool
import Submit
import Testing

/// The per-tenant limit on waiting jobs (429), through the real handler on a real spool.
@Suite("Waiting-job limit")
struct QuotaTests {
    static let users = [("alice", "acme"), ("carol", "other"), ("big", "bigcorp"), ("bob", nil)]

    /// A spool, a token file for `users` (token = user name), and a handler with the given limit.
    struct Fixture {
        let dir: TempDir
        let spool: Spool
        let handler: Handler

        init(limit: Int) throws {
            dir = try TempDir("quota")
            spool = try Spool.create(at: dir.file("spool"))
            let lines = QuotaTests.users.map { "sha256:\(SHA256.hex(Array($0.0.utf8))) \($0.0) \($0.1 ?? "")\n" }
            try Data(lines.joined().utf8).write(to: URL(fileURLWithPath: dir.file("tokens")))
            var c = Configuration()
            c.spoolPath = dir.file("spool")
            c.tokensPath = dir.file("tokens")
            c.maxWaitingPerTenant = limit
            handler = Handler(configuration: c)
        }

        func post(_ user: String, _ prompt: String = "p") -> Response {
            let r = Request(method: "POST", path: "/jobs", contentType: "text/plain", contentLength: prompt.utf8.count,
                            authorization: "Bearer " + user)
            return handler.respond(r, body: .bytes(Array(prompt.utf8)))
        }

        /// Enqueues `n` jobs of `identity` as the endpoint would have (ids with its tag), in one batch.
        func backlog(_ identity: Identity, _ n: Int) throws {
            let jobs = (0..<n).map { k in
                var j = Job(prompt: "backlog \(k)")
                j.jobId = JobID.generate(tag: identity.quotaTag)
                j.userId = identity.userId
                j.tenantId = identity.tenantId
                return j
            }
            _ = try spool.enqueue(batch: jobs, durability: .volatile)
        }

        /// `identity`'s waiting jobs as the files in `new/` say (every file read).
        func waiting(of identity: Identity) throws -> [String] {
            try spool.waiting().filter { name in
                guard case .success(let job)? = spool.peek(name)?.job else { return false }
                return job.userId == identity.userId && job.tenantId == identity.tenantId
            }
        }
    }

    let alice = Identity(userId: "alice", tenantId: "acme")

    @Test("429 at the limit while another tenant has a backlog far over it; the others are unaffected")
    func limitWithABigBacklog() throws {
        let f = try Fixture(limit: 25)
        defer { f.dir.remove() }
        try f.backlog(Identity(userId: "big", tenantId: "bigcorp"), 3000)
        for k in 0..<25 {
            let r = f.post("alice", "job \(k)")
            #expect(r.status == 202, "job \(k): \(r)")
            let id = try #require(try JSONParser.parse(r.body)["jobId"]?.stringValue)
            #expect(JobID.tag(of: id) == alice.quotaTag, "the id carries the tenant's tag: \(id)")
        }
        let over = f.post("alice", "one too many")
        #expect(over.status == 429, "\(over)")
        #expect(over.header("Retry-After") == "10")
        #expect(try JSONParser.parse(over.body)["type"]?.stringValue == "urn:llmspool:problem:too-many-waiting-jobs")
        #expect(try f.waiting(of: alice).count == 25, "nothing was written for the refused job")
        #expect(f.post("carol").status == 202, "another tenant is under its limit")
        #expect(f.post("bob").status == 202, "a user without a tenant counts on their own")
        #expect(f.post("big").status == 429, "the tenant with the backlog is over its limit")
        #expect(try f.spool.waiting().count == 3000 + 25 + 2)
    }

    @Test("the count follows claims, finished jobs and crashed claims given back")
    func countAfterClaims() throws {
        let f = try Fixture(limit: 10)
        defer { f.dir.remove() }
        try f.backlog(Identity(userId: "big", tenantId: "bigcorp"), 1500)
        for _ in 0..<10 { #expect(f.post("alice").status == 202) }
        #expect(f.post("alice").status == 429)

        // A worker claims three of alice's jobs: three more are accepted, then 429 again.
        let mine = try f.waiting(of: alice)
        var claims: [Claim] = []
        for name in mine.prefix(3) {
            guard case .claimed(let c) = try f.spool.claim(name) else { Issue.record("could not claim \(name)"); continue }
            claims.append(c)
        }
        #expect(claims.count == 3)
        for _ in 0..<3 { #expect(f.post("alice").status == 202) }
        #expect(f.post("alice").status == 429)
        #expect(try f.waiting(of: alice).count == 10)

        // One finishes (stays out of new/), one is given back (counts again), one's worker dies.
        try f.spool.finish(claims[0], answer: Answer(response: "ok"))
        try f.spool.giveBack(claims[1], reason: "shutting down")
        claims.removeAll()  // the third claim's lock drops, as when its process dies
        #expect(try f.spool.recover().givenBack.count == 1)
        #expect(try f.waiting(of: alice).count == 12)
        #expect(f.post("alice").status == 429, "12 waiting, the limit is 10")

        // The backlog of the other tenant drains: it was never part of alice's count.
        for name in try f.waiting(of: alice).prefix(3) { _ = try f.spool.claim(name) }
        #expect(f.post("alice").status == 202, "9 waiting after three more claims")
        #expect(f.post("alice").status == 429)
    }
}
