import TestSupport
import Testing

@testable import LLM

@Suite("RetryBudget: separate budgets by cause (pure)")
struct RetryBudgetTests {
    @Test(
        "causes",
        arguments: [
            (400, FailureCause.permanent), (401, .permanent), (403, .permanent), (404, .permanent), (422, .permanent),
            (429, .rateLimit), (529, .rateLimit), (408, .transient), (409, .transient), (500, .transient), (502, .transient),
            (503, .transient), (504, .transient),
        ])
    func causes(status: Int, cause: FailureCause) {
        #expect(RetryPolicy.cause(httpStatus: status) == cause)
        #expect(LLMError(.http, "x", httpStatus: status).cause == cause)
    }

    @Test("transport failures are transient; TLS and malformed answers are permanent")
    func kinds() {
        #expect(LLMError(.connection, "refused").cause == .transient)
        #expect(LLMError(.timeout, "slow").cause == .transient)
        #expect(LLMError(.tls, "bad cert").cause == .permanent)
        #expect(LLMError(.malformedResponse, "not JSON", httpStatus: 200).cause == .permanent)
    }

    /// The log after `n` failures of `cause`, the first at time 0.
    func log(_ cause: FailureCause, _ n: Int, deadlineMs: Int64? = nil) -> AttemptLog {
        var l = AttemptLog(deadlineMs: deadlineMs)
        for k in 0..<n { l.record(cause, startedMs: Int64(k) * 1000) }
        return l
    }

    @Test("a permanent error dead-letters at the first attempt")
    func permanent() {
        var r = MaxRandom()
        #expect(
            RetryBudget().decide(after: .permanent, retryAfterMs: nil, log: log(.permanent, 1), nowMs: 10, using: &r)
                == .deadLetter(.permanent))
    }

    @Test("rate limits never use attempts: the 1,000th 429 is retried, after the server's wait")
    func rateLimitsArePacing() {
        let b = RetryBudget(maxAttempts: 3)
        var r = ZeroRandom()
        let l = log(.rateLimit, 1000)
        #expect(l.transientFailures == 0 && l.rateLimits == 1000)
        #expect(b.decide(after: .rateLimit, retryAfterMs: 2000, log: l, nowMs: 10_000_000, using: &r) == .retry(afterMs: 2000))
        // Without retry-after: backoff over the rate limits so far, capped.
        var high = MaxRandom()
        #expect(b.decide(after: .rateLimit, retryAfterMs: nil, log: l, nowMs: 10_000_000, using: &high) == .retry(afterMs: b.maxDelayMs))
        // ... and they leave the transient budget whole.
        var mixed = l
        mixed.record(.transient, startedMs: 0)
        #expect(b.decide(after: .transient, retryAfterMs: nil, log: mixed, nowMs: 1000, using: &r) == .retry(afterMs: 0))
    }

    @Test("transient failures: retried up to maxAttempts failed calls, with backoff ceilings 0.5, 1, 2 … s up to the cap")
    func transientAttempts() {
        let b = RetryBudget(maxAttempts: 20, timeBudgetMs: .max / 2)
        var high = MaxRandom()
        var waits: [Int64] = []
        for n in 1...19 {
            guard case .retry(let w) = b.decide(after: .transient, retryAfterMs: nil, log: log(.transient, n), nowMs: 0, using: &high)
            else { Issue.record("attempt \(n) was not retried"); return }
            waits.append(w)
        }
        #expect(Array(waits.prefix(6)) == [500, 1000, 2000, 4000, 8000, 16_000])
        #expect(waits.last == 300_000)
        #expect(b.decide(after: .transient, retryAfterMs: nil, log: log(.transient, 20), nowMs: 0, using: &high) == .deadLetter(.attemptsExhausted))
    }

    @Test("full jitter: anywhere from zero to the ceiling")
    func fullJitter() {
        let b = RetryBudget()
        var seeded = SplitMix(seed: 7)
        let samples = (0..<2000).map { _ in b.delay(failures: 4, serverDelayMs: nil, using: &seeded) }
        #expect(samples.allSatisfy { $0 >= 0 && $0 <= 4000 })
        let mean = Double(samples.reduce(0, +)) / Double(samples.count)
        #expect(abs(mean - 2000) < 150, "full jitter averages half the ceiling, got \(mean)")
    }

    @Test("the time budget counts from the first attempt; the last wait ends at it; past it, dead-letter")
    func timeBudget() {
        let b = RetryBudget(maxAttempts: 100, timeBudgetMs: 60_000)
        var high = MaxRandom()
        let l = log(.transient, 10)  // first attempt at 0
        // 50 s in: a 256 s backoff is cut to the 10 s left.
        #expect(b.decide(after: .transient, retryAfterMs: nil, log: l, nowMs: 50_000, using: &high) == .retry(afterMs: 10_000))
        #expect(b.decide(after: .transient, retryAfterMs: nil, log: l, nowMs: 60_000, using: &high) == .deadLetter(.timeBudgetExhausted))
        // Rate limits do not draw on it.
        var rl = l
        rl.record(.rateLimit, startedMs: 61_000)
        #expect(b.decide(after: .rateLimit, retryAfterMs: 1000, log: rl, nowMs: 62_000, using: &high) == .retry(afterMs: 1100))
    }

    @Test("the job's deadline ends every budget, rate limits and probes included")
    func deadline() {
        let b = RetryBudget()
        var high = MaxRandom()
        #expect(
            b.decide(after: .rateLimit, retryAfterMs: 5000, log: log(.rateLimit, 1, deadlineMs: 3000), nowMs: 1000, using: &high)
                == .retry(afterMs: 2000))
        #expect(
            b.decide(after: .rateLimit, retryAfterMs: 5000, log: log(.rateLimit, 1, deadlineMs: 3000), nowMs: 3000, using: &high)
                == .deadLetter(.deadlinePassed))
        #expect(
            b.decide(
                after: .transient, retryAfterMs: nil, probe: true, log: log(.transient, 1, deadlineMs: 3000), nowMs: 4000,
                using: &high) == .deadLetter(.deadlinePassed))
        // A deadline sooner than the time budget is the reason given.
        #expect(
            b.decide(after: .transient, retryAfterMs: nil, log: log(.transient, 1, deadlineMs: 3000), nowMs: 3000, using: &high)
                == .deadLetter(.deadlinePassed))
    }

    @Test("a failed probe of an open breaker uses neither attempts nor the time budget")
    func probesAreFree() {
        let b = RetryBudget(maxAttempts: 2, timeBudgetMs: 1000)
        var high = MaxRandom()
        var l = log(.transient, 1)
        for k in 0..<50 { l.record(.transient, startedMs: 2000 + Int64(k), probe: true) }
        #expect(l.transientFailures == 1 && l.probeFailures == 50 && l.calls == 51)
        guard case .retry = b.decide(after: .transient, retryAfterMs: nil, probe: true, log: l, nowMs: 3_600_000, using: &high) else {
            Issue.record("a probe's failure ended the job")
            return
        }
    }
}
