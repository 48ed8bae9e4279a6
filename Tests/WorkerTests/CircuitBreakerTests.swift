import Testing

@testable import Worker

@Suite("Circuit breaker (pure)")
struct CircuitBreakerTests {
    func breaker(_ change: (inout CircuitBreaker.Settings) -> Void = { _ in }) -> CircuitBreaker {
        var s = CircuitBreaker.Settings()
        change(&s)
        return CircuitBreaker(settings: s)
    }

    @Test("23 % of calls failing (and rate limits, which show the endpoint up) never opens it")
    func staysClosedUnderPartialFailure() {
        var b = breaker()
        var rng = 0x2545F4914F6CDD1D as UInt64
        for k in 0..<10_000 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            let failed = rng % 100 < 23
            #expect(b.record(failedTransiently: failed, probe: false, nowMs: Int64(k)) == nil)
        }
        #expect(b.state == .closed && b.permit(nowMs: 10_000) == .call)
    }

    @Test("opens at half of the last 50 calls failed; then only a probe, after the interval")
    func opensOnRatio() {
        var b = breaker()
        for k in 0..<50 { _ = b.record(failedTransiently: false, probe: false, nowMs: Int64(k)) }
        for k in 0..<24 { #expect(b.record(failedTransiently: true, probe: false, nowMs: 100 + Int64(k)) == nil) }
        #expect(b.record(failedTransiently: true, probe: false, nowMs: 200) == .opened)
        #expect(b.state == .open && b.openedAtMs == 200)
        #expect(b.permit(nowMs: 500) == .wait(untilMs: 1200))
        // Calls started before it opened change nothing, whether they failed or were answered.
        #expect(b.record(failedTransiently: true, probe: false, nowMs: 600) == nil)
        #expect(b.record(failedTransiently: false, probe: false, nowMs: 700) == nil)
        #expect(b.state == .open)
        #expect(b.permit(nowMs: 1200) == .probe)
        b.probeStarted()
        #expect(b.state == .probing && b.probes == 1)
        #expect(b.permit(nowMs: 1300) == .wait(untilMs: .max))
    }

    @Test("needs minimumCalls before the ratio counts, but every call failing for 10 s opens it")
    func opensOnAllFailing() {
        var b = breaker()
        #expect(b.record(failedTransiently: true, probe: false, nowMs: 0) == nil)
        #expect(b.record(failedTransiently: true, probe: false, nowMs: 5000) == nil)
        #expect(b.record(failedTransiently: true, probe: false, nowMs: 10_000) == .opened)
        // A success in between starts the streak again.
        var c = breaker()
        _ = c.record(failedTransiently: true, probe: false, nowMs: 0)
        _ = c.record(failedTransiently: false, probe: false, nowMs: 6000)
        #expect(c.record(failedTransiently: true, probe: false, nowMs: 10_000) == nil)
        #expect(c.record(failedTransiently: true, probe: false, nowMs: 19_999) == nil)
        #expect(c.record(failedTransiently: true, probe: false, nowMs: 20_000) == .opened)
    }

    @Test("failed probes back off 1, 2, 4, 5, 5 s; a probe's answer closes it with a fresh window")
    func probesBackOffThenClose() {
        var b = breaker()
        var now: Int64 = 0
        _ = b.record(failedTransiently: true, probe: false, nowMs: now)
        now = 10_000
        #expect(b.record(failedTransiently: true, probe: false, nowMs: now) == .opened)
        var intervals: [Int64] = []
        for _ in 0..<5 {
            guard case .wait(let until) = b.permit(nowMs: now) else { Issue.record("not waiting"); return }
            intervals.append(until - now)
            now = until
            #expect(b.permit(nowMs: now) == .probe)
            b.probeStarted()
            #expect(b.record(failedTransiently: true, probe: true, nowMs: now) == .probeFailed)
        }
        #expect(intervals == [1000, 2000, 4000, 5000, 5000])
        now += 5000
        #expect(b.permit(nowMs: now) == .probe)
        b.probeStarted()
        #expect(b.probes == 6)
        #expect(b.record(failedTransiently: false, probe: true, nowMs: now) == .closed)
        #expect(b.state == .closed && b.openedAtMs == nil && b.permit(nowMs: now) == .call)
        // Fresh window: one failure does not reopen it.
        #expect(b.record(failedTransiently: true, probe: false, nowMs: now + 1) == nil)
    }

    @Test("a probe that never reached the endpoint lets the next call probe at once")
    func abandonedProbe() {
        var b = breaker { $0.allFailing = .milliseconds(1) }
        _ = b.record(failedTransiently: true, probe: false, nowMs: 0)
        #expect(b.record(failedTransiently: true, probe: false, nowMs: 1) == .opened)
        #expect(b.permit(nowMs: 1001) == .probe)
        b.probeStarted()
        b.probeAbandoned(nowMs: 1100)
        #expect(b.state == .open && b.permit(nowMs: 1100) == .probe)
    }

    @Test("disabled: never opens")
    func disabled() {
        var b = breaker { $0.enabled = false }
        for k in 0..<100 { #expect(b.record(failedTransiently: true, probe: false, nowMs: Int64(k) * 1000) == nil) }
        #expect(b.permit(nowMs: 100_000) == .call)
    }
}
