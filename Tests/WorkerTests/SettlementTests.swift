import JSON
import LLM
import Spool
import TestSupport
import Testing

@testable import Worker

@Suite("Settling a call: the retry and dead-letter decision (pure)")
struct SettlementTests {
    let budget = RetryBudget(maxAttempts: 3, timeBudgetMs: 10_000, baseDelayMs: 500, maxDelayMs: 8000, maxServerDelayMs: 5000)

    func decide(
        _ f: CallFailure, log: AttemptLog = AttemptLog(), probe: Bool = false, budget: RetryBudget? = nil, now: Int64 = 1000,
        random: UInt64 = .max
    ) -> Settlement {
        var r = FixedRandom(value: random)
        return Settlement.decide(
            .failure(f), log: log, probe: probe, budget: budget ?? self.budget, startedMs: now - 100, nowMs: now,
            using: &r)
    }

    @Test("an answer is committed; a cancelled call is given back and counts no attempt")
    func answerAndCancel() {
        var r = FixedRandom(value: 0)
        guard
            case .commit(let a) = Settlement.decide(
                .answer(Answer(response: "hi")), log: AttemptLog(), probe: false, budget: budget,
                startedMs: 0, nowMs: 1, using: &r)
        else { Issue.record("not committed"); return }
        #expect(a.response == "hi")
        guard case .giveBack(let f) = decide(.cancelled) else { Issue.record("not given back"); return }
        #expect(f.kind == .cancelled)
    }

    @Test("a permanent error dead-letters at once, its message as the provider gave it")
    func permanent() {
        guard case .deadLetter(let failure, let reason, _, _) = decide(.badRequest) else { Issue.record("not dead-lettered"); return }
        #expect(reason == .permanent && failure.message == "400 Bad Request" && failure.kind == "http" && failure.httpStatus == 400)
    }

    @Test(
        "a transient failure is retried after full jitter over the base delay, doubling per failure; the log records it",
        arguments: [(UInt64.max, 0, Int64(500)), (0, 0, 0), (UInt64.max, 1, 1000), (UInt64.max, 2, 2000)])
    func transientBackoff(random: UInt64, failuresBefore: Int, expectedMs: Int64) {
        var log = AttemptLog()
        for _ in 0..<failuresBefore { log.record(.transient, startedMs: 500) }
        let b = RetryBudget(maxAttempts: 10, timeBudgetMs: 3_600_000, baseDelayMs: 500, maxDelayMs: 8000)
        guard case .retry(let delay, let after, let f) = decide(.unavailable, log: log, budget: b, random: random) else {
            Issue.record("not retried"); return
        }
        #expect(delay == .milliseconds(expectedMs))
        #expect(after.transientFailures == failuresBefore + 1 && f == .unavailable)
    }

    @Test("the maxAttempts-th transient failure dead-letters, saying which budget ran out")
    func attemptsExhausted() {
        var log = AttemptLog()
        log.record(.transient, startedMs: 0)
        log.record(.transient, startedMs: 200)
        guard case .deadLetter(let failure, let reason, let after, _) = decide(.unavailable, log: log) else { Issue.record("retried"); return }
        #expect(reason == .attemptsExhausted && after.transientFailures == 3)
        #expect(failure.message == "503 Service Unavailable (gave up: 3 calls failed transiently, the most allowed (maxAttempts 3))")
    }

    @Test("rate limits never use the attempts: the 100th is retried, after the provider's wait plus up to 10 %, capped")
    func rateLimitsArePacing() {
        var log = AttemptLog()
        for k in 0..<99 { log.record(.rateLimit, startedMs: Int64(k)) }
        guard case .retry(let delay, _, _) = decide(.rateLimited(retryAfterMs: 2000), log: log) else { Issue.record("gave up"); return }
        #expect(delay == .milliseconds(2200))
        guard case .retry(let capped, _, _) = decide(.rateLimited(retryAfterMs: 60_000), log: log) else { Issue.record("gave up"); return }
        #expect(capped == .milliseconds(5000))
    }

    @Test("the time budget: the last wait ends at its end; a failure after it dead-letters")
    func timeBudget() {
        var log = AttemptLog()
        log.record(.transient, startedMs: 0)
        guard case .retry(let delay, _, _) = decide(.unavailable, log: log, now: 9_900) else { Issue.record("gave up"); return }
        #expect(delay == .milliseconds(100))
        guard case .deadLetter(let f, let reason, _, _) = decide(.unavailable, log: log, now: 10_000) else { Issue.record("retried"); return }
        #expect(reason == .timeBudgetExhausted && f.message.contains("retry time budget of 10.0 s"))
    }

    @Test("the job's deadline ends every budget, rate limits included")
    func deadline() {
        let log = AttemptLog(deadlineMs: 5000)
        guard case .deadLetter(_, let reason, _, _) = decide(.rateLimited(retryAfterMs: 100), log: log, now: 6000) else {
            Issue.record("retried"); return
        }
        #expect(reason == .deadlinePassed)
        guard case .retry(let d, _, _) = decide(.rateLimited(retryAfterMs: 2000), log: log, now: 4000) else { Issue.record("gave up"); return }
        #expect(d == .milliseconds(1000), "the last wait ends at the deadline")
        let f = Settlement.pastDeadline(job("t", deadline: "2030-01-01T00:00:00Z"), callsMade: 2)
        #expect(f.kind == "deadline-passed" && f.message.hasSuffix("again (2 calls made)"))
    }

    @Test("a failed probe is the endpoint's failure: it uses neither the attempts nor the time budget")
    func probeFailure() {
        var log = AttemptLog()
        for k in 0..<3 { log.record(.transient, startedMs: Int64(k)) }
        guard case .retry(_, let after, _) = decide(.unavailable, log: log, probe: true, now: 60_000) else { Issue.record("gave up"); return }
        #expect(after.probeFailures == 1 && after.transientFailures == 3)
    }

    @Test("a job's own retry settings replace the worker's")
    func jobRetrySettings() {
        var j = job("t")
        j.retry = JobRetry(maxAttempts: 1)
        let b = WorkerConfiguration().retryBudget(for: j)
        guard case .deadLetter(_, let reason, _, _) = decide(.unavailable, budget: b) else { Issue.record("retried"); return }
        #expect(reason == .attemptsExhausted)
    }

    @Test("CallFailure.Kind: the on-disk words, one for each LLMError kind, plus cancelled and deadline-passed")
    func kindStrings() {
        for k in LLMError.Kind.allCases { #expect(CallFailure.Kind(k).rawValue == k.rawValue) }
        #expect(CallFailure.Kind.cancelled.rawValue == "cancelled" && CallFailure.Kind.deadlinePassed.rawValue == "deadline-passed")
        #expect("\(CallFailure.Kind.malformedResponse)" == "malformed-response")
        #expect(CallFailure.unavailable.failure == Failure(kind: "http", message: "503 Service Unavailable", httpStatus: 503))
    }
}

@Suite("The worker's event queue")
struct EventQueueTests {
    @Test("events yielded while the loop is busy come out in one batch, in order; finish ends it")
    func batches() {
        let q = EventQueue<Int>()
        for k in 0..<5 { q.yield(k) }
        #expect(q.wait(until: nil) == [0, 1, 2, 3, 4])
        q.finish()
        q.yield(8)
        #expect(q.wait(until: nil) == nil)
    }

    @Test("a waiting loop wakes for an event from another thread, and at its deadline with nothing")
    func wakeAndTimeout() async {
        let q = EventQueue<Int>()
        let started = ContinuousClock.now
        #expect(q.wait(until: started + .milliseconds(30)) == [])
        #expect(ContinuousClock.now - started >= .milliseconds(30))
        // The waits block: on threads of their own, not the cooperative pool (see `blocking`).
        let waiter = Task { await blocking { q.wait(until: .now + .seconds(120)) } }
        try? await Task.sleep(for: .milliseconds(20))
        q.yield(7)
        #expect(await waiter.value == [7])
        // A finish wakes a loop waiting without a deadline.
        let forever = Task { await blocking { q.wait(until: nil) } }
        try? await Task.sleep(for: .milliseconds(20))
        q.finish()
        #expect(await forever.value == nil)
    }
}
