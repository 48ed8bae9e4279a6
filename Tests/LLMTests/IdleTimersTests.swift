import Testing

@testable import LLM

/// The engine's idle timers on their own (pure: no loop, no network): order, deadlines, expiry.
@Suite("Idle timers of streamed transfers")
struct IdleTimersTests {
    func transfer(_ id: UInt64, idle: Duration?) -> Transfer {
        var request = HTTPRequest(url: "http://127.0.0.1:9/")
        request.idleTimeout = idle
        return Transfer(id: id, request: request)
    }

    @Test("a transfer is timed from its first byte; each byte moves it behind the others; the earliest deadline of all lists wakes the loop")
    func order() {
        let timers = IdleTimers()
        let a = transfer(1, idle: .seconds(1)), b = transfer(2, idle: .seconds(1)), c = transfer(3, idle: .milliseconds(500))
        let none = transfer(4, idle: nil)
        #expect(timers.nextDeadline == nil)
        timers.touch(none, now: 0)
        #expect(timers.nextDeadline == nil && timers.count == 0, "a transfer without an idle timeout is never timed")
        timers.touch(a, now: 0)
        timers.touch(b, now: 100)
        #expect(timers.nextDeadline == 1_000_000_000)
        timers.touch(c, now: 200)
        #expect(timers.nextDeadline == 500_000_200)
        #expect(timers.listCount == 2 && timers.count == 3)
        timers.touch(a, now: 300)  // a is now the most recent of its list: b is the head
        timers.touch(c, now: 700_000_000)
        #expect(timers.nextDeadline == 1_000_000_100)
        #expect(timers.expire(now: 1_000_000_099).isEmpty)
        #expect(timers.expire(now: 1_000_000_100).map(\.id) == [2])
        #expect(timers.nextDeadline == 1_000_000_300)
        #expect(timers.count == 2)
        // Expired transfers leave their list; an emptied list goes.
        #expect(Set(timers.expire(now: 2_000_000_000).map(\.id)) == [1, 3])
        #expect(timers.count == 0 && timers.listCount == 0 && timers.nextDeadline == nil)
    }

    @Test("removing a transfer (it ended) from the head, the middle or the tail keeps the others in order")
    func removal() {
        let timers = IdleTimers()
        let ts = (1...5).map { transfer(UInt64($0), idle: .seconds(1)) }
        for (k, t) in ts.enumerated() { timers.touch(t, now: UInt64(k)) }
        timers.remove(ts[0])
        timers.remove(ts[2])
        timers.remove(ts[4])
        timers.remove(ts[4])  // twice: nothing
        #expect(timers.count == 2)
        #expect(timers.nextDeadline == 1_000_000_001)
        #expect(timers.expire(now: .max / 2).map(\.id) == [2, 4])
        timers.touch(ts[1], now: 10)  // a byte after expiry (it is ended anyway): timed again, alone
        timers.remove(ts[1])
        #expect(timers.listCount == 0)
    }

    @Test("10,000 transfers: a byte costs a move, not a walk; expiry takes exactly the ones past their deadline")
    func many() {
        let timers = IdleTimers()
        let ts = (0..<10_000).map { transfer(UInt64($0), idle: .milliseconds(700)) }
        for (k, t) in ts.enumerated() { timers.touch(t, now: UInt64(k)) }
        // Every odd transfer receives a byte much later.
        for (k, t) in ts.enumerated() where k % 2 == 1 { timers.touch(t, now: 1_000_000_000 + UInt64(k)) }
        let expired = timers.expire(now: 700_000_000 + 10_000)
        // Compared as one Bool: a failure would otherwise print 10,000 ids.
        #expect(expired.count == 5_000 && zip(expired, stride(from: 0, to: 10_000, by: 2)).allSatisfy { $0.id == UInt64($1) })
        #expect(timers.count == 5_000)
        #expect(timers.nextDeadline == 1_700_000_001)
        #expect(timers.expire(now: .max / 2).count == 5_000)
    }
}
