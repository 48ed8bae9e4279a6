import JSON
import LLM
import Spool

@testable import Worker

/// A claimed job without a spool: the state machine only looks at its job.
struct FakeClaim: ClaimedJob, Equatable {
    let name: String
    let job: Job

    static func == (a: FakeClaim, b: FakeClaim) -> Bool { a.name == b.name }
}

typealias Machine = WorkerStateMachine<FakeClaim>
typealias Instant = ContinuousClock.Instant

/// A job of `tenant` reserving 15 tokens (prompt "x": 1 + 4 per message, plus maxTokens 10).
func job(_ tenant: String?, maxTokens: Int = 10, deadline: String? = nil) -> Job {
    var j = Job(prompt: "x")
    j.tenantId = tenant
    j.maxTokens = maxTokens
    j.deadline = deadline
    return j
}

func configuration(_ change: (inout WorkerConfiguration) -> Void = { _ in }) -> WorkerConfiguration {
    var c = WorkerConfiguration()
    c.maxInFlight = 4
    c.gracePeriod = .seconds(25)
    c.rescanInterval = .seconds(10)
    change(&c)
    return c
}

/// A deterministic random source: `value` every time (0: no jitter wait; all ones: the whole range).
struct FixedRandom: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

/// Drives a ``WorkerStateMachine`` as the worker's runner does, with a spool that is a dictionary
/// and calls that are values: no disk, no network, no clock but `now`.
struct Harness {
    var machine: Machine
    let t0: Instant
    var now: Instant
    /// Files in new/: name → (job, modification time in wall-clock ms).
    var files: [String: (job: Job, modifiedMs: Int64)] = [:]
    /// What claiming a name gives, when not the default (claimed if the file is there, else not).
    var claimOverride: [String: Machine.ClaimResult] = [:]
    var deadlines: [String: Instant] = [:]
    /// Calls started and not yet ended, in order.
    var running: [Machine.Call] = []
    var startedNames: [String] = []
    var claimBatches: [[Machine.Claiming]] = []
    var reads: [(names: [String], oldestFirst: Bool)] = []
    var givenBack: [String] = []
    var actions: [Machine.Action] = []
    var sleeps: [Instant] = []
    var stopped = false

    init(_ c: WorkerConfiguration = configuration(), watchdog: Duration? = nil) {
        let t = ContinuousClock.now
        t0 = t
        now = t
        machine = Machine(settings: .init(c, watchdogInterval: watchdog), now: t)
    }

    mutating func add(_ name: String, _ j: Job, modifiedMs: Int64 = 0) { files[name] = (j, modifiedMs) }

    mutating func run(_ list: [Machine.Action]) {
        for a in list {
            actions.append(a)
            switch a {
            case .listWaiting:
                run(machine.listed(files.keys.sorted(), at: now))
            case .read(let names, let oldestFirst):
                reads.append((names, oldestFirst))
                let found = names.compactMap { n in files[n].map { Machine.Peeked(name: n, job: .success($0.job), modifiedMs: $0.modifiedMs) } }
                run(machine.read(found, oldestFirst: oldestFirst, at: now))
            case .claim(let picks):
                claimBatches.append(picks)
                let results = picks.map { p -> (Machine.Claiming, Machine.ClaimResult) in
                    if let r = claimOverride[p.name] { return (p, r) }
                    guard let f = files.removeValue(forKey: p.name) else { return (p, .notClaimed) }
                    return (p, .claimed(FakeClaim(name: p.name, job: f.job), deadline: deadlines[p.name]))
                }
                run(machine.claimed(results, at: now))
            case .startCall(let call):
                running.append(call)
                startedNames.append(call.claim.name)
            case .giveBack(let r):
                givenBack.append(r.claim.name)
            case .sleep(let until):
                sleeps.append(until)
            case .stop:
                stopped = true
            case .recover, .ready, .watchdog, .stopping, .cancelCalls, .breakerChanged, .paced:
                break
            }
        }
    }

    /// Starts the machine: recovery, the first scan, readiness, the first round.
    mutating func start() {
        run(machine.start(at: now))
        round()
    }

    /// One turn of the runner's loop after events: housekeeping, then scheduling.
    mutating func round() {
        run(machine.housekeeping(at: now))
        run(machine.schedule(at: now))
    }

    mutating func advance(_ d: Duration) {
        now = now + d
        run(machine.timerFired(at: now))
        round()
    }

    mutating func arrive(_ names: [String]) {
        run(machine.arrived(names, at: now))
        round()
    }

    /// Ends the call of `name` (the oldest running one) with `result`.
    @discardableResult
    mutating func end(
        _ name: String, _ result: Machine.Report.Result = .finished, failure: CallFailure? = nil, usedTokens: Int? = nil,
        budget: ProviderBudget? = nil, called: Bool = true, round doRound: Bool = true
    ) -> Machine.Call? {
        guard let k = running.firstIndex(where: { $0.claim.name == name }) else { return nil }
        let call = running.remove(at: k)
        let report = Machine.Report(
            callID: call.id, reservation: call.reservation, usedTokens: usedTokens, budget: budget,
            failure: failure, result: result, probe: call.probe, called: called)
        run(machine.callEnded(report, at: now))
        if doRound { round() }
        return call
    }

    /// A retry of `call` due after `delay`, as a failed call's task reports it.
    func retry(_ call: Machine.Call, after delay: Duration, cause: FailureCause = .transient) -> Machine.Report.Result {
        var log = call.log
        log.record(cause, startedMs: machine.clock.ms(now))
        return .retry(Machine.Retry(claim: call.claim, attempts: call.attempts + [.string("attempt")], log: log, due: now + delay, cause: cause))
    }

    mutating func shutdown() {
        run(machine.shutdown(at: now))
        round()
    }

    var lastSleep: Instant? { sleeps.last }
    var cancels: Int { actions.filter { if case .cancelCalls = $0 { true } else { false } }.count }
    var recoveries: Int { actions.filter { if case .recover = $0 { true } else { false } }.count }
    var listings: Int { actions.filter { if case .listWaiting = $0 { true } else { false } }.count }
    var paces: [Duration] { actions.compactMap { if case .paced(let d, _) = $0 { d } else { nil } } }
    var breakerChanges: [Machine.BreakerChange] { actions.compactMap { if case .breakerChanged(let c) = $0 { c } else { nil } } }
}

extension CallFailure {
    static let unavailable = CallFailure(kind: .http, message: "503 Service Unavailable", httpStatus: 503, cause: .transient)
    static let badRequest = CallFailure(kind: .http, message: "400 Bad Request", httpStatus: 400, cause: .permanent)
    static func rateLimited(retryAfterMs: Int64?) -> CallFailure {
        CallFailure(kind: .http, message: "429 Too Many Requests", httpStatus: 429, cause: .rateLimit, retryAfterMs: retryAfterMs)
    }
    static let cancelled = CallFailure(kind: .cancelled, message: "shutting down", cause: .transient)
}
