import Dispatch
import JSON
import Synchronization
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite("Spool: claim")
struct SpoolClaimTests {
    @Test func claimMovesTheJobToCur() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "work"))
        let bytes = try #require(t.read(.new, id + ".json"))
        let claim = try t.claim(id: id)
        #expect(claim.id == id)
        #expect(claim.job.prompt == "work")
        #expect(claim.bytes == bytes)
        #expect(!claim.isReleased)
        #expect(Timestamp.parse(claim.claimedAt) != nil)
        #expect(t.visible(.new).isEmpty)
        #expect(t.visible(.cur) == [id + ".json"])
        #expect(t.read(.cur, id + ".json") == bytes)
        #expect(try t.spool.state(of: id) == .cur)
        // A second claim of the same name finds nothing.
        #expect(try t.spool.claim(id + ".json").isGone)
        #expect(t.visible(.cur) == [id + ".json"])
    }

    @Test func claimOfAMissingNameIsGone() throws {
        let t = try TestSpool()
        defer { t.remove() }
        #expect(try t.spool.claim("nothing.json").isGone)
    }

    @Test func aFileLockedBySomeoneElseIsBusy() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let fd = open(t.path(.new, id + ".json"), O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        #expect(flock(fd, LOCK_EX) == 0)
        #expect(try t.spool.claim(id + ".json").isBusy)
        #expect(t.visible(.new) == [id + ".json"], "a busy file stays where it is")
        close(fd)
        _ = try t.claim(id: id)
    }

    @Test func waitingIsSortedAndSkipsDotNames() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<5).map { Job(prompt: "\($0)") }, durability: .volatile)
        t.drop(".hidden.json", #"{"prompt":"x"}"#)
        #expect(try t.spool.waiting() == ids.map { $0 + ".json" }, "UUIDv7 names sort by time")
        let first = try #require(try t.spool.claimFirst(of: t.spool.waiting()))
        #expect(first.id == ids[0])
        #expect(try t.spool.claimFirst(of: [".hidden.json", "missing.json"]) == nil)
    }

    @Test("countWaiting counts a tag's ids in new/ through claims, crashes, give-backs and requeues")
    func countWaitingFollowsTheJobs() throws {
        let t = try TestSpool()
        defer { t.remove() }
        func tagged(_ tag: UInt32, _ n: Int) -> [Job] {
            (0..<n).map { k in
                var j = Job(prompt: "tagged \(k)")
                j.jobId = JobID.generate(tag: tag)
                return j
            }
        }
        let mine = try t.spool.enqueue(batch: tagged(1, 6), durability: .volatile)
        _ = try t.spool.enqueue(batch: tagged(2, 300), durability: .volatile)
        _ = try t.spool.enqueue(batch: (0..<20).map { Job(prompt: "untagged \($0)") }, durability: .volatile)
        t.drop("hand-dropped.json", #"{"prompt":"x"}"#)
        t.drop("." + mine[0] + ".json", #"{"prompt":"being written"}"#)  // a dot name is not a job yet
        #expect(try t.spool.countWaiting(tag: 1) == 6)
        #expect(try t.spool.countWaiting(tag: 2) == 300)
        #expect(try t.spool.countWaiting(tag: 3) == 0)

        // Claimed: gone from the count. Finished: stays gone.
        let a = try t.claim(id: mine[0]), b = try t.claim(id: mine[1])
        #expect(try t.spool.countWaiting(tag: 1) == 4)
        try t.spool.finish(a, answer: Answer(response: "ok"))
        #expect(try t.spool.countWaiting(tag: 1) == 4)
        // Given back: the job keeps its id, so it counts again.
        try t.spool.giveBack(b, reason: "shutting down")
        #expect(try t.spool.countWaiting(tag: 1) == 5)
        // A claim whose process died: recovery puts it back under its id.
        #expect(try t.claimAndAbandon(mine[2] + ".json") == mine[2])
        #expect(try t.spool.countWaiting(tag: 1) == 4)
        #expect(try t.spool.recover().givenBack == [mine[2]])
        #expect(try t.spool.countWaiting(tag: 1) == 5)
        // Dead-lettered, then requeued.
        let c = try t.claim(id: mine[3])
        try t.spool.fail(c, Failure(kind: "cancelled", message: "test"))
        #expect(try t.spool.countWaiting(tag: 1) == 4)
        try t.spool.requeue(mine[3])
        #expect(try t.spool.countWaiting(tag: 1) == 5)
        // Hand-dropped files, tagged or not, are still claimed like any job.
        #expect(try t.spool.claim("hand-dropped.json").claim?.id == "hand-dropped")
        let named = JobID.generate(tag: 1)
        t.drop("dropped-by-hand", #"{"jobId":"\#(named)","prompt":"x"}"#)
        #expect(try t.spool.countWaiting(tag: 1) == 5, "counted by name: only ID.json names carry a tag")
        #expect(try t.spool.claim("dropped-by-hand").claim?.id == named)
        #expect(t.exists(.cur, named + ".json"))
    }

    @Test func manyClaimersTakeEachJobOnce() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<60).map { Job(prompt: "job \($0)") }, durability: .volatile)
        let claims = Mutex<[Claim]>([])
        let others = Mutex<Int>(0)
        let spool = t.spool
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            // Every worker walks the whole list, so every job is contended.
            for name in ((try? spool.waiting()) ?? []) {
                switch try? spool.claim(name) {
                case .claimed(let c)?: claims.withLock { $0.append(c) }
                case .gone?, .busy?: break
                default: others.withLock { $0 += 1 }
                }
            }
        }
        let held = claims.withLock { $0 }
        let claimed = held.map(\.id)
        #expect(claimed.count == 60)
        #expect(Set(claimed) == Set(ids))
        #expect(others.withLock { $0 } == 0)
        #expect(t.visible(.cur).count == 60)
        #expect(t.visible(.new).isEmpty && t.visible(.failed).isEmpty)
        withExtendedLifetime(held) {}
    }
}

@Suite("Spool: finish, fail, give back")
struct SpoolSettleTests {
    private func enqueueFullJob(_ t: TestSpool) throws -> String {
        var job = Job(prompt: "Summarise")
        job.userId = "alice"
        job.tenantId = "acme"
        job.model = "job-model"
        job.submittedAt = "2026-11-26T10:00:00Z"
        job.extra = [JSONObject.Member("traceId", .string("t-9"))]
        return try t.spool.enqueue(job)
    }

    @Test func finishWritesTheResultToDone() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try enqueueFullJob(t)
        let claim = try t.claim(id: id)
        let answer = Answer(
            response: "Short.", model: "llm-1", finishReason: "stop",
            usage: Usage(promptTokens: 12, completionTokens: 3))
        try t.spool.finish(claim, answer: answer)
        #expect(claim.isReleased)
        #expect(t.visible(.cur).isEmpty && t.visible(.new).isEmpty)
        #expect(t.visible(.done) == [id + ".json"])
        #expect(try t.spool.state(of: id) == .done)

        let doc = try t.document(.done, id + ".json")
        #expect(doc["jobId"] == .string(id))
        #expect(doc["status"] == .string("done"))
        #expect(doc["response"] == .string("Short."))
        #expect(doc["model"] == .string("llm-1"))
        #expect(doc["finishReason"] == .string("stop"))
        #expect(doc[path: "usage", "promptTokens"]?.intValue == 12)
        #expect(doc[path: "usage", "completionTokens"]?.intValue == 3)
        #expect(doc[path: "usage", "totalTokens"]?.intValue == 15)
        #expect(doc["attempts"]?.intValue == 1)
        #expect(doc["userId"] == .string("alice"))
        #expect(doc["tenantId"] == .string("acme"))
        #expect(doc["submittedAt"] == .string("2026-11-26T10:00:00Z"))
        #expect(doc["startedAt"] == .string(claim.claimedAt))
        let finished = try #require(doc["finishedAt"]?.stringValue.flatMap(Timestamp.parse))
        #expect(finished >= Timestamp.parse(claim.claimedAt)!)
        let job = try Job(json: #require(doc["job"]))
        #expect(job == claim.job)
        #expect(job.extra.first?.key == "traceId", "unknown fields travel into the result")

        // The retired cur/ file waits in tmp/ under a dot name; recovery sweeps it.
        #expect(t.visible(.tmp).isEmpty)
        #expect(t.names(.tmp).count == 1)
        let report = try t.spool.recover()
        #expect(report.removedTemporaries == 1)
        #expect(t.names(.tmp).isEmpty)
        #expect(t.visible(.done) == [id + ".json"])
    }

    @Test func resultModelFallsBackToTheJobsModel() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try enqueueFullJob(t)
        let claim = try t.claim(id: id)
        try t.spool.finish(claim, answer: Answer(response: "r", startedAt: "2026-11-26T10:00:01.000Z"))
        let doc = try t.document(.done, id + ".json")
        #expect(doc["model"] == .string("job-model"))
        #expect(doc["usage"] == nil && doc["finishReason"] == nil)
        #expect(doc["startedAt"] == .string("2026-11-26T10:00:01.000Z"))
    }

    @Test func finishNeverReplacesAnExistingResult() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let claim = try t.claim(id: id)
        t.drop(id + ".json", #"{"status":"done","response":"first"}"#, into: .done)
        let error = #expect(throws: SpoolError.self) { try t.spool.finish(claim, answer: Answer(response: "second")) }
        #expect(error?.systemError?.errno == .fileExists)
        #expect(try t.document(.done, id + ".json")["response"] == .string("first"))
        #expect(t.visible(.tmp).isEmpty, "the unused result is cleaned from tmp/")
        withExtendedLifetime(claim) {}
    }

    @Test func failWritesADeadLetter() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try enqueueFullJob(t)
        let claim = try t.claim(id: id)
        let earlier: JSONValue = .object(["kind": .string("http"), "message": .string("503 once")])
        try t.spool.fail(claim, Failure(kind: "http", message: "bad gateway", httpStatus: 502), attempts: [earlier])
        #expect(claim.isReleased)
        #expect(t.visible(.cur).isEmpty)
        #expect(t.visible(.failed) == [id + ".json"])
        #expect(try t.spool.state(of: id) == .failed)

        let doc = try t.document(.failed, id + ".json")
        #expect(doc["jobId"] == .string(id))
        #expect(doc["status"] == .string("failed"))
        #expect(doc[path: "error", "kind"] == .string("http"))
        #expect(doc[path: "error", "message"] == .string("bad gateway"))
        #expect(doc[path: "error", "httpStatus"]?.intValue == 502)
        let history = try #require(doc["history"]?.arrayValue)
        #expect(history.count == 2)
        #expect(history.first == earlier)
        #expect(history.last?["kind"] == .string("failed"))
        #expect(history.last?["message"] == .string("bad gateway"))
        #expect(doc["userId"] == .string("alice") && doc["tenantId"] == .string("acme"))
        #expect(doc[path: "job", "prompt"] == .string("Summarise"))
        #expect(doc[path: "job", "history"] == nil, "the history lives at the top, not twice")
        #expect(doc["failedAt"]?.stringValue.flatMap(Timestamp.parse) != nil)
    }

    @Test func giveBackReturnsTheJobWithAnAttemptCounted() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let claim = try t.claim(id: id)
        try t.spool.giveBack(claim, reason: "shutting down")
        #expect(claim.isReleased)
        #expect(t.visible(.cur).isEmpty)
        #expect(t.visible(.new) == [id + ".json"])
        #expect(t.visible(.tmp).isEmpty)
        let job = try Job(json: t.document(.new, id + ".json"))
        #expect(job.attempts == 1)
        #expect(job.history.count == 1)
        #expect(job.history.first?["kind"] == .string("abandoned"))
        #expect(job.history.first?["message"] == .string("shutting down"))
        #expect(job.history.first?["pid"]?.intValue == Int(getpid()))
        #expect(try t.claim(id: id).job.attempts == 1)
    }

    @Test func giveBackWithoutCountingKeepsAttempts() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        try t.spool.giveBack(t.claim(id: id), reason: "rate limited", countAttempt: false)
        let job = try Job(json: t.document(.new, id + ".json"))
        #expect(job.attempts == 0)
        #expect(job.history.map { $0["kind"] } == [.string("returned")])
    }

    @Test func giveBackDeadLettersAfterTheLimit() throws {
        let limits = Limits.with { $0.maxAbandonedClaims = 3 }
        let t = try TestSpool(limits: limits)
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "poison"))
        for k in 1...3 {
            try t.spool.giveBack(t.claim(id: id), reason: "worker crashed \(k)")
            #expect(try Job(json: t.document(.new, id + ".json")).attempts == k)
        }
        let last = try t.claim(id: id)
        try t.spool.giveBack(last, reason: "worker crashed 4")
        #expect(last.isReleased)
        #expect(t.visible(.new).isEmpty && t.visible(.cur).isEmpty)
        #expect(t.visible(.failed) == [id + ".json"])
        let doc = try t.document(.failed, id + ".json")
        #expect(doc[path: "error", "kind"] == .string("abandoned"))
        #expect(doc[path: "error", "message"]?.stringValue?.contains("4 times") == true)
        #expect((doc["history"]?.arrayValue?.count ?? 0) >= 3, "earlier abandonments are kept")
    }

    /// A job named only by its file must keep that id when it goes back under another name.
    @Test func giveBackKeepsTheIdOfAJobNamedByItsFile() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("foo.json", #"{"prompt":"first"}"#)
        let claim = try #require(try t.spool.claim("foo.json").claim)
        #expect(claim.id == "foo")
        t.drop("foo.json", #"{"prompt":"second"}"#)  // someone drops the same name meanwhile
        try t.spool.giveBack(claim, reason: "r")
        let names = t.visible(.new)
        #expect(names.count == 2)
        #expect(t.read(.new, "foo.json") == Array(#"{"prompt":"second"}"#.utf8))
        let other = try #require(names.first { $0 != "foo.json" })
        let back = try Job(json: t.document(.new, other))
        #expect(back.prompt == "first")
        #expect(back.jobId == "foo")
    }
}

@Suite("Batched finish")
struct BatchedFinishTests {
    @Test("finish(batch:) writes every result once, retires the claims, and refuses a result that exists")
    func batch() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<10).map { Job(prompt: "p\($0)") })
        var claims: [Claim] = []
        for id in ids {
            if case .claimed(let c) = try t.spool.claim(id + ".json") { claims.append(c) }
        }
        #expect(claims.count == 10)
        // One result already exists (a crash left it): that claim is refused, not overwritten.
        let clash = claims[3]
        t.drop(clash.id + ".json", "{\"jobId\":\"x\"}", into: .done)
        let refused = try t.spool.finish(batch: claims.map { ($0, Answer(response: "r-" + $0.id)) })
        #expect(refused.map(\.id) == [clash.id])
        #expect(!clash.isReleased)
        #expect(t.read(.done, clash.id + ".json") == Array("{\"jobId\":\"x\"}".utf8))
        for c in claims where c !== clash {
            #expect(c.isReleased)
            #expect(try t.document(.done, c.id + ".json")["response"]?.stringValue == "r-" + c.id)
        }
        #expect(t.visible(.cur) == [clash.id + ".json"])
        #expect(t.visible(.tmp).isEmpty)
    }
}
