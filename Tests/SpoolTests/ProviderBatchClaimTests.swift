import Foundation
import JSON
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

/// Claims held by a provider batch's record (`cur/.ID.json.lease` → `provider-batch:RECORD`):
/// alive for recovery while `.provider-batches/RECORD` exists, whoever runs; read back after a
/// restart; given back and settled like other claims. The process-level tests are
/// `ProviderBatchTests` (CLITests).
@Suite("Spool: claims held by a provider batch")
struct ProviderBatchClaimTests {
    func marker(_ t: TestSpool, _ id: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: t.path(.cur, "." + id + ".json.lease"))
    }

    /// Enqueues `n` jobs and holds them for `record` (its record written first), as the batcher does.
    func held(_ t: TestSpool, record: String, _ n: Int) throws -> (ids: [String], claims: [Claim]) {
        let ids = try (0..<n).map { try t.spool.enqueue(Job(prompt: "p\($0)")) }
        try t.spool.writeRecord(record, in: Spool.providerBatchArea, bytes: Array("{}".utf8))
        var claims: [Claim] = []
        for id in ids {
            guard case .claimed(let c) = try t.spool.claim(id + ".json", settleMilliseconds: 0, park: false) else {
                Issue.record("could not claim \(id)")
                continue
            }
            let h = try #require(try t.spool.holdForProviderBatch(c, record: record))
            #expect(c.isReleased)
            claims.append(h)
        }
        try t.spool.syncClaims()
        return (ids, claims)
    }

    @Test func recoveryLeavesHeldClaimsWhileTheRecordExists() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let record = "pb-" + JobID.generate()
        let (ids, claims) = try held(t, record: record, 3)
        for id in ids { #expect(marker(t, id) == "provider-batch:" + record) }
        // Dropping the objects (the process dying) gives nothing up.
        _ = claims
        let report = try t.spool.recover()
        #expect(report.givenBack.isEmpty)
        #expect(report.live == 3)
        #expect(t.visible(.cur).count == 3)
        #expect(t.visible(.new).isEmpty)
        // Read back as a restarted batcher does.
        let back = try t.spool.providerBatchClaims(record: record)
        #expect(back.claims.map(\.id).sorted() == ids.sorted())
        #expect(back.invalid.isEmpty)
    }

    @Test func withoutItsRecordAHeldClaimIsGivenBack() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let record = "pb-" + JobID.generate()
        let (ids, _) = try held(t, record: record, 2)
        try t.spool.removeRecord(record, in: Spool.providerBatchArea)
        let report = try t.spool.recover()
        #expect(report.givenBack.sorted() == ids.sorted())
        #expect(t.visible(.new).sorted() == ids.map { $0 + ".json" }.sorted())
        for id in ids { #expect(marker(t, id) == nil) }
    }

    @Test func givenBackLiveAndSettled() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let record = "pb-" + JobID.generate()
        let (ids, claims) = try held(t, record: record, 2)
        try t.spool.giveBack(claims[0], reason: "deadline near", countAttempt: false, event: "providerBatchReturned")
        let back = try t.document(.new, ids[0] + ".json")
        #expect(back["history"]?.arrayValue?.last?["kind"]?.stringValue == "providerBatchReturned")
        #expect(back["attempts"] == nil)
        #expect(marker(t, ids[0]) == nil)
        var answer = Answer(response: "hi")
        answer.source = .object(["kind": .string("provider-batch"), "batchId": .string("batch_9")])
        #expect(try t.spool.finish(batch: [(claims[1], answer)]).isEmpty)
        #expect(try t.document(.done, ids[1] + ".json")["source"]?["batchId"]?.stringValue == "batch_9")
        #expect(marker(t, ids[1]) == nil)
        #expect(t.visible(.cur).isEmpty)
    }

    @Test func aSettledClaimIsRetiredNotSettledTwice() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let record = "pb-" + JobID.generate()
        let (ids, claims) = try held(t, record: record, 1)
        writeFile(t.path(.done, ids[0] + ".json"), Array("{}".utf8))
        #expect(try t.spool.finish(batch: [(claims[0], Answer(response: "x"))]).count == 1)
        #expect(try t.spool.retireIfSettled(claims[0]))
        #expect(t.visible(.cur).isEmpty)
        #expect(marker(t, ids[0]) == nil)
    }

    @Test func markersLeftWithoutTheirFileAreRemovedOnReadBack() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let record = "pb-" + JobID.generate()
        let (ids, _) = try held(t, record: record, 2)
        #expect(unlink(t.path(.cur, ids[0] + ".json")) == 0)  // died between settling and removing the marker
        let back = try t.spool.providerBatchClaims(record: record)
        #expect(back.claims.map(\.id) == [ids[1]])
        #expect(marker(t, ids[0]) == nil)
    }

    @Test func oneBatcherPerSpool() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let first = try #require(try t.spool.takeProviderBatchLock())
        let other = try Spool(path: t.root)
        #expect(try other.takeProviderBatchLock() == nil)
        _ = first
        withExtendedLifetime(first) {}
    }
}
