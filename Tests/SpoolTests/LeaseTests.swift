import Foundation
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

/// Claims parked under a lease (`.leases/ID` + `cur/.NAME.lease`): no descriptor per claim,
/// and recovery's rule for them at every crash point. The process-level kill -9 test is
/// `ConcurrencyTests.killedParkedClaimerIsRecoveredOnce`.
@Suite("Spool: claims parked under a lease")
struct LeaseTests {
    /// Open descriptors of this process.
    func openDescriptors() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
    }

    func marker(_ t: TestSpool, _ id: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: t.path(.cur, "." + id + ".json.lease"))
    }

    func leases(_ t: TestSpool) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: t.root + "/.leases")) ?? []).sorted()
    }

    /// A lease file whose process is gone: a plain file in `.leases/`, locked by no one.
    func deadLease(_ t: TestSpool) -> String {
        let id = JobID.generate()
        try? FileManager.default.createDirectory(atPath: t.root + "/.leases", withIntermediateDirectories: true)
        writeFile(t.root + "/.leases/" + id, Array("1 gone\n".utf8))
        return id
    }

    /// A claim as a process that died after parking it leaves it: `cur/ID.json` and its marker.
    func deadParkedClaim(_ t: TestSpool, _ id: String, lease: String) {
        #expect(rename(t.path(.new, id + ".json"), t.path(.cur, id + ".json")) == 0)
        #expect(symlink(lease, t.path(.cur, "." + id + ".json.lease")) == 0)
    }

    @Test func parkedClaimsHoldNoDescriptor() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<200).map { Job(prompt: "p\($0)") }, durability: .volatile)
        try t.spool.takeLease()  // its one descriptor, before counting
        let before = openDescriptors()
        let claims = try ids.map { try t.claim(id: $0) }
        let after = openDescriptors()
        // Other tests of this process run alongside and may hold a few of their own for a moment.
        #expect(after - before < 20, "200 claims took \(after - before) descriptors")
        #expect(claims.allSatisfy { $0.isParked })
        let lease = try #require(t.spool.leaseID)
        #expect(leases(t) == [lease])
        #expect(ids.allSatisfy { marker(t, $0) == lease })
        for c in claims { try t.spool.finish(c, answer: Answer(response: "r")) }
        #expect(t.names(.cur).isEmpty, "finishing removes every marker")
        #expect(t.visible(.done).count == 200)
    }

    @Test func anotherSpoolLeavesParkedClaimsAlone() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<20).map { Job(prompt: "p\($0)") })
        let claims = try ids.map { try t.claim(id: $0) }
        let other = try Spool(path: t.root)
        let report = try other.recover()
        #expect(report.live == 20)
        #expect(report.givenBack.isEmpty && report.removedMarkers == 0 && report.removedLeases == 0)
        let status = try other.status()
        #expect(status.liveClaims == 20 && status.deadClaims == 0)
        #expect(t.visible(.cur).count == 20 && ids.allSatisfy { marker(t, $0) == t.spool.leaseID })
        // The claims still settle after the other spool looked at them.
        for c in claims { try t.spool.finish(c, answer: Answer(response: "r")) }
        #expect(t.visible(.done).count == 20 && t.names(.cur).isEmpty)
    }

    @Test func abandonedParkedClaimIsDeadWhileItsProcessLives() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        _ = try t.claimAndAbandon(id + ".json")
        #expect(marker(t, id) == nil, "releasing a parked claim removes its marker")
        #expect(try t.spool.status().deadClaims == 1)
        #expect(try t.spool.recover().givenBack == [id])
    }

    @Test func claimWithoutParkingKeepsItsDescriptor() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let claim = try #require(try t.spool.claim(id + ".json", park: false).claim)
        #expect(!claim.isParked && marker(t, id) == nil && t.spool.leaseID == nil)
        #expect(try Spool(path: t.root).recover().live == 1)
        try t.spool.finish(claim, answer: Answer(response: "r"))
        #expect(t.names(.cur).isEmpty)
    }

    // MARK: Crash points

    @Test("owner died after parking: the job goes back once, its marker and lease go")
    func fileAndMarkerOfADeadLease() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<5).map { Job(prompt: "p\($0)") })
        let dead = deadLease(t)
        for id in ids { deadParkedClaim(t, id, lease: dead) }
        #expect(try t.spool.status().deadClaims == 5)
        let r = try t.spool.recover()
        #expect(Set(r.givenBack) == Set(ids) && r.givenBack.count == 5)
        #expect(r.removedMarkers == 5 && r.removedLeases == 1)
        #expect(t.names(.cur).isEmpty && leases(t).isEmpty)
        for id in ids { #expect(try Job(json: t.document(.new, id + ".json")).attempts == 1) }
    }

    @Test("owner died between claim and parking (or kept its descriptor): file without marker")
    func fileWithoutMarker() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        #expect(rename(t.path(.new, id + ".json"), t.path(.cur, id + ".json")) == 0)
        let r = try t.spool.recover()
        #expect(r.givenBack == [id] && r.removedMarkers == 0)
    }

    @Test("owner died between settling and removing the marker: marker without file")
    func markerWithoutFile() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let dead = deadLease(t)
        deadParkedClaim(t, id, lease: dead)
        // Settled: the result in done/, the claimed copy gone, the marker left behind.
        #expect(rename(t.path(.cur, id + ".json"), t.path(.done, id + ".json")) == 0)
        let r = try t.spool.recover()
        #expect(r.removedMarkers == 1 && r.removedLeases == 1 && r.givenBack.isEmpty)
        #expect(t.names(.cur).isEmpty && leases(t).isEmpty)
    }

    @Test("a marker of a live lease is left even without its file (the owner removes it)")
    func markerOfALiveLeaseWithoutFileStays() throws {
        let t = try TestSpool()
        defer { t.remove() }
        try t.spool.takeLease()
        let lease = try #require(t.spool.leaseID)
        #expect(symlink(lease, t.path(.cur, ".x.json.lease")) == 0)
        let r = try Spool(path: t.root).recover()
        #expect(r.removedMarkers == 0 && r.removedLeases == 0)
        #expect(t.names(.cur) == [".x.json.lease"] && leases(t) == [lease])
    }

    @Test("owner died after settling and giving back; a new claimer replaces its stale marker")
    func staleMarkerOfADeadLeaseIsReplaced() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let dead = deadLease(t)
        #expect(symlink(dead, t.path(.cur, "." + id + ".json.lease")) == 0)
        let claim = try t.claim(id: id)
        #expect(claim.isParked)
        #expect(marker(t, id) == t.spool.leaseID)
        let r = try Spool(path: t.root).recover()
        #expect(r.live == 1 && r.givenBack.isEmpty && r.removedLeases == 1)
        try t.spool.finish(claim, answer: Answer(response: "r"))
        #expect(t.names(.cur).isEmpty)
    }

    @Test("a marker naming another live lease is not replaced: the claim keeps its descriptor")
    func markerOfAnotherLiveLeaseIsKept() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let other = try Spool(path: t.root)
        try other.takeLease()
        let otherLease = try #require(other.leaseID)
        #expect(symlink(otherLease, t.path(.cur, "." + id + ".json.lease")) == 0)
        let claim = try t.claim(id: id)
        #expect(!claim.isParked && marker(t, id) == otherLease)
        #expect(try other.recover().live == 1)
        try t.spool.finish(claim, answer: Answer(response: "r"))
        #expect(t.visible(.done) == [id + ".json"])
    }

    @Test("a marker that names no lease (made by hand) counts for nothing and goes with its claim")
    func markerNamingNoLease() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        deadParkedClaim(t, id, lease: "../../etc/passwd")
        #expect(try t.spool.status().deadClaims == 1)
        let r = try t.spool.recover()
        #expect(r.givenBack == [id] && r.removedMarkers == 1)
        #expect(t.names(.cur).isEmpty)
    }

    @Test("two recoverers at once give every dead claim back exactly once")
    func twoRecoverersAtOnce() async throws {
        let t = try TestSpool()
        defer { t.remove() }
        let ids = try t.spool.enqueue(batch: (0..<300).map { Job(prompt: "p\($0)") }, durability: .volatile)
        let dead = deadLease(t)
        for id in ids { deadParkedClaim(t, id, lease: dead) }
        let root = t.root
        let reports = try await withThrowingTaskGroup(of: RecoveryReport.self) { group in
            for _ in 0..<2 { group.addTask { try Spool(path: root).recover() } }
            var all: [RecoveryReport] = []
            for try await r in group { all.append(r) }
            return all
        }
        var back = reports.flatMap(\.givenBack)
        // A pass that met the dead lease locked by the other counted its claims as live: another pass finishes.
        back += try t.spool.recover().givenBack
        #expect(back.count == 300 && Set(back) == Set(ids))
        #expect(t.names(.cur).isEmpty && leases(t).isEmpty)
        #expect(t.visible(.new).count == 300)
        for id in ids.prefix(20) { #expect(try Job(json: t.document(.new, id + ".json")).attempts == 1) }
    }
}
