import Basics
import JSON
import LLM
import Logging
import Spool

extension Worker {
    /// What a call needs besides its answer: one reference in the call's frames, which stay on its
    /// task's stack while it waits, rather than each value copied into them. The seam for what a
    /// call does while it runs (a streamed answer's progress, say): it belongs here and in the
    /// call's task, not in the state machine, which sees a call start and end.
    final class CallContext: Sendable {
        let claim: Claim
        let attempts: [JSONValue]
        let log: AttemptLog
        /// The circuit breaker's probe.
        let probe: Bool
        let spool: Spool
        let committer: ResultCommitter
        let config: WorkerConfiguration
        let callID: Int
        let reservation: Machine.Reservation
        /// The model asked: the job's, or the default.
        let model: String
        /// The worker's clock, to put this call's times on the same scale as the job's `log`.
        let clock: ClockOrigin

        init(call: Machine.Call, spool: Spool, committer: ResultCommitter, config: WorkerConfiguration, clock: ClockOrigin) {
            claim = call.claim
            attempts = call.attempts
            log = call.log
            probe = call.probe
            self.spool = spool
            self.committer = committer
            self.config = config
            callID = call.id
            reservation = call.reservation
            model = call.claim.job.model ?? config.defaultModel
            self.clock = clock
        }

        var tenant: String { reservation.tenant }
    }

    /// One call for one claimed job, then its settlement on disk. Never throws: every ending is a report.
    func call(_ context: CallContext) async -> CallReport {
        // Kept small on purpose: this frame, and the responder's below it, stay allocated on the
        // task's stack for the whole call (seconds to minutes, thousands of calls at once); what
        // happens after the answer lives in `settle`'s frame, allocated only then.
        let started = context.clock.ms(.now)
        if let deadline = context.log.deadlineMs, started > deadline { return await pastDeadline(context) }
        if context.config.logPrompts { logPrompt(context.claim, tenant: context.tenant) }
        // A streamed job's text goes to its partial file as it comes; the machine sees only the call's end.
        let partial =
            context.claim.job.stream
            ? context.spool.partialWriter(for: context.claim, attempt: context.claim.job.attempts + context.attempts.count + 1) : nil
        let answer = await responder.respond(
            to: context.claim.job, model: context.model, maxTokens: context.claim.job.maxTokens,
            progress: partial)
        partial?.close()
        return await settle(context, outcome: answer.0, budget: answer.1, startedMs: started)
    }

    /// Dead-letters a job whose deadline passed before its next call could start.
    @inline(never)
    func pastDeadline(_ context: CallContext) async -> CallReport {
        let claim = context.claim, spool = context.spool, attempts = context.attempts
        let failure = Settlement.pastDeadline(claim.job, callsMade: attempts.count)
        var report = CallReport(
            callID: context.callID, reservation: context.reservation, usedTokens: 0, budget: nil,
            failure: CallFailure(kind: .deadlinePassed, message: failure.message, cause: .permanent),
            result: .failed, probe: context.probe, called: false)
        do {
            try await Disk.run { () throws(SpoolError) in try spool.fail(claim, failure, attempts: attempts) }
            callLogger(claim, tenant: context.tenant).warning("job failed", metadata: ["error": "\(failure.kind): \(failure.message)"])
        } catch {
            callLogger(claim, tenant: context.tenant).error(
                "could not write the job's outcome; it will be retried after recovery",
                metadata: ["error": "\(error)"])
            report.result = .abandoned
        }
        return report
    }

    func callLogger(_ claim: Claim, tenant: String) -> Logger {
        var log = logger
        log[metadataKey: "job.id"] = "\(claim.id)"
        log[metadataKey: "tenant.id"] = "\(tenant)"
        return log
    }

    @inline(never)
    func logPrompt(_ claim: Claim, tenant: String) {
        callLogger(claim, tenant: tenant).debug("prompt", metadata: ["prompt": "\(Prompt.flatten(claim.job))"])
    }

    /// Settles a call's job: decides (``Settlement``, pure), writes the decision to the spool on
    /// the disk threads, then logs it. A write that fails leaves the claim for recovery.
    @inline(never)
    func settle(_ context: CallContext, outcome: CallOutcome, budget: ProviderBudget?, startedMs started: Int64) async -> CallReport {
        let ended = context.clock.ms(.now)
        let elapsed = ended - started
        metrics.latency.recordMilliseconds(elapsed)
        let decision = Settlement.decide(
            outcome, log: context.log, probe: context.probe,
            budget: context.config.retryBudget(for: context.claim.job), startedMs: started, nowMs: ended)
        var report = CallReport(
            callID: context.callID, reservation: context.reservation, usedTokens: nil, budget: budget,
            failure: nil, result: .abandoned, probe: context.probe)
        let log = callLogger(context.claim, tenant: context.tenant)
        do {
            try await persist(decision, context, elapsedMs: elapsed, endedMs: ended, into: &report)
        } catch {
            // The claim stays in cur/; once released, recovery gives it back. Nothing is lost.
            log.error("could not write the job's outcome; it will be retried after recovery", metadata: ["error": "\(error)"])
            report.result = .abandoned
            return report
        }
        logSettled(decision, context, report, elapsedMs: elapsed, log: log)
        return report
    }

    /// Writes a settlement: the answer to `done/` (group commit), the job back to `new/`, or its
    /// dead letter to `failed/`; a retry writes nothing (the job stays claimed).
    func persist(
        _ decision: Settlement, _ context: CallContext, elapsedMs: Int64, endedMs: Int64, into report: inout CallReport
    )
        async throws
    {
        let claim = context.claim, prior = context.attempts, spool = context.spool
        switch decision {
        case .commit(let answer):
            report.usedTokens = answer.usage?.totalTokens
            try await context.committer.commit(claim, answer)
            report.result = .finished
        case .giveBack(let f):
            report.failure = f
            report.usedTokens = 0
            try await Disk.run { () throws(SpoolError) in
                try spool.giveBack(claim, reason: "worker stopped during the call", countAttempt: false, attempts: prior)
            }
            report.result = .givenBack
        case .retry(let delay, let history, let f):
            report.failure = f
            report.usedTokens = 0
            let attempts = prior + [attemptRecord(f, number: prior.count + 1, elapsedMs: elapsedMs, probe: context.probe)]
            report.result = .retry(
                Machine.Retry(
                    claim: claim, attempts: attempts, log: history,
                    due: context.clock.instant(endedMs) + delay, cause: f.cause))
        case .deadLetter(let failure, _, _, let f):
            report.failure = f
            report.usedTokens = 0
            let attempts = prior + [attemptRecord(f, number: prior.count + 1, elapsedMs: elapsedMs, probe: context.probe)]
            try await Disk.run { () throws(SpoolError) in try spool.fail(claim, failure, attempts: attempts) }
            report.result = .failed
        }
    }

    /// One line for a settled call.
    func logSettled(_ decision: Settlement, _ context: CallContext, _ report: CallReport, elapsedMs: Int64, log: Logger) {
        let calls = context.attempts.count + 1
        switch decision {
        case .commit(let answer):
            log.info(
                "job done",
                metadata: [
                    "model": "\(answer.model ?? context.model)", "latency_ms": "\(elapsedMs)", "attempt": "\(calls)",
                    "tokens": "\(answer.usage?.totalTokens.description ?? "?")",
                ])
        case .giveBack:
            log.notice("job given back at shutdown")
        case .retry(let delay, _, let f):
            log.notice(
                "call failed; will retry",
                metadata: [
                    "error": "\(f.kind): \(f.message)", "cause": "\(f.cause.rawValue)", "attempt": "\(calls)",
                    "retry_in_ms": "\(delay.wholeMilliseconds)",
                ])
        case .deadLetter(let failure, _, _, let f):
            log.warning(
                "job failed",
                metadata: [
                    "error": "\(f.kind): \(failure.message)", "cause": "\(f.cause.rawValue)", "attempts": "\(calls)",
                    "http_status": "\(f.httpStatus.map(String.init) ?? "-")",
                ])
        }
    }

    /// One failed call in a job's history: when (wall clock, as the format says), what, and which
    /// budget it drew on (`cause`).
    func attemptRecord(_ f: CallFailure, number: Int, elapsedMs: Int64, probe: Bool) -> JSONValue {
        var o: JSONObject = [
            "at": .string(Timestamp.now()), "kind": .string("attempt"), "attempt": .integer(number),
            "cause": .string(f.cause.rawValue), "error": f.failure.json(), "elapsedMs": .integer(Int(elapsedMs)),
        ]
        if let r = f.retryAfterMs { o["retryAfterMs"] = .integer(Int(r)) }
        if probe { o["probe"] = .bool(true) }
        return .object(o)
    }
}
