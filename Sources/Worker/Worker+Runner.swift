import Basics
import Daemon
import JSON
import Logging
import Spool

extension Worker {
    /// The I/O around ``WorkerStateMachine``: one loop, on a thread of its own, takes events in
    /// batches, hands them to the machine and carries out the actions it returns — file-system
    /// calls (listing `new/`, reading and claiming files, recovery, give back) right there, on its
    /// own thread, never on the cooperative pool; calls as tasks; log lines, metrics and systemd
    /// notifications for the rest. A sleep the machine asks for is the timeout of its wait for
    /// events. It keeps only what is I/O: the call tasks (to cancel them), the wake-up time, the
    /// wall-clock time the breaker opened (for status).
    struct Runner: Sendable {
        let worker: Worker
        let config: WorkerConfiguration
        let spool: Spool
        let events: EventQueue<Event>
        let notifier: SystemdNotifier?
        let committer: ResultCommitter
        var machine: Machine
        var calls: [Int: Task<Void, Never>] = [:]
        /// When the machine wants to be woken if no event comes first.
        var wakeAt: ContinuousClock.Instant?
        /// When the breaker last opened, wall clock (RFC 3339), for status and logs.
        var breakerOpenedAt: String?
        var logger: Logger { worker.logger }

        init(
            worker: Worker, configuration: WorkerConfiguration, spool: Spool, events: EventQueue<Event>,
            notifier: SystemdNotifier?, committer: ResultCommitter, machine: Machine
        ) {
            self.worker = worker
            config = configuration
            self.spool = spool
            self.events = events
            self.notifier = notifier
            self.committer = committer
            self.machine = machine
        }

        var now: ContinuousClock.Instant { .now }

        /// Runs until the machine stops or the queue is finished. Blocks its thread.
        mutating func run() {
            perform(machine.start(at: now))
            while true {
                perform(machine.housekeeping(at: now))
                perform(machine.schedule(at: now))
                if machine.isStopped { break }
                guard let batch = events.wait(until: wakeAt) else { break }
                if batch.isEmpty {
                    wakeAt = nil
                    perform(machine.timerFired(at: now))
                }
                for event in batch { handle(event) }
            }
            events.finish()
        }

        mutating func handle(_ event: Event) {
            switch event {
            case .watch(.changed(let arrived, let overflow)):
                perform(overflow ? machine.overflowed(at: now) : machine.arrived(arrived[.new] ?? [], at: now))
            case .watch(.timeout), .watch(.woken):
                break
            case .callEnded(let report):
                calls[report.callID] = nil
                worker.metrics.inFlight.record(calls.count)
                worker.metrics.ended(report)
                perform(machine.callEnded(report, at: now))
            case .shutdown:
                perform(machine.shutdown(at: now))
            }
        }

        /// Carries out actions in order; an action with a result answers the machine at once,
        /// and what the machine says to that is carried out before the next action.
        mutating func perform(_ actions: [Machine.Action]) {
            for action in actions {
                switch action {
                case .recover:
                    recover()
                case .listWaiting:
                    worker.metrics.refreshJobs(spool)
                    perform(machine.listed(try? spool.waiting(), at: now))
                case .read(let names, let oldestFirst):
                    let wallNow = Timestamp.nowMilliseconds()
                    let found = names.compactMap { n -> Machine.Peeked? in
                        guard let p = spool.peek(n) else { return nil }
                        // Provider-batch hook (Sources/Worker/ProviderBatch): a job the provider batcher takes
                        // is left in new/ for it and not shown to the machine (as if gone), so that if it is
                        // given back to the live path (marked so) it is seen afresh when it arrives again.
                        if case .success(let job) = p.job, ProviderBatchRouting.batches(job, config.providerBatch, nowMs: wallNow) {
                            return nil
                        }
                        return Machine.Peeked(name: n, job: p.job, modifiedMs: p.modifiedMilliseconds)
                    }
                    perform(machine.read(found, oldestFirst: oldestFirst, at: now))
                case .claim(let picks):
                    // Each claim is answered as soon as it is made, so its call starts while the next
                    // files are claimed (on a slow disk a batch of claims takes a while).
                    for pick in picks { perform(machine.claimed([(pick, claim(pick))], at: now)) }
                case .startCall(let call):
                    start(call)
                case .giveBack(let retry):
                    giveBack(retry)
                case .ready(let waiting):
                    logger.info(
                        "worker ready",
                        metadata: [
                            "spool": "\(spool.path)", "llm": "\(worker.responder.description)",
                            "max_in_flight": "\(config.maxInFlight)", "waiting": "\(waiting)",
                        ])
                    notifier?.notify("READY=1\nSTATUS=working")
                    publishBreaker()
                case .watchdog:
                    notifier?.notify("WATCHDOG=1")
                case .stopping(let inFlight, let retriesWaiting, let grace):
                    notifier?.notify("STOPPING=1")
                    logger.info(
                        "stopping: no new claims",
                        metadata: [
                            "in_flight": "\(inFlight)", "retries_waiting": "\(retriesWaiting)", "grace_ms": "\(grace.wholeMilliseconds)",
                        ])
                case .cancelCalls(let inFlight):
                    logger.warning("grace period over: cancelling calls in flight", metadata: ["in_flight": "\(inFlight)"])
                    for task in calls.values { task.cancel() }
                case .breakerChanged(let change):
                    breakerChanged(change)
                case .paced(let pause, let b):
                    logger.info(
                        "pacing to the provider's rate limit",
                        metadata: [
                            "pause_ms": "\(pause.wholeMilliseconds)",
                            "remaining_requests": "\(b.remainingRequests.map(String.init) ?? "?")",
                            "remaining_tokens": "\(b.remainingTokens.map(String.init) ?? "?")",
                        ])
                case .sleep(let until):
                    wakeAt = until
                case .stop(let finished):
                    logger.info("worker stopped", metadata: ["finished": "\(finished)"])
                }
            }
        }

        // MARK: Disk work (on the loop's thread)

        func recover() {
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

        /// Claims one pick: what the machine needs to know of it; the rest goes to the log and metrics.
        func claim(_ pick: Machine.Claiming) -> Machine.ClaimResult {
            let outcome: ClaimOutcome
            do throws(SpoolError) { outcome = try spool.claim(pick.name) } catch {
                logger.error("claim failed", metadata: ["file": "\(spool.path(of: pick.name, in: .new))", "error": "\(error)"])
                return .notClaimed
            }
            switch outcome {
            case .claimed(let c):
                worker.metrics.claimed.increment()
                // A streamed job's partial file exists from its claim on (see Spool.preparePartial).
                if c.job.stream { spool.preparePartial(c.id) }
                // A deadline is wall-clock on disk; from here on it is an instant of the worker's clock.
                let deadline = c.job.deadline.flatMap(Timestamp.parse).map {
                    ClockOrigin.instant(ofWallClock: $0, wallNowMs: Timestamp.nowMilliseconds(), now: now)
                }
                return .claimed(c, deadline: deadline)
            case .settling:
                // The file's time is wall-clock: what is left of its settle time becomes a duration.
                guard let modified = spool.peek(pick.name)?.modifiedMilliseconds else { return .notClaimed }
                let left = max(0, modified + Spool.settleMilliseconds - Timestamp.nowMilliseconds())
                return .settling(recheckAfter: .milliseconds(left))
            case .rejected(let key, let e):
                worker.metrics.failed(kind: "rejected")
                logger.warning(
                    "rejected a bad job file",
                    metadata: [
                        "file": "\(pick.name)", "dead_letter": "\(spool.path(of: key + ".json", in: .failed))", "reason": "\(e)",
                    ])
                return .notClaimed
            case .busy, .gone:
                return .notClaimed
            }
        }

        func giveBack(_ r: Machine.Retry) {
            do {
                try spool.giveBack(
                    r.claim, reason: "worker stopped while the job waited to retry", countAttempt: false,
                    attempts: r.attempts)
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
                logger.warning(
                    "circuit breaker open: calls to the endpoint stop but for probes",
                    metadata: [
                        "endpoint": "\(worker.responder.description)", "last_error": "\(lastError)",
                        "probe_in_ms": "\(c.nextProbeIn.wholeMilliseconds)",
                    ])
                breakerOpenedAt = Timestamp.now()
            case .probeFailed:
                logger.notice(
                    "circuit breaker probe failed",
                    metadata: [
                        "probes": "\(c.probes)", "next_probe_in_ms": "\(c.probeInterval.wholeMilliseconds)", "error": "\(lastError)",
                    ])
            case .closed:
                logger.notice(
                    "circuit breaker closed: calls resume",
                    metadata: [
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
