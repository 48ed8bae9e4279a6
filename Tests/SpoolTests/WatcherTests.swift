import Foundation
import Testing

@testable import Spool

@Suite("SpoolWatcher")
struct SpoolWatcherTests {
    /// Runs `body` on a new thread after `delayMilliseconds`.
    private func later(_ delayMilliseconds: UInt32, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread {
            usleep(delayMilliseconds * 1000)
            body()
        }
        thread.start()
    }

    @Test func timesOutWhenIdle() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool)
        let start = Timestamp.nowMilliseconds()
        #expect(watcher.wait(timeoutMilliseconds: 100) == .timeout)
        let elapsed = Timestamp.nowMilliseconds() - start
        #expect(elapsed >= 95 && elapsed < 2000, "waited \(elapsed) ms")
        #expect(watcher.wait(timeoutMilliseconds: 0) == .timeout)
    }

    @Test func wakesWhenAJobIsEnqueuedFromAnotherThread() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool)
        let spool = t.spool
        later(50) { _ = try? spool.enqueue(Job(prompt: "wake up")) }
        let start = Timestamp.nowMilliseconds()
        let wake = watcher.wait(timeoutMilliseconds: 10_000)
        #expect(Timestamp.nowMilliseconds() - start < 5000)
        let waiting = try spool.waiting()
        #expect(waiting.count == 1)
        #expect(wake == .changed(arrived: [.new: waiting], overflow: false))
    }

    @Test func wakesForAHandDroppedRename() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool)
        t.drop("w.job", #"{"prompt":"p"}"#, into: .tmp)
        #expect(watcher.wait(timeoutMilliseconds: 50) == .timeout, "tmp/ is not watched")
        #expect(rename(t.path(.tmp, "w.job"), t.path(.new, "w.json")) == 0)
        #expect(watcher.wait(timeoutMilliseconds: 10_000) == .changed(arrived: [.new: ["w.json"]], overflow: false))
    }

    @Test func eventsThatArriveTogetherAreReportedOnce() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool)
        let ids = try t.spool.enqueue(batch: (0..<20).map { Job(prompt: "\($0)") }, durability: .volatile)
        let wake = watcher.wait(timeoutMilliseconds: 1000)
        #expect(wake == .changed(arrived: [.new: ids.map { $0 + ".json" }], overflow: false), "in arrival order")
        #expect(watcher.wait(timeoutMilliseconds: 50) == .timeout, "the queue was drained")
    }

    @Test func watchesOnlyTheStatesAskedFor() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool, states: [.done])
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let claim = try t.claim(id: id)
        #expect(watcher.wait(timeoutMilliseconds: 50) == .timeout, "new/ and cur/ are not watched")
        try t.spool.finish(claim, answer: Answer(response: "r"))
        #expect(watcher.wait(timeoutMilliseconds: 1000) == .changed(arrived: [.done: [id + ".json"]], overflow: false))
    }

    @Test func leavingAndDotNamesWakeWithoutArrivals() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let watcher = try SpoolWatcher(t.spool)
        let claim = try t.claim(id: id)  // moved out of new/
        #expect(watcher.wait(timeoutMilliseconds: 1000) == .changed(arrived: [:], overflow: false))
        t.drop(".partial", "x")  // written and closed, but a dot name
        #expect(watcher.wait(timeoutMilliseconds: 1000) == .changed(arrived: [:], overflow: false))
        withExtendedLifetime(claim) {}
    }

    @Test func anArrivalsWatcherSleepsThroughMovesOut() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "p"))
        let watcher = try SpoolWatcher(t.spool, events: .arrivals)
        let claim = try t.claim(id: id)  // moved out of new/: no wake-up
        #expect(watcher.wait(timeoutMilliseconds: 200) == .timeout)
        let next = try t.spool.enqueue(Job(prompt: "q"))
        #expect(watcher.wait(timeoutMilliseconds: 1000) == .changed(arrived: [.new: [next + ".json"]], overflow: false))
        withExtendedLifetime(claim) {}
    }

    @Test func wakeEndsAWait() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool)
        // Before the wait: the next wait returns at once.
        watcher.wake()
        let start = Timestamp.nowMilliseconds()
        #expect(watcher.wait(timeoutMilliseconds: 10_000) == .woken)
        #expect(Timestamp.nowMilliseconds() - start < 1000)
        // The wake-up is consumed.
        #expect(watcher.wait(timeoutMilliseconds: 20) == .timeout)
        // From another thread, during a wait without a timeout.
        later(50) { watcher.wake() }
        #expect(watcher.wait(timeoutMilliseconds: -1) == .woken)
    }
}
