import Basics
import Foundation
import JSON
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

        init(limit: Int, countCacheMilliseconds: Int64 = Configuration().waitingCountMaxAge.wholeMilliseconds) throws {
            dir = try TempDir("quota")
            spool = try Spool.create(at: dir.file("spool"))
            let lines = QuotaTests.users.map { "sha256:\(SHA256.hex(Array($0.0.utf8))) \($0.0) \($0.1 ?? "")\n" }
            try Data(lines.joined().utf8).write(to: URL(fileURLWithPath: dir.file("tokens")))
            var c = Configuration()
            c.spoolPath = dir.file("spool")
            c.tokensPath = dir.file("tokens")
            c.maxWaitingPerTenant = limit
            c.waitingCountMaxAge = .milliseconds(countCacheMilliseconds)
            handler = Handler(configuration: c)
        }

        func post(_ user: String, _ prompt: String = "p") -> Response {
            let r = Request(
                method: "POST", path: "/jobs", contentType: "text/plain", contentLength: prompt.utf8.count,
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

        /// The cached count of `identity`'s tenant, as the record in `.waiting/` holds it.
        func cached(_ identity: Identity) throws -> WaitingCount? {
            try spool.readRecord(WaitingCount.recordName(identity.quotaTag), in: Spool.waitingCountArea).flatMap { WaitingCount.parse($0.bytes) }
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

    @Test("a recent count is reused until it reaches the limit; jobs that came back another way are then found")
    func cachedCount() throws {
        let f = try Fixture(limit: 10, countCacheMilliseconds: 60_000)
        defer { f.dir.remove() }
        try f.backlog(Identity(userId: "big", tenantId: "bigcorp"), 2000)
        for _ in 0..<6 { #expect(f.post("alice").status == 202) }
        let first = try #require(try f.cached(alice))
        #expect(first.counted == 0 && first.acceptedSince == 6, "counted once, then one mark per accepted job: \(first)")
        #expect(first.estimate == 6)

        // Five of alice's jobs come back to new/ without the endpoint (give-backs, a requeue):
        // the cached estimate does not see them ...
        try f.backlog(alice, 5)
        for _ in 0..<4 { #expect(f.post("alice").status == 202) }
        #expect(try f.cached(alice)?.estimate == 10)
        // ... until it reaches the limit: then new/ is counted again, exactly.
        #expect(f.post("alice").status == 429)
        #expect(try f.waiting(of: alice).count == 15, "over by the five that came back another way, no more")

        // Claims lower the real count: at the limit the next request counts again and sees them.
        for name in try f.waiting(of: alice).prefix(7) { _ = try f.spool.claim(name) }
        #expect(f.post("alice").status == 202)
        #expect(try f.cached(alice)?.counted == 8)
        #expect(try f.cached(alice)?.estimate == 9)
    }

    @Test("with the cache off every POST counts new/; an old or unreadable cache is counted again", arguments: [0, 1])
    func cacheOffOrStale(_ variant: Int) throws {
        let f = try Fixture(limit: 10, countCacheMilliseconds: variant == 0 ? 0 : 60_000)
        defer { f.dir.remove() }
        for _ in 0..<5 { #expect(f.post("alice").status == 202) }
        let record = WaitingCount.recordName(alice.quotaTag)
        if variant == 0 {
            #expect(try f.cached(alice) == nil, "no record is kept")
        } else {
            // A count from two minutes ago, then a damaged record: neither is trusted.
            let old = WaitingCount(counted: 0, countedAtMilliseconds: Timestamp.nowMilliseconds() - 120_000)
            try f.spool.writeRecord(record, in: Spool.waitingCountArea, bytes: old.record, replacing: true)
        }
        try f.backlog(alice, 5)
        #expect(f.post("alice").status == 429, "counted: 10 waiting")
        if variant == 1 {
            try f.spool.writeRecord(record, in: Spool.waitingCountArea, bytes: Array("0 9\n+x".utf8), replacing: true)
            #expect(f.post("alice").status == 429, "a damaged record is not believed")
            for name in try f.waiting(of: alice).prefix(1) { _ = try f.spool.claim(name) }
            #expect(f.post("alice").status == 202)
            #expect(try f.cached(alice)?.estimate == 10, "rewritten by the count: 9, and the job just accepted")
        }
    }
}

@Suite("Waiting-count records")
struct WaitingCountTests {
    @Test("round trip, marks, and refusal of anything else")
    func format() {
        let c = WaitingCount(counted: 12, countedAtMilliseconds: 1_764_151_200_123)
        #expect(String(decoding: c.record, as: UTF8.self) == "12 1764151200123\n")
        #expect(WaitingCount.parse(c.record) == c)
        #expect(WaitingCount.parse(c.record + WaitingCount.acceptedMark + WaitingCount.acceptedMark)?.estimate == 14)
        for bad in ["", "12 5", "12\n", "12 5 6\n", "-1 5\n", "a 5\n", "12  5\n", "12 5\n+-", "1 99999999999999999999\n"] {
            #expect(WaitingCount.parse(Array(bad.utf8)) == nil, "\(bad)")
        }
        #expect(WaitingCount.recordName(0xDEAD_BEEF) == "deadbeef")
        #expect(WaitingCount.recordName(1) == "00000001")
    }
}
