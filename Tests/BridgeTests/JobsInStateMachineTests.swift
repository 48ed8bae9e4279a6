import Testing

@testable import Bridge

@Suite("Jobs-in state machine")
struct JobsInStateMachineTests {
    typealias M = JobsInStateMachine
    let t0 = ContinuousClock.now
    let offsets = [M.Offset(topic: "jobs", partition: 0, next: 11), M.Offset(topic: "jobs", partition: 2, next: 4)]

    @Test("without a limit: batches of 500, and a batch's offsets are stored as soon as it is written")
    func plain() {
        var m = M()
        #expect(m.budget == 500)
        let r1 = m.batchWritten(enqueued: 500, deadLetters: 0, offsets: offsets); #expect(r1 == [.storeOffsets(offsets)])
        #expect(m.budget == 500)
        #expect(!m.wantsCount)
    }

    @Test("with dead letters in flight nothing more is taken, and the offsets wait for the last confirmation")
    func deadLettersHoldOffsets() {
        var m = M()
        let r2 = m.batchWritten(enqueued: 3, deadLetters: 2, offsets: offsets); #expect(r2.isEmpty)
        #expect(m.budget == 0)
        let r3 = m.deadLetterConfirmed(); #expect(r3.isEmpty)
        #expect(m.budget == 0)
        let r4 = m.deadLetterConfirmed(); #expect(r4 == [.storeOffsets(offsets)])
        #expect(m.budget == 500)
        let r5 = m.deadLetterConfirmed(); #expect(r5.isEmpty, "a stray confirmation stores nothing")
    }

    @Test("a batch the spool refused is written again after a second, and nothing is taken meanwhile")
    func enqueueRetry() {
        var m = M()
        let r6 = m.enqueueFailed(now: t0); #expect(r6 == [.retryEnqueue(at: t0 + .seconds(1))])
        #expect(m.budget == 0)
        let r7 = m.retryDue(now: t0 + .milliseconds(500)); #expect(!r7)
        let r8 = m.retryDue(now: t0 + .seconds(1)); #expect(r8)
        #expect(m.phase == .ready)
        let r9 = m.retryDue(now: t0 + .seconds(2)); #expect(!r9, "due once")
    }

    @Test("the low-water mark is half the limit, at least 1")
    func lowWater() {
        #expect(M.BackPressure(limit: 100) == M.BackPressure(high: 100, low: 50))
        #expect(M.BackPressure(limit: 1) == M.BackPressure(high: 1, low: 1))
        #expect(M.BackPressure(limit: 7).low == 3)
    }

    @Test("with a limit, no batch takes more than the room left below it")
    func budgetBelowLimit() {
        var m = M(backPressure: .init(limit: 10))
        #expect(m.budget == 10)
        m.assigned()
        _ = m.batchWritten(enqueued: 7, deadLetters: 0, offsets: offsets)
        #expect(m.queued == 7)
        #expect(m.budget == 3)
        #expect(M(backPressure: .init(limit: 2000)).budget == 500)
    }

    @Test("at the limit it stores the batch's offsets, then leaves the group; it drops what comes until the revocation")
    func leavesAtLimit() {
        var m = M(backPressure: .init(limit: 10))
        m.assigned()
        let r10 = m.batchWritten(enqueued: 10, deadLetters: 0, offsets: offsets); #expect(r10 == [.storeOffsets(offsets), .leaveGroup])
        #expect(m.membership == .leaving)
        #expect(m.budget == 0)
        #expect(m.wantsCount)
    }

    @Test("it joins again only once its partitions are revoked and the count is below the low-water mark")
    func rejoinsAfterRevokeBelowLowWater() {
        var m = M(backPressure: .init(limit: 10))
        m.assigned()
        _ = m.batchWritten(enqueued: 10, deadLetters: 0, offsets: [])
        // Answered meanwhile, but the partitions are not revoked yet: no join (a message dropped
        // while leaving must not be skipped by this consumer).
        let r11 = m.counted(queued: 0); #expect(r11.isEmpty)
        #expect(m.membership == .leaving)
        let r12 = m.revoked(); #expect(r12 == [.rejoinGroup])
        #expect(m.membership == .joined)
        #expect(m.budget == 10)
    }

    @Test("between the marks it stays out (hysteresis); at the low-water mark minus one it joins")
    func hysteresis() {
        var m = M(backPressure: .init(limit: 10))
        m.assigned()
        _ = m.batchWritten(enqueued: 10, deadLetters: 0, offsets: [])
        let r13 = m.revoked(); #expect(r13.isEmpty)
        #expect(m.membership == .left)
        let r14 = m.counted(queued: 9); #expect(r14.isEmpty)
        let r15 = m.counted(queued: 5); #expect(r15.isEmpty)
        #expect(m.budget == 0)
        let r16 = m.counted(queued: 4); #expect(r16 == [.rejoinGroup])
        m.assigned()
        let r17 = m.counted(queued: 6); #expect(r17.isEmpty, "joined, below the limit: stays")
        #expect(m.budget == 4)
    }

    @Test("a batch with dead letters in flight is settled before the host leaves: offsets first, then the leave")
    func leaveWaitsForDeadLetters() {
        var m = M(backPressure: .init(limit: 5))
        m.assigned()
        let r18 = m.batchWritten(enqueued: 5, deadLetters: 1, offsets: offsets); #expect(r18.isEmpty)
        #expect(m.membership == .joined)
        let r19 = m.deadLetterConfirmed(); #expect(r19 == [.storeOffsets(offsets), .leaveGroup])
    }

    @Test("a consumer with no partitions leaves at once (no revocation will come)")
    func leaveWithoutPartitions() {
        var m = M(backPressure: .init(limit: 3))
        let r20 = m.counted(queued: 3); #expect(r20 == [.leaveGroup])
        #expect(m.membership == .left)
        let r22 = m.counted(queued: 1); #expect(r22.isEmpty, "the low-water mark of 3 is 1: at 1 it stays out")
        let r21 = m.counted(queued: 0); #expect(r21 == [.rejoinGroup])
    }
}
