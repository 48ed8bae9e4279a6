import Foundation
import Testing
@testable import Spool

@Suite("Spool: forwarded/ (jobs handed to Kafka)")
struct SpoolForwardTests {
    @Test func forwardMovesClaimsAndReleasesThem() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var ja = Job(prompt: "a")
        ja.userId = "alice"
        let a = try t.spool.enqueue(ja)
        let b = try t.spool.enqueue(Job(prompt: "b"))
        let ca = try t.claim(id: a), cb = try t.claim(id: b)
        try t.spool.forward(batch: [ca, cb])
        #expect(ca.isReleased && cb.isReleased)
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

    @Test func aResultThatCameBackFirstRetiresTheClaimInstead() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "fast"))
        let claim = try t.claim(id: id)
        // The result arrived while the delivery report was still on its way.
        guard case .waiting = try t.spool.lookForwarded(id) else { Issue.record("a job in cur/ may be settled"); return }
        #expect(try t.spool.settleForwarded(id, document: .object(["jobId": .string(id), "response": .string("r")]), into: .done))
        try t.spool.forward(batch: [claim])
        #expect(t.visible(.forwarded).isEmpty && t.visible(.cur).isEmpty)
        #expect(t.visible(.done) == [id + ".json"])
    }

    @Test func settleWritesTheResultThenRetiresTheForwardedCopy() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        try t.spool.forward(batch: [try t.claim(id: id)])
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
        try t.spool.forward(batch: [try t.claim(id: id)])
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
        try t.spool.forward(batch: [try t.claim(id: id)])
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
