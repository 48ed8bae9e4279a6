import Testing

@testable import Spool

@Suite("Spool: find, list, status, requeue, purge")
struct SpoolInspectTests {
    /// One job in each state: `n` waiting, `c` claimed (kept alive by the returned claim), `d` done, `f` failed.
    private func populate(_ t: TestSpool) throws -> Claim {
        for id in ["n", "c", "d", "f"] {
            var job = Job(prompt: "prompt " + id)
            job.jobId = id
            try t.spool.enqueue(job, durability: .volatile)
        }
        try t.spool.finish(t.claim(id: "d"), answer: Answer(response: "done"))
        try t.spool.fail(t.claim(id: "f"), Failure(kind: "http", message: "400 bad request", httpStatus: 400))
        return try t.claim(id: "c")
    }

    @Test func findLooksInEveryState() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let live = try populate(t)
        for (id, state) in [("n", SpoolState.new), ("c", .cur), ("d", .done), ("f", .failed)] {
            let loc = try #require(try t.spool.find(id), "\(id) not found")
            #expect(loc.id == id)
            #expect(loc.state == state)
            #expect(loc.name == id + ".json")
            #expect(loc.bytes == t.read(state, id + ".json"))
            #expect(loc.modifiedMilliseconds > 0)
            #expect(try t.spool.state(of: id) == state)
        }
        #expect(try t.spool.find("missing") == nil)
        #expect(try t.spool.state(of: "missing") == nil)
        withExtendedLifetime(live) {}
    }

    @Test("an invalid id is never used as a path", arguments: ["../spool/new/n", "", ".", "new/n", "n/../n"])
    func findRefusesInvalidIds(_ id: String) throws {
        let t = try TestSpool()
        defer { t.remove() }
        try t.spool.enqueue(
            {
                var j = Job(prompt: "p"); j.jobId = "n"; return j
            }())
        #expect(try t.spool.find(id) == nil)
        #expect(try t.spool.state(of: id) == nil)
    }

    @Test func findsAHandDroppedFileByItsJobId() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("whatever.json", #"{"jobId":"H","prompt":"p"}"#)
        t.drop("broken.json", "{")
        let loc = try #require(try t.spool.find("H"))
        #expect(loc.state == .new)
        #expect(loc.name == "whatever.json")
        #expect(try t.spool.find("whatever")?.name == "whatever.json", "and by its name")
    }

    @Test func listGivesEachStateOldestFirst() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let live = try populate(t)
        for (k, id) in ["z", "y", "x"].enumerated() {
            t.drop(id + ".json", #"{"prompt":"p"}"#, ageMilliseconds: Int64(10_000 * (k + 1)))
        }
        t.drop("K.original", "garbage", into: .failed)
        t.drop(".hidden.json", "{}")
        let all = try t.spool.list()
        #expect(all.map(\.state) == [.new, .new, .new, .new, .cur, .done, .failed])
        #expect(all.filter { $0.state == .new }.map(\.id) == ["x", "y", "z", "n"], "oldest first")
        #expect(all.first { $0.state == .cur }?.name == "c.json")
        let done = try t.spool.list([.done])
        #expect(done == [JobEntry(id: "d", state: .done, name: "d.json", modifiedMilliseconds: done[0].modifiedMilliseconds)])
        #expect(try t.spool.list([.failed]).map(\.id) == ["f"], ".original files are not listed")
        #expect(try t.spool.list([.tmp]).isEmpty)
        withExtendedLifetime(live) {}
    }

    @Test func statusCountsAndClaims() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let live = try populate(t)
        t.drop("old.json", #"{"prompt":"p"}"#, ageMilliseconds: 5000)
        var dead = Job(prompt: "dead")
        dead.jobId = "dead"
        try t.spool.enqueue(dead)
        _ = try t.claimAndAbandon("dead.json")
        t.drop("K.original", "garbage", into: .failed)

        let s = try t.spool.status()
        #expect(s.counts[.new] == 2)
        #expect(s.counts[.cur] == 2)
        #expect(s.counts[.done] == 1)
        #expect(s.counts[.failed] == 1)
        #expect(s.counts[.tmp] == 0, "retired files are dot names")
        #expect(s.liveClaims == 1)
        #expect(s.deadClaims == 1)
        let oldest = try #require(s.oldestWaitingMilliseconds)
        #expect(oldest >= 5000 && oldest < 60_000)
        withExtendedLifetime(live) {}
    }

    @Test func statusOfAnEmptySpool() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let s = try t.spool.status()
        #expect(s.oldestWaitingMilliseconds == nil)
        #expect(SpoolState.allCases.allSatisfy { s.counts[$0] == 0 })
        #expect(s.liveClaims == 0 && s.deadClaims == 0)
    }

    @Test func requeuePutsAFailedJobBack() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var job = Job(prompt: "retry me")
        job.jobId = "r"
        job.userId = "alice"
        try t.spool.enqueue(job)
        try t.spool.giveBack(t.claim(id: "r"), reason: "crash")
        try t.spool.fail(t.claim(id: "r"), Failure(kind: "timeout", message: "too slow"))

        try t.spool.requeue("r")
        #expect(t.visible(.failed).isEmpty)
        #expect(t.visible(.new) == ["r.json"])
        let back = try Job(json: t.document(.new, "r.json"))
        #expect(back.jobId == "r")
        #expect(back.prompt == "retry me" && back.userId == "alice")
        #expect(back.attempts == 0, "attempts start again")
        #expect(back.history.compactMap { $0["kind"]?.stringValue } == ["abandoned", "failed", "requeued"])
        #expect(try t.spool.state(of: "r") == .new)
        #expect(try t.claim(id: "r").job.prompt == "retry me")
    }

    @Test func requeueRefusals() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let live = try populate(t)
        #expect(throws: SpoolError.self) { try t.spool.requeue("nope") }
        let notFound = #expect(throws: SpoolError.self) { try t.spool.requeue("nope") }
        #expect(notFound?.notFoundId == "nope")
        for id in ["n", "c", "d"] {
            let error = #expect(throws: SpoolError.self) { try t.spool.requeue(id) }
            #expect(error?.requeueReason?.contains("not failed/") == true, "\(id): \(String(describing: error))")
        }
        #expect(t.visible(.done) == ["d.json"], "nothing moved")

        // A rejected file has no job to requeue: its original must be fixed by hand.
        t.drop("bad.json", "{not json", ageMilliseconds: 10_000)
        #expect(try t.spool.claim("bad.json").rejection?.key == "bad")
        let error = #expect(throws: SpoolError.self) { try t.spool.requeue("bad") }
        #expect(error?.requeueReason?.contains("bad.original") == true)
        #expect(t.exists(.failed, "bad.json") && t.exists(.failed, "bad.original"))
        withExtendedLifetime(live) {}
    }

    @Test func purgeRemovesOnlyOldEntries() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: [Job(prompt: "1"), Job(prompt: "2")], durability: .volatile)
        for id in ids { try t.spool.finish(t.claim(id: id), answer: Answer(response: "r")) }
        t.setAge(.done, ids[0] + ".json", milliseconds: 7_200_000)
        #expect(try t.spool.purge(.done, olderThanMilliseconds: 3_600_000) == 1)
        #expect(t.visible(.done) == [ids[1] + ".json"])
        #expect(try t.spool.purge(.done, olderThanMilliseconds: 3_600_000) == 0)

        // A rejection goes with its original.
        t.drop("junk.json", [0xFF], ageMilliseconds: 10_000)
        let key = try #require(try t.spool.claim("junk.json").rejection?.key)
        t.setAge(.failed, key + ".json", milliseconds: 7_200_000)
        #expect(try t.spool.purge(.failed, olderThanMilliseconds: 3_600_000) == 1)
        #expect(t.names(.failed).isEmpty)
    }
}
