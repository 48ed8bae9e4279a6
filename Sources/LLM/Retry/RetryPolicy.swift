import Basics

/// When to try an LLM call again, and after how long. Pure: no clock, no I/O, random source injected.
///
/// Transient: 408, 409, 429, every status ≥ 500, connection failures and timeouts (and an engine
/// shut down under the call). Permanent: other 4xx, unparseable 2xx bodies, TLS verification
/// failures, invalid requests, oversized answers.
///
/// The wait before retry *n* (0 for the first retry) is, when the server asked for one
/// (`retry-after-ms`, else `retry-after`), that wait plus up to 10 % jitter, capped at
/// ``maxServerDelay``; otherwise full jitter over `min(baseDelay · 2ⁿ, maxDelay)`.
/// The defaults match the official OpenAI SDKs: 3 attempts, 0.5 s base, 8 s cap, 120 s server cap.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first included (1 means no retry).
    public var maxAttempts: Int
    public var baseDelay: Duration
    /// The largest computed backoff (before jitter).
    public var maxDelay: Duration
    /// The longest wait honoured from `retry-after` / `retry-after-ms`.
    public var maxServerDelay: Duration

    public init(
        maxAttempts: Int = 3,
        baseDelay: Duration = .milliseconds(500),
        maxDelay: Duration = .seconds(8),
        maxServerDelay: Duration = .seconds(120)
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = max(.zero, baseDelay)
        self.maxDelay = max(.zero, maxDelay)
        self.maxServerDelay = max(.zero, maxServerDelay)
    }

    public static let `default` = RetryPolicy()

    /// Whether an answer with this HTTP status may succeed if sent again.
    public static func isTransient(httpStatus status: Int) -> Bool {
        status == 408 || status == 409 || status == 429 || status >= 500
    }

    /// Whether this failure may not happen again.
    public static func isTransient(_ error: LLMError) -> Bool {
        switch error.kind {
        case .http: error.httpStatus.map(isTransient(httpStatus:)) ?? false
        case .timeout, .connection, .shutdown, .stream: true
        case .tls, .malformedResponse, .responseTooLarge, .invalidRequest, .configuration: false
        }
    }

    /// Which budget a failure draws on (see ``FailureCause``): 429 and 529 are the provider asking
    /// for less traffic; other transient statuses and transport failures may pass; the rest will not.
    public static func cause(httpStatus status: Int) -> FailureCause {
        if status == 429 || status == 529 { return .rateLimit }
        return isTransient(httpStatus: status) ? .transient : .permanent
    }

    /// The cause of a failed call, as ``cause(httpStatus:)`` for HTTP answers.
    public static func cause(_ error: LLMError) -> FailureCause {
        if error.kind == .http, let status = error.httpStatus { return cause(httpStatus: status) }
        return isTransient(error) ? .transient : .permanent
    }

    public enum StopReason: String, Sendable, Equatable {
        /// The failure will not go away by retrying.
        case permanent
        /// The failure was transient but the last allowed attempt has been made.
        case attemptsExhausted = "attempts-exhausted"
        /// The failure was transient but the time allowed for retries (from the first attempt) is over.
        case timeBudgetExhausted = "time-budget-exhausted"
        /// The job's own deadline has passed.
        case deadlinePassed = "deadline-passed"
    }

    public enum Decision: Sendable, Equatable {
        case retry(after: Duration)
        case stop(StopReason)
    }

    /// What to do after attempt number `attempt` (1-based) failed with `error`.
    public func decide<R: RandomNumberGenerator>(after error: LLMError, attempt: Int, using random: inout R) -> Decision {
        guard error.isTransient else { return .stop(.permanent) }
        guard attempt < maxAttempts else { return .stop(.attemptsExhausted) }
        return .retry(after: delay(retry: attempt - 1, serverDelay: error.retryAfter, using: &random))
    }

    /// ``decide(after:attempt:using:)`` with the system's random numbers.
    public func decide(after error: LLMError, attempt: Int) -> Decision {
        var random = SystemRandomNumberGenerator()
        return decide(after: error, attempt: attempt, using: &random)
    }

    /// The wait before retry `retry` (0 for the first), given the server's request if any.
    public func delay<R: RandomNumberGenerator>(retry: Int, serverDelay: Duration?, using random: inout R) -> Duration {
        if let serverDelay, serverDelay > .zero {
            let jitter = jittered(serverDelay / 10, using: &random)
            return min(serverDelay + jitter, maxServerDelay)
        }
        return jittered(backoffCeiling(retry: retry), using: &random)
    }

    /// `min(baseDelay · 2ⁿ, maxDelay)`: the upper end of the full-jitter range for retry `n`.
    public func backoffCeiling(retry n: Int) -> Duration {
        var ceiling = baseDelay
        var k = 0
        while k < max(0, n), ceiling < maxDelay {
            ceiling *= 2
            k += 1
        }
        return min(ceiling, maxDelay)
    }

    /// A uniformly random duration in `0...upper`: one draw of 53 bits mapped onto the closed
    /// interval, so a source that returns all ones gives `upper` and one that returns zero gives 0
    /// (the standard library's `random(in:using:)` may draw again and again from such a source).
    private func jittered<R: RandomNumberGenerator>(_ upper: Duration, using random: inout R) -> Duration {
        let ns = upper.nanoseconds
        guard ns > 0 else { return .zero }
        let fraction = Double(random.next() >> 11) / Double((UInt64(1) << 53) - 1)
        return .nanoseconds(min(ns, Int64((Double(ns) * fraction).rounded())))
    }
}

/// Every attempt's error when a call failed for good under a ``RetryPolicy``.
public struct RetryFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: RetryPolicy.StopReason
    /// One error per attempt, oldest first.
    public var errors: [LLMError]

    public var last: LLMError { errors[errors.count - 1] }

    public var description: String {
        let what = reason == .permanent ? "failed permanently" : "failed \(errors.count) times"
        return "\(what); last error: \(last)"
    }
}

extension RetryPolicy {
    /// Runs `attempt` (given its 1-based number) until it succeeds, fails permanently or has been
    /// tried ``maxAttempts`` times, waiting with `sleep` between attempts. An `LLMError` leads to
    /// a decision; any other error (e.g. `CancellationError`) is rethrown at once.
    ///
    /// For callers that may hold their slot while waiting. The worker, which must not, uses
    /// ``decide(after:attempt:using:)`` and schedules the retry itself.
    /// - Throws: ``RetryFailure`` with every attempt's error.
    public func run<T, R: RandomNumberGenerator>(
        using random: inout R,
        sleep: (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        _ attempt: (Int) async throws -> T
    ) async throws -> T {
        var errors: [LLMError] = []
        var n = 1
        while true {
            do {
                return try await attempt(n)
            } catch let error as LLMError {
                errors.append(error)
                switch decide(after: error, attempt: n, using: &random) {
                case .stop(let reason): throw RetryFailure(reason: reason, errors: errors)
                case .retry(let wait): try await sleep(wait)
                }
            }
            n += 1
        }
    }

    /// ``run(using:sleep:_:)`` with the system's random numbers.
    public func run<T>(
        sleep: (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        _ attempt: (Int) async throws -> T
    ) async throws -> T {
        var random = SystemRandomNumberGenerator()
        return try await run(using: &random, sleep: sleep, attempt)
    }
}
