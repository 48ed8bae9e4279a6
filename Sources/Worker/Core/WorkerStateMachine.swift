import JSON
import LLM
import Spool

/// A claimed job as the state machine sees it: an opaque value it hands back in actions, and the
/// job inside it (for its tenant and token reservation). `Spool.Claim` in the worker; a plain value
/// in tests.
protocol ClaimedJob: Sendable {
    var job: Job { get }
}

extension Claim: ClaimedJob {}

/// The worker's scheduling core: every decision the worker makes, and none of its I/O.
///
/// Events come in as method calls, each with the instant it happened (`ContinuousClock`); each
/// returns the ``Action``s the caller — the worker's I/O runner — is to carry out, in order. An
/// action with a result (list `new/`, read files, claim) is answered by calling the matching
/// method (``listed(_:at:)``, ``read(_:oldestFirst:at:)``, ``claimed(_:at:)``) before the next
/// event. The machine holds the fair scheduler (with the tenants' token buckets), the circuit
/// breaker, the provider's pacing, the jobs waiting to be retried and to settle, the calls in
/// flight and the shutdown phase. It never reads a clock, a file or the network.
///
/// A call is one action (``Action/startCall(_:)``) with its own context, and one event when it
/// has settled (``callEnded(_:at:)``): what happens during the call (a streamed answer's progress,
/// say) is the call's business, not the machine's.
///
/// The runner drives it like this:
/// ```
/// run(start(at:))
/// loop {
///     run(housekeeping(at:))    // readiness, rescans and recovery, watchdog, settling files
///     run(schedule(at:))        // shutdown progress, then picking, claiming, starting; the next wake-up
///     if isStopped { break }
///     wait for events until the last sleep's instant; run(arrived / overflow / callEnded / shutdown),
///     or timerFired if none came
/// }
/// ```
struct WorkerStateMachine<Claimed: ClaimedJob>: Sendable {
    typealias Instant = ContinuousClock.Instant

    // MARK: Inputs and outputs

    struct Settings: Sendable {
        var maxInFlight: Int
        var gracePeriod: Duration
        var rescanInterval: Duration
        /// How often systemd wants a watchdog ping; nil: never.
        var watchdogInterval: Duration?
        /// The longest pause a provider's `retry-after` or rate-limit headers may impose.
        var maxRetryAfter: Duration
        var defaultMaxTokens: Int
        var breaker: CircuitBreaker.Settings
        var limits: @Sendable (String) -> TenantLimits

        init(_ c: WorkerConfiguration, watchdogInterval: Duration? = nil) {
            maxInFlight = max(1, c.maxInFlight)
            gracePeriod = c.gracePeriod
            rescanInterval = c.rescanInterval
            self.watchdogInterval = watchdogInterval
            maxRetryAfter = c.maxRetryAfter
            defaultMaxTokens = c.defaultMaxTokens
            breaker = c.circuitBreaker
            limits = { c.limits(for: $0) }
        }
    }

    /// A file of `new/` picked to be claimed, with what its pick reserved.
    struct Claiming: Sendable, Equatable {
        var name: String
        var reservation: Reservation
        /// The claim's call is to be the circuit breaker's probe.
        var probe: Bool
    }

    /// The tenant whose budgets a call draws on, and the tokens it reserved.
    struct Reservation: Sendable, Equatable {
        var tenant: String
        var tokens: Int
    }

    /// What reading a file of `new/` found.
    struct Peeked: Sendable {
        var name: String
        /// The job, or why it is not one (yet).
        var job: Result<Job, IntakeError>
        /// The file's modification time (wall clock, milliseconds since 1970): only its order counts.
        var modifiedMs: Int64
    }

    /// How claiming one ``Claiming`` ended.
    enum ClaimResult: Sendable {
        /// Ours now; `deadline` is the job's `deadline` as an instant (see ``ClockOrigin``).
        case claimed(Claimed, deadline: Instant?)
        /// Incomplete and fresh (its writer may be at it): look again after `recheckAfter`.
        case settling(recheckAfter: Duration)
        /// Not ours: gone, busy, rejected (dead-lettered) or failed.
        case notClaimed
    }

    /// A claimed job waiting for its next call: it holds no call slot.
    struct Retry: Sendable {
        var claim: Claimed
        /// History records of this claim's calls.
        var attempts: [JSONValue]
        var log: AttemptLog
        /// When it may be called again.
        var due: Instant
        /// Why the last call failed.
        var cause: FailureCause
    }

    /// A call to start: everything it needs from the machine.
    struct Call: Sendable {
        var id: Int
        var claim: Claimed
        var attempts: [JSONValue]
        var log: AttemptLog
        var probe: Bool
        /// What this call reserved (given back in its ``Report``).
        var reservation: Reservation
    }

    /// How a call ended, as its task reports it once the outcome is on disk.
    struct Report: Sendable {
        enum Result: Sendable { case finished, failed, givenBack, retry(Retry), abandoned }
        var callID: Int
        var reservation: Reservation
        /// Tokens the provider reported (nil: unknown, keep the reservation).
        var usedTokens: Int?
        var budget: ProviderBudget?
        var failure: CallFailure?
        var result: Result
        var probe = false
        /// The endpoint was called (false: the job's deadline had passed before its call).
        var called = true
    }

    /// A change of the circuit breaker, for the log and the published state.
    struct BreakerChange: Sendable, Equatable {
        var transition: CircuitBreaker.Transition
        var state: CircuitBreaker.State
        var probes: Int
        var probeInterval: Duration
        /// Time until the next probe may start.
        var nextProbeIn: Duration
        /// The failure of the call that caused it, if any.
        var failure: CallFailure?
        /// `closed`: the probe count of the probe that closed it (0 when a call did).
        var probesBeforeClose: Int
        /// `closed`: retries made due at once.
        var retriesDueNow: Int
    }

    enum Action: Sendable {
        /// One pass of crash recovery.
        case recover
        /// List `new/`, then call ``listed(_:at:)``.
        case listWaiting
        /// Read these files of `new/` without claiming them, then call ``read(_:oldestFirst:at:)``.
        case read([String], oldestFirst: Bool)
        /// Claim these files, then call ``claimed(_:at:)`` with one result each, in order.
        case claim([Claiming])
        case startCall(Call)
        /// Give a job waiting for its retry back to `new/` (the worker is stopping).
        case giveBack(Retry)
        /// The first scan is done: tell systemd, log, publish the breaker's state.
        case ready(waiting: Int)
        case watchdog
        /// Shutdown began: tell systemd and log.
        case stopping(inFlight: Int, retriesWaiting: Int, grace: Duration)
        /// The grace period is over: cancel every call in flight.
        case cancelCalls(inFlight: Int)
        case breakerChanged(BreakerChange)
        /// Calls pause for `pause`: the provider's budget runs low.
        case paced(pause: Duration, ProviderBudget)
        /// Wake the machine (``timerFired(at:)``) at this instant unless an event comes first.
        /// Replaces any earlier sleep.
        case sleep(until: Instant)
        /// Nothing is left to do: the worker has stopped.
        case stop(finished: Int)
    }

    enum Phase: Sendable, Equatable {
        /// Before the first scan has been read.
        case starting
        case running
        case stopping(graceEnds: Instant, cancelled: Bool)
        case stopped
    }

    /// What to schedule: a file still in `new/`, or a claimed job whose retry is due.
    enum Work: Sendable {
        case waiting(name: String)
        case retry(Retry)
    }

    // MARK: State

    let settings: Settings
    let clock: ClockOrigin
    private(set) var phase = Phase.starting
    private(set) var scheduler: FairScheduler<Work>
    private(set) var breaker: CircuitBreaker
    /// Names of `new/` queued in the scheduler.
    private(set) var known: Set<String> = []
    private(set) var retries: [Retry] = []
    /// Files of new/ that ended early and were too fresh to judge, and when to read them again.
    private(set) var settling: [String: Instant] = [:]
    /// Calls in flight, by id.
    private(set) var calls: Set<Int> = []
    /// Picks sent to be claimed, not yet answered.
    private(set) var claiming = 0
    private(set) var providerPausedUntil: Instant
    private(set) var finished = 0
    private var nextCallID = 0
    private var lastRescan: Instant
    private var lastWatchdog: Instant
    /// The wake-up asked for and not yet fired.
    private(set) var sleepingUntil: Instant?

    init(settings: Settings, now: Instant) {
        self.settings = settings
        clock = ClockOrigin(now)
        scheduler = FairScheduler(limits: settings.limits)
        breaker = CircuitBreaker(settings: settings.breaker)
        providerPausedUntil = now
        lastRescan = now
        lastWatchdog = now
    }

    var isStopped: Bool { phase == .stopped }
    var isStopping: Bool { if case .stopping = phase { true } else { false } }
    var inFlight: Int { calls.count }

    // MARK: Learning about jobs

    /// The worker starts: recover dead claims, then scan `new/`.
    mutating func start(at now: Instant) -> [Action] {
        lastRescan = now
        return [.recover, .listWaiting]
    }

    /// `new/` as listed (nil: it could not be listed). Forgets names that left; reads the rest,
    /// least recently written first (so a job given back after a crash goes behind the others).
    mutating func listed(_ names: [String]?, at now: Instant) -> [Action] {
        guard let names else { return [] }
        let present = Set(names)
        let gone = known.subtracting(present)
        if !gone.isEmpty {
            known.subtract(gone)
            scheduler.removeAll { if case .waiting(let n) = $0 { gone.contains(n) } else { false } }
        }
        let unknown = names.filter { !known.contains($0) }
        return unknown.isEmpty ? [] : [.read(unknown, oldestFirst: true)]
    }

    /// The watcher saw these files arrive in `new/`.
    func arrived(_ names: [String], at now: Instant) -> [Action] {
        var seen = Set<String>()
        let unknown = names.filter { !known.contains($0) && seen.insert($0).inserted }
        return unknown.isEmpty ? [] : [.read(unknown, oldestFirst: false)]
    }

    /// The watcher lost events: rescan.
    mutating func overflowed(at now: Instant) -> [Action] {
        guard !isStopping, !isStopped else { return [] }
        lastRescan = now
        return [.listWaiting]
    }

    /// Files of `new/` read (missing: gone since). Queues each under its tenant with an estimate
    /// of its tokens; a file that is not a valid job (yet) under `default`, for its claim to
    /// dead-letter it or find it still being written.
    mutating func read(_ files: [Peeked], oldestFirst: Bool, at now: Instant) -> [Action] {
        var files = files
        if oldestFirst { files.sort { ($0.modifiedMs, $0.name) < ($1.modifiedMs, $1.name) } }
        let t = clock.ms(now)
        for f in files where known.insert(f.name).inserted {
            switch f.job {
            case .success(let job):
                scheduler.add(
                    .waiting(name: f.name), tenant: job.tenantId ?? "default",
                    tokens: Prompt.reservation(job, defaultMaxTokens: settings.defaultMaxTokens), nowMs: t)
            case .failure:
                scheduler.add(.waiting(name: f.name), tenant: "default", tokens: 1, nowMs: t)
            }
        }
        return []
    }

    // MARK: Claims and calls

    /// The outcome of each ``Action/claim(_:)`` pick, in order. Starts a call for each claim;
    /// frees what the others reserved and, if any slot came free, picks again.
    mutating func claimed(_ results: [(Claiming, ClaimResult)], at now: Instant) -> [Action] {
        var actions: [Action] = []
        var freed = false
        let t = clock.ms(now)
        for (pick, result) in results {
            claiming -= 1
            switch result {
            case .claimed(let claim, let deadline):
                let log = AttemptLog(deadlineMs: deadline.map(clock.ms))
                actions.append(.startCall(startCall(claim: claim, attempts: [], log: log, probe: pick.probe, pick.reservation)))
            case .settling(let after):
                settling[pick.name] = now + after + .milliseconds(50)
                fallthrough
            case .notClaimed:
                scheduler.finished(tenant: pick.reservation.tenant, reservedTokens: pick.reservation.tokens, usedTokens: 0, nowMs: t)
                if pick.probe { breaker.probeAbandoned(nowMs: t) }
                freed = true
            }
        }
        if freed, phase == .running { actions += dispatch(at: now) }
        return actions
    }

    private mutating func startCall(claim: Claimed, attempts: [JSONValue], log: AttemptLog, probe: Bool, _ r: Reservation) -> Call {
        let id = nextCallID
        nextCallID += 1
        calls.insert(id)
        return Call(id: id, claim: claim, attempts: attempts, log: log, probe: probe, reservation: r)
    }

    /// A call ended and its outcome is on disk.
    mutating func callEnded(_ r: Report, at now: Instant) -> [Action] {
        guard calls.remove(r.callID) != nil else { return [] }
        var actions: [Action] = []
        let t = clock.ms(now)
        scheduler.finished(tenant: r.reservation.tenant, reservedTokens: r.reservation.tokens, usedTokens: r.usedTokens, nowMs: t)
        if let b = r.budget, let pause = pace(b, at: now) { actions.append(.paced(pause: pause, b)) }
        if let change = observe(r, at: now) { actions.append(.breakerChanged(change)) }
        if let f = r.failure, f.httpStatus == 429 || f.httpStatus == 529, let after = f.retryAfterMs {
            // The provider asked everyone to wait, not just this job.
            providerPausedUntil = max(providerPausedUntil, now + min(.milliseconds(after), settings.maxRetryAfter))
        }
        switch r.result {
        case .finished, .failed: finished += 1
        case .givenBack, .abandoned: break
        case .retry(let retry):
            if isStopping || isStopped { actions.append(.giveBack(retry)) } else { retries.append(retry) }
        }
        return actions
    }

    /// Tells the circuit breaker how a call ended.
    private mutating func observe(_ r: Report, at now: Instant) -> BreakerChange? {
        let t = clock.ms(now)
        guard r.called, r.failure?.kind != .cancelled else {
            if r.probe { breaker.probeAbandoned(nowMs: t) }
            return nil
        }
        let probesSoFar = breaker.probes
        guard let transition = breaker.record(failedTransiently: r.failure?.cause == .transient, probe: r.probe, nowMs: t) else {
            return nil
        }
        var resumed = 0
        if transition == .closed {
            // Jobs backing off from transient failures failed because of the outage: due now.
            for k in retries.indices where retries[k].cause == .transient && retries[k].due > now {
                retries[k].due = now
                resumed += 1
            }
        }
        return BreakerChange(
            transition: transition, state: breaker.state, probes: breaker.probes, probeInterval: .milliseconds(breaker.probeIntervalMs),
            nextProbeIn: .milliseconds(max(0, breaker.nextProbeMs - t)), failure: r.failure,
            probesBeforeClose: r.probe ? probesSoFar : 0, retriesDueNow: resumed)
    }

    /// Slows down before the provider's budget runs out: with few requests or tokens left in the
    /// window, calls are spread evenly over the time to its reset. Returns the new pause, if longer.
    private mutating func pace(_ b: ProviderBudget, at now: Instant) -> Duration? {
        var until = providerPausedUntil
        if let left = b.remainingRequests, let reset = b.resetRequestsMs, left < max(1, settings.maxInFlight / 4) {
            until = max(until, now + .milliseconds(left <= 0 ? reset : reset / Int64(left + 1)))
        }
        if let left = b.remainingTokens, let reset = b.resetTokensMs, left < settings.defaultMaxTokens * 2 {
            until = max(until, now + .milliseconds(left <= 0 ? reset : reset / 2))
        }
        guard until > providerPausedUntil else { return nil }
        providerPausedUntil = min(until, now + settings.maxRetryAfter)
        return providerPausedUntil - now
    }

    // MARK: Time passing

    /// The timer of the last ``Action/sleep(until:)`` fired.
    mutating func timerFired(at now: Instant) -> [Action] {
        sleepingUntil = nil
        return []
    }

    /// Work that comes due with time, run before ``schedule(at:)``: readiness after the first scan,
    /// the periodic rescan and recovery, the watchdog, files whose settle time is over.
    mutating func housekeeping(at now: Instant) -> [Action] {
        var actions: [Action] = []
        if phase == .starting {
            phase = .running
            actions.append(.ready(waiting: scheduler.queued))
        }
        if phase == .running && now - lastRescan >= settings.rescanInterval {
            lastRescan = now
            actions += [.recover, .listWaiting]
        }
        if let w = settings.watchdogInterval, now - lastWatchdog >= w {
            lastWatchdog = now
            actions.append(.watchdog)
        }
        if phase == .running && !settling.isEmpty {
            let due = settling.filter { $0.value <= now }.keys.sorted()
            for name in due { settling[name] = nil }
            let unknown = due.filter { !known.contains($0) }
            if !unknown.isEmpty { actions.append(.read(unknown, oldestFirst: false)) }
        }
        return actions
    }

    /// Moves the worker on: while running, starts what may start now and says when to look again;
    /// while stopping, ends the grace period and stops once no call is left.
    mutating func schedule(at now: Instant) -> [Action] {
        switch phase {
        case .starting, .stopped:
            return []
        case .running:
            return dispatch(at: now)
        case .stopping(let graceEnds, let cancelled):
            if calls.isEmpty && claiming == 0 {
                phase = .stopped
                return [.stop(finished: finished)]
            }
            if !cancelled && now >= graceEnds {
                phase = .stopping(graceEnds: graceEnds, cancelled: true)
                return [.cancelCalls(inFlight: calls.count)]
            }
            return cancelled ? [] : sleep(until: graceEnds)
        }
    }

    /// Picks and claims (or, for a due retry, starts) as many jobs as slots, budgets, the
    /// provider's pacing and the circuit breaker allow.
    private mutating func dispatch(at now: Instant) -> [Action] {
        let t = clock.ms(now)
        // Retries that are due go to the front of their tenant's queue.
        if !retries.isEmpty {
            var waiting: [Retry] = []
            for r in retries {
                if r.due <= now {
                    scheduler.add(
                        .retry(r), tenant: r.claim.job.tenantId ?? "default",
                        tokens: Prompt.reservation(r.claim.job, defaultMaxTokens: settings.defaultMaxTokens), nowMs: t, first: true)
                } else {
                    waiting.append(r)
                }
            }
            retries = waiting
        }
        var actions: [Action] = []
        var claims: [Claiming] = []
        var wake = retries.lazy.map(\.due).min()
        func wakeAt(_ i: Instant) { wake = min(wake ?? i, i) }
        while calls.count + claiming < settings.maxInFlight {
            if providerPausedUntil > now {
                wakeAt(providerPausedUntil)
                break
            }
            // An open breaker starts nothing but its probe; jobs stay in new/ (or wait, claimed, to retry).
            let permit = breaker.permit(nowMs: t)
            if case .wait(let until) = permit {
                if until < Int64.max { wakeAt(clock.instant(until)) }
                break
            }
            let next = scheduler.next(nowMs: t)
            guard case .run(let pick) = next else {
                if case .wait(let ms) = next { wakeAt(now + .milliseconds(ms)) }
                break
            }
            let probe = permit == .probe
            if probe { breaker.probeStarted() }
            let reservation = Reservation(tenant: pick.tenant, tokens: pick.reservedTokens)
            switch pick.item {
            case .retry(let r):
                actions.append(.startCall(startCall(claim: r.claim, attempts: r.attempts, log: r.log, probe: probe, reservation)))
            case .waiting(let name):
                known.remove(name)
                claiming += 1
                claims.append(Claiming(name: name, reservation: reservation, probe: probe))
            }
        }
        if let s = settling.values.min() { wakeAt(s) }
        if !claims.isEmpty { actions.insert(.claim(claims), at: 0) }
        if let wake { actions += sleep(until: wake) }
        return actions
    }

    private mutating func sleep(until t: Instant) -> [Action] {
        if let s = sleepingUntil, s <= t { return [] }
        sleepingUntil = t
        return [.sleep(until: t)]
    }

    // MARK: Shutdown

    /// A graceful stop: no new claims; jobs waiting to retry go back to `new/`; calls in flight
    /// have the grace period to finish, then are cancelled (and give their jobs back).
    mutating func shutdown(at now: Instant) -> [Action] {
        guard !isStopping, !isStopped else { return [] }
        phase = .stopping(graceEnds: now + settings.gracePeriod, cancelled: false)
        var actions: [Action] = [.stopping(inFlight: calls.count, retriesWaiting: retries.count, grace: settings.gracePeriod)]
        actions += retries.map(Action.giveBack)
        retries = []
        settling = [:]
        return actions
    }
}
