import Daemon
import Dispatch
import JSON
import LLM
public import Logging
public import ServiceLifecycle
import Spool

/// The worker daemon: claims jobs from a spool, calls the LLM, writes results.
///
/// One event loop owns all scheduling state (no locks): it learns of jobs from the spool
/// watcher, picks the next one fairly across tenants within their budgets, claims it, and starts
/// a call task. Each call task talks to the LLM and then settles its job on a disk thread (so an
/// fsync never blocks the cooperative pool). A job waiting for a retry stays claimed but holds
/// no slot. On graceful shutdown the loop stops claiming, lets calls finish within the grace
/// period, cancels the rest and gives every unfinished job back to `new/`.
public final class Worker: Service {
    public let configuration: WorkerConfiguration
    let responder: any Responder
    let logger: Logger
    let metrics: WorkerMetrics

    public init(configuration: WorkerConfiguration, responder: any Responder, logger: Logger) {
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
        metrics = WorkerMetrics(endpoint: responder.description)
    }

    public func run() async throws {
        let spool = try Spool(path: configuration.spoolPath)
        var configuration = self.configuration
        let fds = DescriptorLimit.raise()
        if fds.after != fds.before {
            logger.info("raised the open-file limit", metadata: ["from": "\(fds.before)", "to": "\(fds.after)"])
        }
        // One lease for all claims: each call in flight then holds only its connection.
        var perCall = 1
        do { try spool.takeLease() } catch {
            perCall = 2
            logger.warning("no lease: each claim keeps its file's descriptor", metadata: ["error": "\(error)"])
        }
        let allowed = DescriptorLimit.maxInFlight(forLimit: fds.after, perCall: perCall)
        if configuration.maxInFlight > allowed {
            logger.warning(perCall == 1 ? "fewer calls in flight than asked: each holds a connection"
                                        : "fewer calls in flight than asked: each holds a claim lock and a connection", metadata: [
                "asked": "\(configuration.maxInFlight)", "allowed": "\(allowed)", "open_file_limit": "\(fds.after)",
            ])
            configuration.maxInFlight = allowed
        }
        let (events, sink) = AsyncStream<Event>.makeStream()
        let watcher = try SpoolWatcher(spool, states: [.new])
        let notifier = SystemdNotifier()
        var loop = Loop(worker: self, configuration: configuration, spool: spool, sink: sink, notifier: notifier,
                        committer: ResultCommitter(spool: spool))

        let stopWatching = Flag()
        let tick = min(configuration.rescanIntervalMs, notifier?.watchdogIntervalMs ?? Int64.max)
        DispatchQueue(label: "llmspool.watcher").async {
            while !stopWatching.isSet {
                let wake = watcher.wait(timeoutMilliseconds: Int32(clamping: tick))
                if stopWatching.isSet { break }
                sink.yield(.watch(wake))
            }
        }
        defer {
            stopWatching.set()
            watcher.wake()
        }

        try await withGracefulShutdownHandler {
            try await loop.run(events)
        } onGracefulShutdown: {
            sink.yield(.shutdown)
        }
        await responder.shutdown()
    }

    enum Event: Sendable {
        case watch(SpoolWatcher.Wake)
        case callEnded(CallReport)
        case timer
        case shutdown
    }

    /// What to schedule: a file still in `new/`, or a claimed job waiting to be retried.
    enum Work: Sendable {
        case waiting(name: String)
        case retry(Retry)
    }

    struct Retry: Sendable {
        var claim: Claim
        /// History records of this claim's calls.
        var attempts: [JSONValue]
        var log: AttemptLog
        /// When it may be called again (monotonic).
        var dueMs: Int64
        /// Why the last call failed.
        var cause: FailureCause
    }

    /// How a call ended, reported back to the loop by its task.
    struct CallReport: Sendable {
        enum Result: Sendable { case finished, failed, givenBack, retry(Retry), abandoned }
        var callID: Int
        var tenant: String
        var reservedTokens: Int
        var usedTokens: Int?
        var budget: ProviderBudget?
        var failure: CallFailure?
        var result: Result
        /// The circuit breaker's probe.
        var probe = false
        /// The endpoint was called (false: the job's deadline had passed before its call).
        var called = true
    }
}

/// A flag set once, read from any thread.
final class Flag: @unchecked Sendable {
    private let lock = DispatchSemaphore(value: 1)
    private var value = false
    var isSet: Bool { lock.wait(); defer { lock.signal() }; return value }
    func set() { lock.wait(); value = true; lock.signal() }
}

extension Worker {
    /// Writes the worker's published state in order, off the loop.
    static let stateQueue = DispatchQueue(label: "llmspool.state")
}

/// Runs blocking file-system work on Dispatch's threads, off the cooperative pool.
enum Disk {
    static let queue = DispatchQueue(label: "llmspool.disk", attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            queue.async { c.resume(with: Result { try body() }) }
        }
    }
}

extension Worker {
    /// The event loop's state. Only `run` touches it, one event at a time.
    struct Loop {
        let worker: Worker
        let spool: Spool
        let sink: AsyncStream<Event>.Continuation
        let notifier: SystemdNotifier?
        let committer: ResultCommitter
        let config: WorkerConfiguration
        var logger: Logger { worker.logger }

        var scheduler: FairScheduler<Work>
        var known: Set<String> = []
        var retries: [Retry] = []
        /// Files of new/ that ended early and were too fresh to judge (still being written?), and
        /// when their settle time is over: looked at again then, not at the next rescan.
        var settling: [String: Int64] = [:]
        var calls: [Int: Task<Void, Never>] = [:]
        var nextCallID = 0
        var stopping = false
        var graceDeadlineMs = Int64.max
        var cancelled = false
        var providerPausedUntilMs: Int64 = 0
        var breaker: CircuitBreaker
        /// When the breaker last opened, wall clock (RFC 3339), for status and logs.
        var breakerOpenedAt: String?
        var lastRescanMs: Int64 = 0
        var lastWatchdogMs: Int64 = 0
        var timer: Task<Void, Never>?
        var timerDueMs = Int64.max
        var finished = 0

        init(worker: Worker, configuration: WorkerConfiguration, spool: Spool, sink: AsyncStream<Event>.Continuation,
             notifier: SystemdNotifier?, committer: ResultCommitter) {
            self.worker = worker
            config = configuration
            self.spool = spool
            self.sink = sink
            self.notifier = notifier
            self.committer = committer
            scheduler = FairScheduler(limits: { configuration.limits(for: $0) })
            breaker = CircuitBreaker(settings: configuration.circuitBreaker)
        }

        /// Monotonic milliseconds: every time the loop keeps is on this clock.
        var now: Int64 { MonotonicClock.nowMilliseconds() }

        mutating func run(_ events: AsyncStream<Event>) async throws {
            recover()
            rescan()
            logger.info("worker ready", metadata: [
                "spool": "\(spool.path)", "llm": "\(worker.responder.description)",
                "max_in_flight": "\(config.maxInFlight)", "waiting": "\(scheduler.queued)",
            ])
            notifier?.notify("READY=1\nSTATUS=working")
            publishBreaker()
            dispatch()
            for await event in events {
                switch event {
                case .watch(.changed(let arrived, let overflow)):
                    if overflow { rescan() } else { for name in arrived[.new] ?? [] { index(name) } }
                case .watch(.timeout), .watch(.woken):
                    break
                case .callEnded(let report):
                    ended(report)
                case .timer:
                    timerDueMs = Int64.max
                case .shutdown:
                    beginShutdown()
                }
                if now - lastRescanMs >= config.rescanIntervalMs && !stopping {
                    recover()
                    rescan()
                }
                if let w = notifier?.watchdogIntervalMs, now - lastWatchdogMs >= w {
                    notifier?.notify("WATCHDOG=1")
                    lastWatchdogMs = now
                }
                if stopping {
                    if calls.isEmpty { break }
                    if !cancelled && now >= graceDeadlineMs {
                        logger.warning("grace period over: cancelling calls in flight", metadata: ["in_flight": "\(calls.count)"])
                        cancelled = true
                        for task in calls.values { task.cancel() }
                    }
                    if !cancelled { armTimer(graceDeadlineMs) }
                } else {
                    dispatch()
                }
            }
            timer?.cancel()
            sink.finish()
            logger.info("worker stopped", metadata: ["finished": "\(finished)"])
        }

        // MARK: Learning about jobs

        /// Lists new/ and queues every name not yet known, least recently written first (so a job
        /// given back after a crash goes behind the others); forgets names that left.
        mutating func rescan() {
            lastRescanMs = now
            worker.metrics.refreshJobs(spool)
            guard let names = try? spool.waiting() else { return }
            let present = Set(names)
            let gone = known.subtracting(present)
            if !gone.isEmpty {
                known.subtract(gone)
                scheduler.removeAll { if case .waiting(let n) = $0 { gone.contains(n) } else { false } }
            }
            var found: [(name: String, job: Result<Job, IntakeError>, modified: Int64)] = []
            for name in names where !known.contains(name) {
                if let p = spool.peek(name) { found.append((name, p.job, p.modifiedMilliseconds)) }
            }
            found.sort { ($0.modified, $0.name) < ($1.modified, $1.name) }
            for f in found { queue(f.name, f.job) }
        }

        /// Reads a waiting file's tenant and size, and queues it.
        mutating func index(_ name: String) {
            guard !known.contains(name), let peeked = spool.peek(name) else { return }
            queue(name, peeked.job)
        }

        mutating func queue(_ name: String, _ peeked: Result<Job, IntakeError>) {
            // Provider-batch hook (Sources/Worker/ProviderBatch): a job the provider batcher takes is
            // left in new/ for it and not remembered, so that if it is given back to the live path
            // (marked so) it is seen afresh when it arrives in new/ again.
            if case .success(let job) = peeked,
               ProviderBatchRouting.batches(job, config.providerBatch, nowMs: Timestamp.nowMilliseconds()) { return }
            known.insert(name)
            switch peeked {
            case .success(let job):
                scheduler.add(.waiting(name: name), tenant: job.tenantId ?? "default",
                              tokens: Prompt.reservation(job, defaultMaxTokens: config.defaultMaxTokens), nowMs: now)
            case .failure:
                // Claiming it will dead-letter it (or leave it if it is still being written).
                scheduler.add(.waiting(name: name), tenant: "default", tokens: 1, nowMs: now)
            }
        }

        mutating func recover() {
            do {
                let r = try spool.recover()
                for id in r.givenBack { logger.notice("gave back a dead claim", metadata: ["job.id": "\(id)"]) }
                for id in r.deadLettered {
                    logger.error("dead-lettered a job abandoned too often", metadata: ["job.id": "\(id)"])
                    worker.metrics.failed(kind: "abandoned")
                }
            } catch {
                logger.error("recovery failed", metadata: ["error": "\(error)"])
            }
        }

        // MARK: Dispatching

        mutating func dispatch() {
            let t = now
            // Retries that are due go to the front of their tenant's queue.
            if !retries.isEmpty {
                var waiting: [Retry] = []
                for r in retries {
                    if r.dueMs <= t {
                        scheduler.add(.retry(r), tenant: r.claim.job.tenantId ?? "default",
                                      tokens: Prompt.reservation(r.claim.job, defaultMaxTokens: config.defaultMaxTokens),
                                      nowMs: t, first: true)
                    } else {
                        waiting.append(r)
                    }
                }
                retries = waiting
            }
            if !settling.isEmpty {
                for (name, due) in settling where due <= t {
                    settling[name] = nil
                    index(name)
                }
            }
            var wakeAt = retries.map(\.dueMs).min() ?? Int64.max
            while calls.count < config.maxInFlight {
                if providerPausedUntilMs > now {
                    wakeAt = min(wakeAt, providerPausedUntilMs)
                    break
                }
                // An open breaker starts nothing but its probe; jobs stay in new/ (or wait, claimed, to retry).
                let permit = breaker.permit(nowMs: now)
                if case .wait(let until) = permit {
                    if until < Int64.max { wakeAt = min(wakeAt, until) }
                    break
                }
                switch scheduler.next(nowMs: now) {
                case .idle:
                    break
                case .wait(let ms):
                    wakeAt = min(wakeAt, now + ms)
                case .run(let pick):
                    let probe = permit == .probe
                    if probe { breaker.probeStarted() }
                    if !start(pick, probe: probe), probe { breaker.probeAbandoned(nowMs: now) }
                    continue
                }
                break
            }
            armTimer(min(wakeAt, settling.values.min() ?? Int64.max))  // claims just made may have added to settling
        }

        /// Starts a call for the pick; false when no call started (the file could not be claimed).
        @discardableResult
        mutating func start(_ pick: FairScheduler<Work>.Pick, probe: Bool = false) -> Bool {
            let claim: Claim
            var attempts: [JSONValue] = []
            var log: AttemptLog
            switch pick.item {
            case .retry(let r):
                claim = r.claim
                attempts = r.attempts
                log = r.log
            case .waiting(let name):
                known.remove(name)
                let outcome: ClaimOutcome
                do { outcome = try spool.claim(name) } catch {
                    logger.error("claim failed", metadata: ["file": "\(spool.path(of: name, in: .new))", "error": "\(error)"])
                    scheduler.finished(tenant: pick.tenant, reservedTokens: pick.reservedTokens, usedTokens: 0, nowMs: now)
                    return false
                }
                guard case .claimed(let c) = outcome else {
                    if case .settling = outcome, let modified = spool.peek(name)?.modifiedMilliseconds {
                        // The file's time is wall-clock; the loop's deadlines are monotonic.
                        let left = max(0, modified + Spool.settleMilliseconds - Timestamp.nowMilliseconds())
                        settling[name] = now + left + 50
                    }
                    if case .rejected(let key, let e) = outcome {
                        worker.metrics.failed(kind: "rejected")
                        logger.warning("rejected a bad job file", metadata: [
                            "file": "\(name)", "dead_letter": "\(spool.path(of: key + ".json", in: .failed))", "reason": "\(e)",
                        ])
                    }
                    scheduler.finished(tenant: pick.tenant, reservedTokens: pick.reservedTokens, usedTokens: 0, nowMs: now)
                    return false
                }
                claim = c
                log = AttemptLog(deadlineMs: c.job.deadline.flatMap(Timestamp.parse).map { MonotonicClock.fromWallClock($0) })
                worker.metrics.claimed.increment()
            }
            let id = nextCallID
            nextCallID += 1
            let worker = self.worker, sink = self.sink
            let context = CallContext(claim: claim, attempts: attempts, log: log, probe: probe, spool: spool, committer: committer,
                                      config: config, callID: id, tenant: pick.tenant, reservedTokens: pick.reservedTokens)
            // Detached: a child of nothing, so the task-local values around the loop (swift-log's,
            // swift-metrics', ServiceLifecycle's) are not copied into each of thousands of call tasks;
            // nothing a call does reads them. The loop cancels calls itself (`calls`).
            calls[id] = Task.detached {
                sink.yield(.callEnded(await worker.call(context)))
            }
            worker.metrics.inFlight.record(calls.count)
            return true
        }

        mutating func ended(_ r: CallReport) {
            calls[r.callID] = nil
            worker.metrics.inFlight.record(calls.count)
            worker.metrics.ended(r)
            scheduler.finished(tenant: r.tenant, reservedTokens: r.reservedTokens, usedTokens: r.usedTokens, nowMs: now)
            if let b = r.budget { pace(b) }
            observe(r)
            if let f = r.failure, f.httpStatus == 429 || f.httpStatus == 529, let after = f.retryAfterMs {
                // The provider asked everyone to wait, not just this job.
                providerPausedUntilMs = max(providerPausedUntilMs, now + min(after, config.maxRetryAfterMs))
            }
            switch r.result {
            case .finished, .failed: finished += 1
            case .givenBack, .abandoned: break
            case .retry(let retry):
                if stopping {
                    giveBack(retry)
                } else {
                    retries.append(retry)
                }
            }
        }

        /// Tells the circuit breaker how a call ended, and acts on its change of state.
        mutating func observe(_ r: CallReport) {
            let cancelled = r.failure?.kind == "cancelled"
            guard r.called, !cancelled else {
                if r.probe { breaker.probeAbandoned(nowMs: now) }
                return
            }
            let failed = r.failure?.cause == .transient
            if r.probe { worker.metrics.probed(failed: failed) }
            guard let change = breaker.record(failedTransiently: failed, probe: r.probe, nowMs: now) else { return }
            switch change {
            case .opened:
                logger.warning("circuit breaker open: calls to the endpoint stop but for probes", metadata: [
                    "endpoint": "\(worker.responder.description)", "last_error": "\(r.failure.map { "\($0.kind): \($0.message)" } ?? "-")",
                    "probe_in_ms": "\(breaker.nextProbeMs - now)",
                ])
                breakerOpenedAt = Timestamp.now()
            case .probeFailed:
                logger.notice("circuit breaker probe failed", metadata: [
                    "probes": "\(breaker.probes)", "next_probe_in_ms": "\(breaker.probeIntervalMs)",
                    "error": "\(r.failure.map { "\($0.kind): \($0.message)" } ?? "-")",
                ])
            case .closed:
                // Jobs backing off from transient failures failed because of the outage: due now.
                var resumed = 0
                for k in retries.indices where retries[k].cause == .transient && retries[k].dueMs > now {
                    retries[k].dueMs = now
                    resumed += 1
                }
                logger.notice("circuit breaker closed: calls resume", metadata: [
                    "open_since": "\(breakerOpenedAt ?? "?")", "probes": "\(r.probe ? breaker.probes : 0)",
                    "retries_due_now": "\(resumed)",
                ])
                breakerOpenedAt = nil
            }
            publishBreaker()
        }

        /// Shows the breaker's state in the metrics and, through the spool, to `llmspool status`.
        func publishBreaker() {
            let state = breaker.state
            worker.metrics.breaker(open: state != .closed, sinceWallMs: breakerOpenedAt.flatMap(Timestamp.parse))
            var doc: JSONObject = [
                "endpoint": .string(worker.responder.description), "state": .string(state.rawValue),
                "openSince": breakerOpenedAt.map(JSONValue.string) ?? .null, "updatedAt": .string(Timestamp.now()),
            ]
            if state != .closed {
                doc["probes"] = .integer(breaker.probes)
                doc["probeIntervalSeconds"] = .double(Double(breaker.probeIntervalMs) / 1000)
            }
            let spool = self.spool, logger = self.logger, value = JSONValue.object(["circuitBreaker": .object(doc)])
            Worker.stateQueue.async {
                do { try spool.publishState(value) } catch {
                    logger.debug("could not publish the worker's state", metadata: ["error": "\(error)"])
                }
            }
        }

        /// Slows down before the provider's budget runs out: with few requests or tokens left in
        /// the window, calls are spread evenly over the time to its reset.
        mutating func pace(_ b: ProviderBudget) {
            var until = providerPausedUntilMs
            if let left = b.remainingRequests, let reset = b.resetRequestsMs, left < max(1, config.maxInFlight / 4) {
                until = max(until, now + (left <= 0 ? reset : reset / Int64(left + 1)))
            }
            if let left = b.remainingTokens, let reset = b.resetTokensMs, left < config.defaultMaxTokens * 2 {
                until = max(until, now + (left <= 0 ? reset : reset / 2))
            }
            if until > providerPausedUntilMs {
                providerPausedUntilMs = min(until, now + config.maxRetryAfterMs)
                logger.info("pacing to the provider's rate limit", metadata: [
                    "pause_ms": "\(providerPausedUntilMs - now)",
                    "remaining_requests": "\(b.remainingRequests.map(String.init) ?? "?")",
                    "remaining_tokens": "\(b.remainingTokens.map(String.init) ?? "?")",
                ])
            }
        }

        mutating func armTimer(_ dueMs: Int64) {
            guard dueMs < Int64.max, dueMs < timerDueMs || timer == nil || timerDueMs == Int64.max else { return }
            timer?.cancel()
            timerDueMs = dueMs
            let delay = max(0, dueMs - now)
            let sink = self.sink
            timer = Task {
                do { try await Task.sleep(for: .milliseconds(delay)) } catch { return }
                sink.yield(.timer)
            }
        }

        // MARK: Shutdown

        mutating func beginShutdown() {
            guard !stopping else { return }
            stopping = true
            graceDeadlineMs = now + config.gracePeriodMs
            notifier?.notify("STOPPING=1")
            logger.info("stopping: no new claims", metadata: [
                "in_flight": "\(calls.count)", "retries_waiting": "\(retries.count)", "grace_ms": "\(config.gracePeriodMs)",
            ])
            for r in retries { giveBack(r) }
            retries = []
        }

        func giveBack(_ r: Retry) {
            do {
                try spool.giveBack(r.claim, reason: "worker stopped while the job waited to retry", countAttempt: false,
                                   attempts: r.attempts)
            } catch {
                logger.error("could not give a job back; recovery will", metadata: ["job.id": "\(r.claim.id)", "error": "\(error)"])
            }
        }
    }

    /// What a call needs besides its answer: one reference in the call's frames, which stay on its
    /// task's stack while it waits, rather than each value copied into them.
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
        let tenant: String
        let reservedTokens: Int
        /// The model asked: the job's, or the default.
        let model: String

        init(claim: Claim, attempts: [JSONValue], log: AttemptLog, probe: Bool, spool: Spool, committer: ResultCommitter,
             config: WorkerConfiguration, callID: Int, tenant: String, reservedTokens: Int) {
            self.claim = claim
            self.attempts = attempts
            self.log = log
            self.probe = probe
            self.spool = spool
            self.committer = committer
            self.config = config
            self.callID = callID
            self.tenant = tenant
            self.reservedTokens = reservedTokens
            model = claim.job.model ?? config.defaultModel
        }
    }

    /// One call for one claimed job, then its settlement on disk. Never throws: every ending is a report.
    func call(_ context: CallContext) async -> CallReport {
        // Kept small on purpose: this frame, and the responder's below it, stay allocated on the
        // task's stack for the whole call (seconds to minutes, thousands of calls at once); what
        // happens after the answer lives in `settle`'s frame, allocated only then.
        let started = MonotonicClock.nowMilliseconds()
        if let deadline = context.log.deadlineMs, started > deadline { return await pastDeadline(context) }
        if context.config.logPrompts { logPrompt(context.claim, tenant: context.tenant) }
        let partial = context.claim.job.stream ? context.spool.partialWriter(for: context.claim, attempt: context.claim.job.attempts + context.attempts.count + 1) : nil
        let answer = await responder.respond(to: context.claim.job, model: context.model, maxTokens: context.claim.job.maxTokens,
                                             progress: partial)
        partial?.close()
        return await settle(context, outcome: answer.0, budget: answer.1, model: context.model, startedMs: started)
    }

    /// Dead-letters a job whose deadline passed before its next call could start.
    @inline(never)
    func pastDeadline(_ context: CallContext) async -> CallReport {
        let claim = context.claim, spool = context.spool, attempts = context.attempts
        var report = CallReport(callID: context.callID, tenant: context.tenant, reservedTokens: context.reservedTokens, usedTokens: 0,
                                budget: nil, failure: nil, result: .failed, probe: context.probe, called: false)
        let failure = Failure(kind: RetryPolicy.StopReason.deadlinePassed.rawValue,
                              message: "the job's deadline \(claim.job.deadline ?? "?") passed before it could be called"
                                  + (attempts.isEmpty ? "" : " again (\(attempts.count) calls made)"))
        report.failure = CallFailure(kind: failure.kind, message: failure.message, cause: .permanent)
        do {
            try await Disk.run { try spool.fail(claim, failure, attempts: attempts) }
            callLogger(claim, tenant: context.tenant).warning("job failed", metadata: ["error": "\(failure.kind): \(failure.message)"])
        } catch {
            callLogger(claim, tenant: context.tenant).error("could not write the job's outcome; it will be retried after recovery",
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

    /// Records a call's outcome: commits the answer, schedules a retry, or fails or gives back the job.
    @inline(never)
    func settle(_ context: CallContext, outcome: CallOutcome, budget: ProviderBudget?, model: String, startedMs started: Int64)
        async -> CallReport
    {
        let claim = context.claim, prior = context.attempts, spool = context.spool, committer = context.committer
        let config = context.config, callID = context.callID, tenant = context.tenant, reservedTokens = context.reservedTokens
        let log = callLogger(claim, tenant: tenant)
        let ended = MonotonicClock.nowMilliseconds()
        let elapsed = ended - started
        metrics.latency.recordMilliseconds(elapsed)
        var report = CallReport(callID: callID, tenant: tenant, reservedTokens: reservedTokens, usedTokens: nil,
                                budget: budget, failure: nil, result: .abandoned, probe: context.probe)
        do {
            switch outcome {
            case .answer(let answer):
                report.usedTokens = answer.usage?.totalTokens
                try await committer.commit(claim, answer)
                report.result = .finished
                log.info("job done", metadata: [
                    "model": "\(answer.model ?? model)", "latency_ms": "\(elapsed)", "attempt": "\(prior.count + 1)",
                    "tokens": "\(answer.usage?.totalTokens.description ?? "?")",
                ])
            case .failure(let f):
                report.failure = f
                report.usedTokens = 0
                if f.kind == "cancelled" {
                    try await Disk.run {
                        try spool.giveBack(claim, reason: "worker stopped during the call", countAttempt: false, attempts: prior)
                    }
                    report.result = .givenBack
                    log.notice("job given back at shutdown")
                    return report
                }
                var history = context.log
                history.record(f.cause, startedMs: started, probe: context.probe)
                let attempts = prior + [attemptRecord(f, number: prior.count + 1, elapsedMs: elapsed, probe: context.probe)]
                let budget = config.retryBudget(for: claim.job)
                switch budget.decide(after: f.cause, retryAfterMs: f.retryAfterMs, probe: context.probe, log: history, nowMs: ended) {
                case .retry(let delay):
                    report.result = .retry(Retry(claim: claim, attempts: attempts, log: history, dueMs: ended + delay, cause: f.cause))
                    log.notice("call failed; will retry", metadata: [
                        "error": "\(f.kind): \(f.message)", "cause": "\(f.cause.rawValue)", "attempt": "\(attempts.count)",
                        "retry_in_ms": "\(delay)",
                    ])
                case .deadLetter(let reason):
                    var given = f.failure
                    if reason != .permanent { given.message += " (gave up: \(Self.explain(reason, budget, history)))" }
                    let failure = given
                    try await Disk.run { try spool.fail(claim, failure, attempts: attempts) }
                    report.result = .failed
                    log.warning("job failed", metadata: [
                        "error": "\(f.kind): \(failure.message)", "cause": "\(f.cause.rawValue)", "attempts": "\(attempts.count)",
                        "http_status": "\(f.httpStatus.map(String.init) ?? "-")",
                    ])
                }
            }
        } catch {
            // The claim stays in cur/; once released, recovery gives it back. Nothing is lost.
            log.error("could not write the job's outcome; it will be retried after recovery", metadata: ["error": "\(error)"])
            report.result = .abandoned
        }
        return report
    }

    /// One failed call in a job's history: when, what, and which budget it drew on (`cause`).
    func attemptRecord(_ f: CallFailure, number: Int, elapsedMs: Int64, probe: Bool) -> JSONValue {
        var o: JSONObject = ["at": .string(Timestamp.now()), "kind": .string("attempt"), "attempt": .integer(number),
                             "cause": .string(f.cause.rawValue), "error": f.failure.json(), "elapsedMs": .integer(Int(elapsedMs))]
        if let r = f.retryAfterMs { o["retryAfterMs"] = .integer(Int(r)) }
        if probe { o["probe"] = .bool(true) }
        return .object(o)
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
