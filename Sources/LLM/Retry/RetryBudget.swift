/// Why a call failed, as far as trying it again is concerned. Each cause has its own budget
/// (see ``RetryBudget``).
public enum FailureCause: String, Sendable, Equatable, CaseIterable {
    /// It will fail the same way again: 400, 401, 403, 404, 422, a 2xx that is not a completion,
    /// a TLS verification failure, a request that cannot be sent.
    case permanent
    /// The provider asks for less traffic (429, 529): pacing, not failure.
    case rateLimit = "rate-limit"
    /// It may pass: 408, 409, other 5xx, connection errors, timeouts, a cut answer.
    case transient
}

/// What has happened to one claimed job's calls so far: the input the retry decision needs,
/// with times in milliseconds of a monotonic clock (the caller's; only differences matter).
public struct AttemptLog: Sendable, Equatable {
    /// When the first call of this claim started.
    public var firstAttemptMs: Int64?
    /// Calls that failed transiently, probes of an open circuit breaker not counted.
    public var transientFailures = 0
    /// Calls answered with a rate limit.
    public var rateLimits = 0
    /// Probe calls that failed transiently.
    public var probeFailures = 0
    /// The job's own deadline, if it has one: no call starts after it.
    public var deadlineMs: Int64?

    public init(deadlineMs: Int64? = nil) {
        self.deadlineMs = deadlineMs
    }

    /// Calls made in all.
    public var calls: Int { transientFailures + rateLimits + probeFailures }

    /// Notes a call that started at `startedMs` and failed with `cause` (a probe: one call let
    /// through an open circuit breaker to test the endpoint).
    public mutating func record(_ cause: FailureCause, startedMs: Int64, probe: Bool = false) {
        if firstAttemptMs == nil { firstAttemptMs = startedMs }
        switch cause {
        case .permanent: break
        case .rateLimit: rateLimits += 1
        case .transient: if probe { probeFailures += 1 } else { transientFailures += 1 }
        }
    }
}

/// What to do with a job whose call just failed.
public enum RetryAction: Sendable, Equatable {
    /// Call again once this many milliseconds have passed.
    case retry(afterMs: Int64)
    /// Give up: dead-letter the job.
    case deadLetter(RetryPolicy.StopReason)
}

/// How long a queued job keeps trying, by cause of failure. Pure: the clock and the random
/// source are inputs.
///
/// - *permanent*: dead-letter at once.
/// - *rate limit*: retry without limit (only the job's deadline ends it), after the provider's
///   `retry-after` (up to ``maxServerDelayMs``) or else a backoff over the rate limits so far.
/// - *transient*: retry after a backoff with full jitter, uniform in `[0, min(base · 2ⁿ⁻¹, cap)]`
///   after the n-th transient failure (or the provider's `retry-after`), while fewer than
///   ``maxAttempts`` calls failed transiently and the ``timeBudgetMs`` since the first attempt
///   (or the job's deadline, if sooner) is not over; the last wait ends at that limit at the latest.
/// - a failed *probe* of an open circuit breaker is the endpoint's failure, not the job's: it
///   counts against neither the attempts nor the time budget, only the job's deadline.
public struct RetryBudget: Sendable, Equatable {
    /// Most calls of a job that may fail transiently (the last of them dead-letters it).
    public var maxAttempts: Int
    /// How long after its first attempt a job may still be retried for transient failures.
    public var timeBudgetMs: Int64
    public var baseDelayMs: Int64
    /// The largest computed backoff (before jitter).
    public var maxDelayMs: Int64
    /// The longest `retry-after` honoured.
    public var maxServerDelayMs: Int64

    public init(
        maxAttempts: Int = 20, timeBudgetMs: Int64 = 3_600_000, baseDelayMs: Int64 = 500, maxDelayMs: Int64 = 300_000,
        maxServerDelayMs: Int64 = 120_000
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.timeBudgetMs = max(0, timeBudgetMs)
        self.baseDelayMs = max(0, baseDelayMs)
        self.maxDelayMs = max(0, maxDelayMs)
        self.maxServerDelayMs = max(0, maxServerDelayMs)
    }

    /// What to do after a call failed with `cause`; `log` already records that call.
    /// - Parameters:
    ///   - retryAfterMs: the wait the provider asked for, if any.
    ///   - probe: the call was a circuit breaker's probe.
    public func decide<R: RandomNumberGenerator>(
        after cause: FailureCause, retryAfterMs: Int64?, probe: Bool = false, log: AttemptLog, nowMs: Int64,
        using random: inout R
    ) -> RetryAction {
        let wait: Int64
        var limitMs = log.deadlineMs ?? Int64.max
        var limitReason = RetryPolicy.StopReason.deadlinePassed
        switch cause {
        case .permanent:
            return .deadLetter(.permanent)
        case .rateLimit:
            wait = delay(failures: log.rateLimits, serverDelayMs: retryAfterMs, using: &random)
        case .transient:
            if !probe {
                if log.transientFailures >= maxAttempts { return .deadLetter(.attemptsExhausted) }
                let budgetEnd = (log.firstAttemptMs ?? nowMs).addingReportingOverflow(timeBudgetMs)
                if !budgetEnd.overflow, budgetEnd.partialValue < limitMs {
                    limitMs = budgetEnd.partialValue
                    limitReason = .timeBudgetExhausted
                }
            }
            wait = delay(
                failures: max(1, probe ? log.probeFailures : log.transientFailures), serverDelayMs: retryAfterMs,
                using: &random)
        }
        if nowMs >= limitMs { return .deadLetter(limitReason) }
        return .retry(afterMs: min(wait, limitMs - nowMs))
    }

    /// ``decide(after:retryAfterMs:probe:log:nowMs:using:)`` with the system's random numbers.
    public func decide(
        after cause: FailureCause, retryAfterMs: Int64?, probe: Bool = false, log: AttemptLog, nowMs: Int64
    )
        -> RetryAction
    {
        var random = SystemRandomNumberGenerator()
        return decide(after: cause, retryAfterMs: retryAfterMs, probe: probe, log: log, nowMs: nowMs, using: &random)
    }

    /// The wait after the n-th failure of one kind (n ≥ 1): the server's wait plus up to 10 %,
    /// capped at ``maxServerDelayMs``, or full jitter over ``backoffCeilingMs(failures:)``.
    public func delay<R: RandomNumberGenerator>(failures n: Int, serverDelayMs: Int64?, using random: inout R) -> Int64 {
        if let server = serverDelayMs, server > 0 {
            return min(server + jittered(server / 10, using: &random), maxServerDelayMs)
        }
        return jittered(backoffCeilingMs(failures: n), using: &random)
    }

    /// `min(base · 2ⁿ⁻¹, cap)`: the top of the full-jitter range after the n-th failure.
    public func backoffCeilingMs(failures n: Int) -> Int64 {
        var ceiling = baseDelayMs
        var k = 1
        while k < n, ceiling < maxDelayMs {
            ceiling *= 2
            k += 1
        }
        return min(ceiling, maxDelayMs)
    }

    /// Uniform in `0...upper`, from one 53-bit draw (so all-ones gives `upper`, zero gives 0).
    private func jittered<R: RandomNumberGenerator>(_ upper: Int64, using random: inout R) -> Int64 {
        guard upper > 0 else { return 0 }
        let fraction = Double(random.next() >> 11) / Double((UInt64(1) << 53) - 1)
        return min(upper, Int64((Double(upper) * fraction).rounded()))
    }
}
