import LLM
import Spool

/// What becomes of a claimed job once its call has ended: the decision alone, a pure function of
/// the call's outcome, the job's history so far and its ``RetryBudget`` (the worker's retry
/// policy with the job's own `retry` settings over it). Writing it to the spool and logging it are
/// the caller's (`Worker.settle`), so this can be tested without a disk.
enum Settlement: Sendable {
    /// Write the answer to `done/`.
    case commit(Answer)
    /// The call was cancelled (the worker is stopping): back to `new/`, no attempt counted.
    case giveBack(CallFailure)
    /// Call again after `delay`; `log` records this call.
    case retry(after: Duration, log: AttemptLog, failure: CallFailure)
    /// Dead-letter the job with `failure` (its message says which budget ran out).
    case deadLetter(Failure, reason: RetryPolicy.StopReason, log: AttemptLog, failure: CallFailure)

    /// Decides a call's settlement.
    /// - Parameters:
    ///   - log: the job's calls before this one (times in milliseconds of the worker's clock).
    ///   - probe: the call was the circuit breaker's probe.
    ///   - startedMs, nowMs: when the call started and ended, on the same clock as `log`.
    static func decide<R: RandomNumberGenerator>(
        _ outcome: CallOutcome, log: AttemptLog, probe: Bool, budget: RetryBudget, startedMs: Int64, nowMs: Int64,
        using random: inout R
    ) -> Settlement {
        let f: CallFailure
        switch outcome {
        case .answer(let a): return .commit(a)
        case .failure(let failure): f = failure
        }
        if f.kind == .cancelled { return .giveBack(f) }
        var history = log
        history.record(f.cause, startedMs: startedMs, probe: probe)
        switch budget.decide(after: f.cause, retryAfterMs: f.retryAfterMs, probe: probe, log: history, nowMs: nowMs, using: &random) {
        case .retry(let ms):
            return .retry(after: .milliseconds(ms), log: history, failure: f)
        case .deadLetter(let reason):
            var given = f.failure
            if reason != .permanent { given.message += " (gave up: \(explain(reason, budget, history)))" }
            return .deadLetter(given, reason: reason, log: history, failure: f)
        }
    }

    /// ``decide(_:log:probe:budget:startedMs:nowMs:using:)`` with the system's random numbers.
    static func decide(
        _ outcome: CallOutcome, log: AttemptLog, probe: Bool, budget: RetryBudget, startedMs: Int64, nowMs: Int64
    )
        -> Settlement
    {
        var random = SystemRandomNumberGenerator()
        return decide(outcome, log: log, probe: probe, budget: budget, startedMs: startedMs, nowMs: nowMs, using: &random)
    }

    /// The dead letter of a job whose deadline passed before its next call could start.
    static func pastDeadline(_ job: Job, callsMade: Int) -> Failure {
        Failure(
            kind: CallFailure.Kind.deadlinePassed.rawValue,
            message: "the job's deadline \(job.deadline ?? "?") passed before it could be called"
                + (callsMade == 0 ? "" : " again (\(callsMade) calls made)"))
    }

    /// Why a retryable failure was the last, for the dead letter's message.
    static func explain(_ reason: RetryPolicy.StopReason, _ budget: RetryBudget, _ log: AttemptLog) -> String {
        switch reason {
        case .permanent: "permanent error"
        case .attemptsExhausted: "\(log.transientFailures) calls failed transiently, the most allowed (maxAttempts \(budget.maxAttempts))"
        case .timeBudgetExhausted:
            "the retry time budget of \(Double(budget.timeBudgetMs) / 1000) s from the first attempt is used up after \(log.calls) calls"
        case .deadlinePassed: "the job's deadline has passed after \(log.calls) calls"
        }
    }
}
