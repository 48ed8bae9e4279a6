import Foundation
import JSON
import Testing

@testable import Spool

@Suite("Spool: forwarded/ (jobs handed to Kafka)")
struct SpoolForwardTests {
    /// Holds `new/ID.json`.
    func hold(_ t: TestSpool, _ id: String) throws -> Hold {
        guard case .held(let h) = try t.spool.hold(id + ".json") else { throw HoldFailed() }
        return h
    }

    struct HoldFailed: Error {}

    @Test func aHeldJobStaysInNewLockedAgainstWorkers() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let h = try hold(t, id)
        #expect(h.id == id && h.job.prompt == "p")
        #expect(t.visible(.new) == [id + ".json"])
        guard case .busy = try t.spool.claim(id + ".json") else { Issue.record("a worker could claim a held job"); return }
        h.release()
        guard case .claimed = try t.spool.claim(id + ".json") else { Issue.record("released, it is claimable again"); return }
    }

    @Test func invalidAndSettlingFilesAreNotHeld() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("junk.json", "not json", ageMilliseconds: 10_000)
        t.drop("half.json", #"{"prompt": "ha"#)
        guard case .invalid = try t.spool.hold("junk.json") else { Issue.record("junk"); return }
        guard case .settling = try t.spool.hold("half.json") else { Issue.record("half-written"); return }
        guard case .gone = try t.spool.hold("nothing.json") else { Issue.record("missing"); return }
    }

    @Test func forwardMovesHeldJobsAndReleasesThem() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var ja = Job(prompt: "a")
        ja.userId = "alice"
        let a = try t.spool.enqueue(ja)
        let b = try t.spool.enqueue(Job(prompt: "b"))
        let ha = try hold(t, a), hb = try hold(t, b)
        try t.spool.forward(batch: [ha, hb])
        #expect(ha.isReleased && hb.isReleased)
        #expect(t.visible(.forwarded) == [a + ".json", b + ".json"].sorted())
        #expect(t.visible(.cur).isEmpty && t.visible(.new).isEmpty)
        #expect(try t.spool.find(a)?.state == .forwarded)
        #expect(try t.spool.status().counts[.forwarded] == 2)
        guard case .waiting(let job) = try t.spool.lookForwarded(a) else { Issue.record("not waiting"); return }
        #expect(job.userId == "alice" && job.jobId == a)
        // Recovery leaves forwarded jobs alone: no process holds them, and none needs to.
        #expect(try t.spool.recover().givenBack.isEmpty)
        #expect(t.visible(.forwarded).count == 2)
    }

    @Test func aResultThatCameBackFirstRetiresTheHeldCopyInstead() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "fast"))
        let h = try hold(t, id)
        // The result arrived while the delivery report was still on its way (the holder settles it).
        #expect(try t.spool.settleForwarded(id, document: .object(["jobId": .string(id), "response": .string("r")]), into: .done))
        h.markSettled()
        try t.spool.forward(batch: [h])
        #expect(t.visible(.forwarded).isEmpty && t.visible(.new).isEmpty)
        #expect(t.visible(.done) == [id + ".json"])
    }

    @Test func aResultThatCameBackWhileTheJobWasMovedRetiresTheForwardedCopy() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let a = try t.spool.enqueue(Job(prompt: "settled"))
        let b = try t.spool.enqueue(Job(prompt: "still waiting"))
        let ha = try hold(t, a), hb = try hold(t, b)
        // a's result is stored while the mover renames it (too late to retire it in new/ instead).
        #expect(try t.spool.settleForwarded(a, document: .object(["jobId": .string(a), "response": .string("r")]), into: .done))
        try t.spool.forward(batch: [ha, hb])
        #expect(t.visible(.forwarded).contains(a + ".json"))
        try t.spool.dropSettledForwarded(a)
        try t.spool.dropSettledForwarded(b)  // no result: stays
        #expect(t.visible(.forwarded) == [b + ".json"])
        #expect(t.visible(.done) == [a + ".json"])
    }

    @Test func readingAJobLeavesItsAccessTimeAlone() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let path = t.path(.new, id + ".json")
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)]  // mtime: UTIME_OMIT
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)  // atime far older than mtime: relatime would update it
        try hold(t, id).release()
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_atim.tv_sec == 1_000_000)
    }

    @Test func aSecondJobWithAForwardedIdIsDeadLetteredNotLost() throws {
        let t = try TestSpool()
        defer { t.remove() }
        try t.spool.forward(batch: [try hold(t, try t.spool.enqueue(Job(prompt: "first"), durability: .durable))])
        let id = try #require(t.visible(.forwarded).first.map { String($0.dropLast(5)) })
        t.drop("again.json", #"{"jobId":"\#(id)","prompt":"second"}"#)
        guard case .held(let h) = try t.spool.hold("again.json") else { Issue.record("not held"); return }
        try t.spool.forward(batch: [h])
        #expect(t.visible(.new).isEmpty)
        #expect(t.visible(.failed).contains { $0.hasSuffix(".original") }, "the clash keeps its bytes in failed/")
        #expect(try t.document(.forwarded, id + ".json")["prompt"] == .string("first"))
    }

    @Test func settleWritesTheResultThenRetiresTheForwardedCopy() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        try t.spool.forward(batch: [try hold(t, id)])
        let doc = JSONValue.object(["jobId": .string(id), "status": .string("failed"), "error": .object(["kind": .string("remote")])])
        #expect(try t.spool.settleForwarded(id, document: doc, into: .failed))
        #expect(t.visible(.forwarded).isEmpty)
        #expect(try t.document(.failed, id + ".json") == doc)
        // A second result for the same job changes nothing.
        #expect(try !t.spool.settleForwarded(id, document: .object(["jobId": .string(id), "response": .string("late")]), into: .done))
        #expect(t.visible(.done).isEmpty)
        guard case .settled(.failed) = try t.spool.lookForwarded(id) else { Issue.record("not settled"); return }
        guard case .unknown = try t.spool.lookForwarded("someone-elses") else { Issue.record("not unknown"); return }
    }

    @Test func recoveryRetiresAForwardedCopyWhoseResultWon() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        try t.spool.forward(batch: [try hold(t, id)])
        // A crash between writing done/ID.json and retiring forwarded/ID.json.
        t.drop(id + ".json", #"{"jobId":"\#(id)","status":"done","response":"r"}"#, into: .done)
        #expect(try t.spool.find(id)?.state == .done, "the result is what counts")
        let report = try t.spool.recover()
        #expect(report.alreadySettled == [id])
        #expect(t.visible(.forwarded).isEmpty)
    }

    @Test func requeueBringsAForwardedJobBack() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "lost in Kafka"))
        try t.spool.forward(batch: [try hold(t, id)])
        try t.spool.requeue(id)
        #expect(t.visible(.new) == [id + ".json"] && t.visible(.forwarded).isEmpty)
    }

    @Test func aSpoolWithoutForwardedStillWorks() throws {
        let t = try TestSpool()
        defer { t.remove() }
        try FileManager.default.removeItem(atPath: t.root + "/forwarded")
        let spool = try Spool(path: t.root)
        #expect(!spool.hasForwarded)
        let id = try spool.enqueue(Job(prompt: "p"))
        #expect(try spool.find(id)?.state == .new)
        #expect(try spool.status().counts[.forwarded] == nil)
        #expect(try spool.list().map(\.id) == [id])
        guard case .unknown = try spool.lookForwarded("x") else { Issue.record("not unknown"); return }
        try Spool.makeForwardedDirectory(at: t.root)
        #expect(try Spool(path: t.root).hasForwarded)
    }
}
