import Testing

@testable import Bridge

@Suite("Jobs-out state machine")
struct JobsOutStateMachineTests {
    typealias M = JobsOutStateMachine
    let t0 = ContinuousClock.now

    @Test("no more than maxForwarding holds; a second file with a held id is refused")
    func capacity() {
        var m = M(maxForwarding: 2)
        let r1 = m.held(name: "a.json", id: "a"); #expect(r1)
        let r2 = m.held(name: "copy-of-a.json", id: "a"); #expect(!r2)
        #expect(!m.isFull)
        let r3 = m.held(name: "b.json", id: "b"); #expect(r3)
        #expect(m.isFull)
        #expect(m.isHeld(name: "b.json") && !m.isHeld(name: "copy-of-a.json"))
    }

    @Test("confirmed jobs go to the mover in the order they were produced, and are let go when it is done")
    func confirmAndMove() {
        var m = M(maxForwarding: 10)
        for (k, id) in ["a", "b", "c"].enumerated() {
            _ = m.held(name: id + ".json", id: id)
            m.produced(name: id + ".json", seq: 10 - k)  // c was produced first
        }
        #expect(m.inFlight == 3)
        for seq in [8, 10, 9] { let r4 = m.delivered(seq: seq, ok: true, now: t0); #expect(r4.isEmpty) }
        let batch = m.takeConfirmed()
        #expect(batch.map(\.name) == ["c.json", "b.json", "a.json"])
        #expect(batch.allSatisfy { !$0.settled })
        #expect(m.withMover == 3 && m.inFlight == 0)
        let r5 = m.takeConfirmed(); #expect(r5.isEmpty)
        let (actions, ids) = m.moved(["c.json", "b.json", "a.json"])
        #expect(actions == [.release(name: "c.json"), .release(name: "b.json"), .release(name: "a.json")])
        #expect(ids == ["c", "b", "a"])
        #expect(m.count == 0 && m.withMover == 0)
    }

    @Test("a failed delivery lets the job go (it stays in new/) and backs off")
    func failedDelivery() {
        var m = M(maxForwarding: 10)
        _ = m.held(name: "a.json", id: "a")
        m.produced(name: "a.json", seq: 1)
        let r6 = m.delivered(seq: 1, ok: false, now: t0); #expect(r6 == [.release(name: "a.json"), .retry(at: t0 + .seconds(1))])
        #expect(!m.isHeld(name: "a.json"))
        #expect(m.place(ofResult: "a") == .notHeld)
        let r7 = m.delivered(seq: 1, ok: true, now: t0); #expect(r7.isEmpty, "a second report changes nothing")
    }

    @Test("a refused produce keeps the hold for the next turn; a full queue needs no back-off")
    func refusedProduce() {
        var m = M(maxForwarding: 10)
        _ = m.held(name: "a.json", id: "a")
        _ = m.held(name: "b.json", id: "b")
        let r8 = m.refused(name: "a.json", queueFull: true, now: t0); #expect(r8.isEmpty)
        let r9 = m.refused(name: "b.json", queueFull: false, now: t0); #expect(r9 == [.retry(at: t0 + .seconds(1))])
        #expect(m.awaitingDelivery == 2)
        let r10 = m.takeUnsent(); #expect(r10 == ["a.json", "b.json"])
        let r11 = m.takeUnsent(); #expect(r11.isEmpty)
    }

    @Test("a result for a job awaiting its report is settled at once; the mover then retires the job instead of moving it")
    func resultBeforeReport() {
        var m = M(maxForwarding: 10)
        _ = m.held(name: "x.json", id: "x")
        m.produced(name: "x.json", seq: 5)
        #expect(m.place(ofResult: "x") == .held(name: "x.json"))
        m.settled(id: "x")
        _ = m.delivered(seq: 5, ok: true, now: t0)
        let r12 = m.takeConfirmed(); #expect(r12.map(\.settled) == [true])
    }

    @Test("a settled job whose delivery failed is retired, not sent again: its result is home")
    func settledAndFailed() {
        var m = M(maxForwarding: 10)
        _ = m.held(name: "x.json", id: "x")
        m.produced(name: "x.json", seq: 5)
        m.settled(id: "x")
        let r13 = m.delivered(seq: 5, ok: false, now: t0); #expect(r13.isEmpty)
        let r14 = m.takeConfirmed(); #expect(r14.map(\.settled) == [true])
    }

    @Test("a result for a job with the mover waits: the job is not touched until the mover lets it go")
    func resultWhileMoving() {
        var m = M(maxForwarding: 10)
        _ = m.held(name: "x.json", id: "x")
        m.produced(name: "x.json", seq: 1)
        _ = m.delivered(seq: 1, ok: true, now: t0)
        _ = m.takeConfirmed()
        #expect(m.place(ofResult: "x") == .withMover)
        m.settled(id: "x")
        #expect(m.entries["x.json"]?.settled == false, "nothing changes under the mover")
        let r15 = m.moved(["x.json"]); #expect(r15.ids == ["x"])
        #expect(m.place(ofResult: "x") == .notHeld)
    }

    @Test("at a stop every hold not with the mover is let go; the mover's are left to it")
    func releaseAll() {
        var m = M(maxForwarding: 10)
        for id in ["a", "b", "c"] { _ = m.held(name: id + ".json", id: id) }
        m.produced(name: "a.json", seq: 1)
        m.produced(name: "b.json", seq: 2)
        _ = m.delivered(seq: 2, ok: true, now: t0)
        _ = m.takeConfirmed()
        let r16 = m.releaseAll(); #expect(r16 == [.release(name: "a.json"), .release(name: "c.json")])
        #expect(m.count == 1 && m.withMover == 1)
        #expect(m.inFlight == 0)
    }
}
