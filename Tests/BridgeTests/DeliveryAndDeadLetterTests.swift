import Testing

@testable import Bridge

@Suite("Delivery tags")
struct DeliveryTagTests {
    @Test("a tag carries its sequence number and owner through librdkafka's opaque pointer", arguments: DeliveryTag.Owner.allCases)
    func roundTrip(_ owner: DeliveryTag.Owner) throws {
        for seq in [1, 2, 1_000_003, Int(Int32.max)] {
            let tag = DeliveryTag(seq: seq, owner: owner)
            let back = try #require(DeliveryTag(raw: tag.raw))
            #expect(back == tag)
        }
    }

    @Test("an opaque no direction made is refused: 0 (no tag) and the unused owner number")
    func unknownRaw() {
        #expect(DeliveryTag(raw: 0) == nil)
        #expect(DeliveryTag(raw: 3) == nil)
        #expect(DeliveryTag(raw: 7) == nil)
        #expect(DeliveryTag(raw: 1 << 3 | 4) == nil)
    }

    @Test("the sequence hands out distinct, increasing tags across owners")
    func sequence() {
        var s = DeliverySequence()
        let tags = (0..<9).map { s.take(for: DeliveryTag.Owner.allCases[$0 % DeliveryTag.Owner.allCases.count]) }
        #expect(tags.map(\.seq) == Array(1...9))
        #expect(Set(tags.map(\.raw)).count == 9)
    }
}

@Suite("DLQ state machine")
struct DeadLetterStateMachineTests {
    let t0 = ContinuousClock.now

    @Test("a letter is due at once, not due while in flight, and gone once confirmed")
    func confirmed() {
        var m = DeadLetterStateMachine()
        let a = m.add(now: t0)
        #expect(m.due(now: t0) == [a])
        m.produced(a, seq: 7)
        #expect(m.due(now: t0 + .seconds(5)).isEmpty)
        #expect(m.nextDue == nil)
        let r1 = m.delivered(seq: 7, ok: true, now: t0); #expect(r1 == .confirmed(a))
        #expect(m.isEmpty)
    }

    @Test("a failed delivery makes the letter due again one second later, not before")
    func failedDelivery() {
        var m = DeadLetterStateMachine()
        let a = m.add(now: t0)
        m.produced(a, seq: 1)
        let r2 = m.delivered(seq: 1, ok: false, now: t0); #expect(r2 == .retry(a, at: t0 + .seconds(1)))
        #expect(m.due(now: t0 + .milliseconds(999)).isEmpty)
        #expect(m.due(now: t0 + .seconds(1)) == [a])
        #expect(m.count == 1)
    }

    @Test("a refused produce call waits a second; other letters are not held up")
    func refused() {
        var m = DeadLetterStateMachine()
        let a = m.add(now: t0), b = m.add(now: t0)
        let r3 = m.refused(a, now: t0); #expect(r3 == t0 + .seconds(1))
        #expect(m.due(now: t0) == [b])
        #expect(m.nextDue == t0)
        m.produced(b, seq: 2)
        #expect(m.nextDue == t0 + .seconds(1))
    }

    @Test("a report for an unknown message, or a second one for the same message, changes nothing")
    func unknownReports() {
        var m = DeadLetterStateMachine()
        let a = m.add(now: t0)
        m.produced(a, seq: 3)
        let r4 = m.delivered(seq: 99, ok: true, now: t0); #expect(r4 == .unknown)
        let r5 = m.delivered(seq: 3, ok: true, now: t0); #expect(r5 == .confirmed(a))
        let r6 = m.delivered(seq: 3, ok: false, now: t0); #expect(r6 == .unknown)
        #expect(m.isEmpty)
    }
}
