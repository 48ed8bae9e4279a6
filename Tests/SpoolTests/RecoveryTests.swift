import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite("Spool: crash recovery")
struct SpoolRecoveryTests {
    @Test func deadClaimIsGivenBackWithAnAttemptCounted() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        #expect(try t.claimAndAbandon(id + ".json") == id)
        #expect(t.visible(.cur) == [id + ".json"], "an abandoned claim stays in cur/")
        #expect(try t.spool.status().deadClaims == 1)

        let report = try t.spool.recover()
        #expect(report.givenBack == [id])
        #expect(report.live == 0)
        #expect(report.alreadySettled.isEmpty && report.deadLettered.isEmpty)
        #expect(t.visible(.cur).isEmpty)
        #expect(t.visible(.new) == [id + ".json"])
        #expect(t.visible(.tmp).isEmpty)
        let job = try Job(json: t.document(.new, id + ".json"))
        #expect(job.jobId == id)
        #expect(job.attempts == 1)
        #expect(job.history.map { $0["kind"] } == [.string("abandoned")])
        #expect(job.history.first?["message"] == .string("the claiming process died"))
    }

    /// The fallback of renameat2(RENAME_NOREPLACE) is link + unlink: a crash between the two leaves
    /// one file under a name in new/ and one in cur/ (a claim, or a give-back, cut half-way).
    @Test func moveCutBetweenLinkAndUnlinkLeavesOneJob() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        #expect(link(t.path(.new, id + ".json"), t.path(.cur, id + ".json")) == 0)
        let report = try t.spool.recover()
        #expect(report.givenBack == [id + ".json"])
        #expect(t.visible(.cur).isEmpty)
        #expect(t.visible(.new) == [id + ".json"])
        var st = stat()
        #expect(lstat(t.path(.new, id + ".json"), &st) == 0 && st.st_nlink == 1)
        // The job is whole, with no attempt counted, and a claim of it works.
        #expect(try Job(json: t.document(.new, id + ".json")).attempts == 0)
        let claim = try t.claim(id: id)
        try t.spool.finish(claim, answer: Answer(response: "r"))
        #expect(t.visible(.done) == [id + ".json"] && t.visible(.new).isEmpty && t.visible(.failed).isEmpty)
    }

    @Test func liveClaimIsLeftAlone() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let claim = try t.claim(id: id)
        let bytes = t.read(.cur, id + ".json")
        let report = try t.spool.recover()
        #expect(report.live == 1)
        #expect(report.givenBack.isEmpty)
        #expect(t.read(.cur, id + ".json") == bytes)
        #expect(t.visible(.new).isEmpty)
        let status = try t.spool.status()
        #expect(status.liveClaims == 1 && status.deadClaims == 0)
        // The claim still works after recovery looked at it.
        try t.spool.finish(claim, answer: Answer(response: "r"))
        #expect(t.visible(.done) == [id + ".json"])
    }

    @Test func repeatedCrashesCountUp() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        for k in 1...3 {
            _ = try t.claimAndAbandon(id + ".json")
            #expect(try t.spool.recover().givenBack == [id])
            #expect(try Job(json: t.document(.new, id + ".json")).attempts == k)
        }
        #expect(try t.claim(id: id).job.history.count == 3)
    }

    @Test func tooManyCrashesDeadLetterTheJob() throws {
        let t = try TestSpool(limits: Limits.with { $0.maxAbandonedClaims = 2 })
        defer { t.remove() }
        t.drop("poison.json", #"{"prompt":"p","attempts":2}"#)
        _ = try t.claimAndAbandon("poison.json")
        let report = try t.spool.recover()
        #expect(report.deadLettered == ["poison"])
        #expect(report.givenBack.isEmpty)
        #expect(t.visible(.cur).isEmpty && t.visible(.new).isEmpty)
        let doc = try t.document(.failed, "poison.json")
        #expect(doc["jobId"] == .string("poison"))
        #expect(doc[path: "error", "kind"] == .string("abandoned"))
        let kinds = doc["history"]?.arrayValue?.compactMap { $0["kind"]?.stringValue }
        #expect(kinds == ["abandoned", "failed"])
        #expect(doc[path: "job", "attempts"]?.intValue == 3)
    }

    @Test(arguments: [SpoolState.done, .failed])
    func claimWhoseResultExistsIsRemoved(_ state: SpoolState) throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        _ = try t.claimAndAbandon(id + ".json")
        // Crash after the result was renamed into place, before cur/ was cleaned.
        let result = Array(#"{"status":"settled"}"#.utf8)
        t.drop(id + ".json", result, into: state)
        let report = try t.spool.recover()
        #expect(report.alreadySettled == [id])
        #expect(report.givenBack.isEmpty)
        #expect(t.visible(.cur).isEmpty && t.visible(.new).isEmpty)
        #expect(t.read(state, id + ".json") == result)
        #expect(try t.spool.state(of: id) == state)
    }

    @Test func unvalidatedFileInCurGoesBackAsItIs() throws {
        let t = try TestSpool()
        defer { t.remove() }
        // Crash between the rename into cur/ and validation: garbage, a clash name, a wrong jobId.
        t.drop("junk.json", [0x00, 0xFF], into: .cur)
        t.drop("019a0000-0000-7000-8000-000000000000.clash", #"{"prompt":"c"}"#, into: .cur)
        t.drop("named.json", #"{"jobId":"other","prompt":"x"}"#, into: .cur)
        let report = try t.spool.recover()
        #expect(report.givenBack.sorted() == ["019a0000-0000-7000-8000-000000000000.clash", "junk.json", "named.json"])
        #expect(t.visible(.cur).isEmpty)
        #expect(t.read(.new, "junk.json") == [0x00, 0xFF])
        #expect(t.read(.new, "named.json") == Array(#"{"jobId":"other","prompt":"x"}"#.utf8))
        // From new/ they take the normal intake path.
        #expect(try t.spool.claim("named.json").claim?.id == "other")
    }

    @Test func symlinkInCurGoesBackToNew() throws {
        let t = try TestSpool()
        defer { t.remove() }
        #expect(symlink("/nonexistent", t.path(.cur, "s.json")) == 0)
        let report = try t.spool.recover()
        #expect(report.givenBack == ["s.json"])
        #expect(lstatMode(t.path(.new, "s.json")).map { $0 & S_IFMT } == S_IFLNK)
    }

    @Test func giveBackDoesNotReplaceASameNamedDrop() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("same.json", #"{"prompt":"first"}"#)
        _ = try t.claimAndAbandon("same.json")
        t.drop("same.json", #"{"prompt":"second"}"#)
        #expect(try t.spool.recover().givenBack == ["same"])
        let names = t.visible(.new)
        #expect(names.count == 2)
        #expect(t.read(.new, "same.json") == Array(#"{"prompt":"second"}"#.utf8))
        let other = try #require(names.first { $0 != "same.json" })
        let back = try Job(json: t.document(.new, other))
        #expect(back.prompt == "first" && back.jobId == "same" && back.attempts == 1)
    }

    @Test func missingDeadLetterIsRewritten() throws {
        let t = try TestSpool()
        defer { t.remove() }
        // Crash after the bad file reached failed/, before its explanation was written.
        t.drop("K.original", #"{"prompt": "#, into: .failed)
        t.drop("V.original", #"{"prompt":"valid"}"#, into: .failed)
        let report = try t.spool.recover()
        #expect(report.repairedRejections == 2)
        let k = try t.document(.failed, "K.json")
        #expect(k["status"] == .string("failed"))
        #expect(k[path: "error", "kind"] == .string("invalid-json"))
        #expect(k[path: "original", "file"] == .string("K.original"))
        #expect(k[path: "original", "size"]?.intValue == 11)
        #expect(try t.document(.failed, "V.json")[path: "error", "kind"] == .string("id-clash"))
        #expect(t.read(.failed, "K.original") == Array(#"{"prompt": "#.utf8))
        #expect(try t.spool.recover().repairedRejections == 0, "repaired once")
    }

    @Test func temporariesAreSwept() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("old.123.456.job", "x", into: .tmp, ageMilliseconds: Spool.staleTemporaryMilliseconds + 60_000)
        t.drop("fresh.123.456.job", "x", into: .tmp)
        t.drop(".spent.abc.1.2.json", "x", into: .tmp)
        let report = try t.spool.recover()
        #expect(report.removedTemporaries == 2)
        #expect(t.names(.tmp) == ["fresh.123.456.job"], "a writer may still be using a fresh one")
    }

    @Test func recoveryOfACleanSpoolDoesNothing() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        #expect(try t.spool.recover() == RecoveryReport())
        #expect(t.visible(.new) == [id + ".json"])
        _ = try t.claimAndAbandon(id + ".json")
        #expect(try t.spool.recover().givenBack == [id])
        #expect(try t.spool.recover() == RecoveryReport(), "a second pass finds nothing")
    }

    /// Every job ends in exactly one state, whatever mix of outcomes and crashes it went through.
    @Test func eachIdIsInExactlyOneState() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<12).map { Job(prompt: "\($0)") }, durability: .volatile)
        var kept: [Claim] = []
        for (k, id) in ids.enumerated() {
            switch k % 4 {
            case 0: try t.spool.finish(t.claim(id: id), answer: Answer(response: "ok"))
            case 1: try t.spool.fail(t.claim(id: id), Failure(kind: "http", message: "400"))
            case 2: _ = try t.claimAndAbandon(id + ".json")
            default: kept.append(try t.claim(id: id))
            }
        }
        let report = try t.spool.recover()
        #expect(report.givenBack.count == 3 && report.live == 3)
        for id in ids {
            let places = SpoolState.jobStates.filter { t.exists($0, id + ".json") }
            #expect(places.count == 1, "\(id) is in \(places)")
        }
        withExtendedLifetime(kept) {}
    }
}
