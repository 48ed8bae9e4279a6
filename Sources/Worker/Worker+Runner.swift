import Daemon
import JSON
import Logging
import Spool

extension Worker {
    /// The I/O around ``WorkerStateMachine``: one loop takes events in batches, hands them to the
    /// machine and carries out the actions it returns — on the disk threads for anything that
    /// touches the file system, as tasks for calls and timers, as log lines, metrics and systemd
    /// notifications for the rest. It keeps only what is I/O: the call tasks (to cancel them),
    /// the timer task, the wall-clock time the breaker opened (for status).
    struct Runner {
        let worker: Worker
        let config: WorkerConfiguration
        let spool: Spool
        let events: EventQueue<Event>
        let notifier: SystemdNotifier?
        let committer: ResultCommitter
        var machine: Machine
        var calls: [Int: Task<Void, Never>] = [:]
        var timer: Task<Void, Never>?
        /// When the breaker last opened, wall clock (RFC 3339), for status and logs.
        var breakerOpenedAt: String?
        var logger: Logger { worker.logger }

        init(worker: Worker, configuration: WorkerConfiguration, spool: Spool, events: EventQueue<Event>,
             notifier: SystemdNotifier?, committer: ResultCommitter, machine: Machine) {
            self.worker = worker
            config = configuration
            self.spool = spool
            self.events = events
            self.notifier = notifier
            self.committer = committer
            self.machine = machine
        }

        var now: ContinuousClock.Instant { .now }

        mutating func run() async {
            await perform(machine.start(at: now))
            while true {
                await perform(machine.housekeeping(at: now))
                await perform(machine.schedule(at: now))
                if machine.isStopped { break }
                guard let batch = await events.next() else { break }
                for event in batch { await handle(event) }
            }
            timer?.cancel()
            events.finish()
        }

        mutating func handle(_ event: Event) async {
            switch event {
            case .watch(.changed(let arrived, let overflow)):
                await perform(overflow ? machine.overflowed(at: now) : machine.arrived(arrived[.new] ?? [], at: now))
            case .watch(.timeout), .watch(.woken):
                break
            case .callEnded(let report):
                calls[report.callID] = nil
                worker.metrics.inFlight.record(calls.count)
                worker.metrics.ended(report)
                await perform(machine.callEnded(report, at: now))
            case .timer:
                timer = nil
                await perform(machine.timerFired(at: now))
            case .shutdown:
                await perform(machine.shutdown(at: now))
            }
        }

        /// Carries out actions in order; an action with a result answers the machine at once,
        /// and what the machine says to that is carried out before the next action.
        mutating func perform(_ actions: [Machine.Action]) async {
            for action in actions {
                switch action {
                case .recover:
                    await recover()
                case .listWaiting:
                    worker.metrics.refreshJobs(spool)
                    let spool = self.spool
                    let names = try? await Disk.run { () throws(SpoolError) in try spool.waiting() }
                    await perform(machine.listed(names, at: now))
                case .read(let names, let oldestFirst):
                    let spool = self.spool
                    let found = await Disk.run {
                        names.compactMap { n in spool.peek(n).map { Machine.Peeked(name: n, job: $0.job, modifiedMs: $0.modifiedMilliseconds) } }
                    }
                    await perform(machine.read(found, oldestFirst: oldestFirst, at: now))
                case .claim(let picks):
                    await perform(machine.claimed(await claim(picks), at: now))
                case .startCall(let call):
                    start(call)
                case .giveBack(let retry):
                    await giveBack(retry)
                case .ready(let waiting):
                    logger.info("worker ready", metadata: [
                        "spool": "\(spool.path)", "llm": "\(worker.responder.description)",
                        "max_in_flight": "\(config.maxInFlight)", "waiting": "\(waiting)",
                    ])
                    notifier?.notify("READY=1\nSTATUS=working")
                    publishBreaker()
                case .watchdog:
                    notifier?.notify("WATCHDOG=1")
                case .stopping(let inFlight, let retriesWaiting, let grace):
                    notifier?.notify("STOPPING=1")
                    logger.info("stopping: no new claims", metadata: [
                        "in_flight": "\(inFlight)", "retries_waiting": "\(retriesWaiting)", "grace_ms": "\(grace.wholeMilliseconds)",
                    ])
                case .cancelCalls(let inFlight):
                    logger.warning("grace period over: cancelling calls in flight", metadata: ["in_flight": "\(inFlight)"])
                    for task in calls.values { task.cancel() }
                case .breakerChanged(let change):
                    breakerChanged(change)
                case .paced(let pause, let b):
                    logger.info("pacing to the provider's rate limit", metadata: [
                        "pause_ms": "\(pause.wholeMilliseconds)",
                        "remaining_requests": "\(b.remainingRequests.map(String.init) ?? "?")",
                        "remaining_tokens": "\(b.remainingTokens.map(String.init) ?? "?")",
                    ])
                case .sleep(let until):
                    timer?.cancel()
                    let events = self.events
                    timer = Task {
                        do { try await Task.sleep(until: until, clock: .continuous) } catch { return }
                        events.yield(.timer)
                    }
                case .stop(let finished):
                    logger.info("worker stopped", metadata: ["finished": "\(finished)"])
                }
            }
        }

        // MARK: Disk work

        mutating func recover() async {
            let spool = self.spool
            do {
                let r = try await Disk.run { () throws(SpoolError) in try spool.recover() }
                for id in r.givenBack { logger.notice("gave back a dead claim", metadata: ["job.id": "\(id)"]) }
                for id in r.deadLettered {
                    logger.error("dead-lettered a job abandoned too often", metadata: ["job.id": "\(id)"])
                    worker.metrics.failed(kind: "abandoned")
                }
            } catch {
                logger.error("recovery failed", metadata: ["error": "\(error)"])
            }
        }

        /// What claiming one file came to, beside the machine's answer: for the log and metrics.
        enum ClaimNote: Sendable {
            case none
            case claimed
            case rejected(key: String, IntakeError)
            case failed(SpoolError)
        }

        /// Claims the picks in one trip to the disk threads.
        func claim(_ picks: [Machine.Claiming]) async -> [(Machine.Claiming, Machine.ClaimResult)] {
            let spool = self.spool
            let done = await Disk.run { () -> [(Machine.Claiming, Machine.ClaimResult, ClaimNote)] in
                picks.map { pick in
                    let outcome: ClaimOutcome
                    do throws(SpoolError) { outcome = try spool.claim(pick.name) } catch { return (pick, .notClaimed, .failed(error)) }
                    switch outcome {
                    case .claimed(let c):
                        // A deadline is wall-clock on disk; from here on it is an instant of the worker's clock.
                        let deadline = c.job.deadline.flatMap(Timestamp.parse).map {
                            ClockOrigin.instant(ofWallClock: $0, wallNowMs: Timestamp.nowMilliseconds(), now: .now)
                        }
                        return (pick, .claimed(c, deadline: deadline), .claimed)
                    case .settling:
                        // The file's time is wall-clock: what is left of its settle time becomes a duration.
                        guard let modified = spool.peek(pick.name)?.modifiedMilliseconds else { return (pick, .notClaimed, .none) }
                        let left = max(0, modified + Spool.settleMilliseconds - Timestamp.nowMilliseconds())
                        return (pick, .settling(recheckAfter: .milliseconds(left)), .none)
                    case .rejected(let key, let e):
                        return (pick, .notClaimed, .rejected(key: key, e))
                    case .busy, .gone:
                        return (pick, .notClaimed, .none)
                    }
                }
            }
            var results: [(Machine.Claiming, Machine.ClaimResult)] = []
            results.reserveCapacity(done.count)
            for (pick, result, note) in done {
                switch note {
                case .claimed:
                    worker.metrics.claimed.increment()
                case .rejected(let key, let e):
                    worker.metrics.failed(kind: "rejected")
                    logger.warning("rejected a bad job file", metadata: [
                        "file": "\(pick.name)", "dead_letter": "\(spool.path(of: key + ".json", in: .failed))", "reason": "\(e)",
                    ])
                case .failed(let error):
                    logger.error("claim failed", metadata: ["file": "\(spool.path(of: pick.name, in: .new))", "error": "\(error)"])
                case .none:
                    break
                }
                results.append((pick, result))
            }
            return results
        }

        func giveBack(_ r: Machine.Retry) async {
            let spool = self.spool
            do {
                try await Disk.run { () throws(SpoolError) in
                    try spool.giveBack(r.claim, reason: "worker stopped while the job waited to retry", countAttempt: false,
                                       attempts: r.attempts)
                }
            } catch {
                logger.error("could not give a job back; recovery will", metadata: ["job.id": "\(r.claim.id)", "error": "\(error)"])
            }
        }

        // MARK: Calls

        mutating func start(_ call: Machine.Call) {
            let worker = self.worker, events = self.events
            let context = CallContext(call: call, spool: spool, committer: committer, config: config, clock: machine.clock)
            // Detached: a child of nothing, so the task-local values around the loop (swift-log's,
            // swift-metrics', ServiceLifecycle's) are not copied into each of thousands of call tasks;
            // nothing a call does reads them. The runner cancels calls itself (`calls`).
            calls[call.id] = Task.detached {
                events.yield(.callEnded(await worker.call(context)))
            }
            worker.metrics.inFlight.record(calls.count)
        }

        // MARK: The circuit breaker

        mutating func breakerChanged(_ c: Machine.BreakerChange) {
            let lastError = c.failure.map { "\($0.kind): \($0.message)" } ?? "-"
            switch c.transition {
            case .opened:
                logger.warning("circuit breaker open: calls to the endpoint stop but for probes", metadata: [
                    "endpoint": "\(worker.responder.description)", "last_error": "\(lastError)",
                    "probe_in_ms": "\(c.nextProbeIn.wholeMilliseconds)",
                ])
                breakerOpenedAt = Timestamp.now()
            case .probeFailed:
                logger.notice("circuit breaker probe failed", metadata: [
                    "probes": "\(c.probes)", "next_probe_in_ms": "\(c.probeInterval.wholeMilliseconds)", "error": "\(lastError)",
                ])
            case .closed:
                logger.notice("circuit breaker closed: calls resume", metadata: [
                    "open_since": "\(breakerOpenedAt ?? "?")", "probes": "\(c.probesBeforeClose)", "retries_due_now": "\(c.retriesDueNow)",
                ])
                breakerOpenedAt = nil
            }
            publishBreaker()
        }

        /// Shows the breaker's state in the metrics and, through the spool, to `llmspool status`.
        func publishBreaker() {
            let breaker = machine.breaker
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
    }
}
