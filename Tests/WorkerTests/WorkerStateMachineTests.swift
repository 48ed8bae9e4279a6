import Basics
import JSON
import LLM
import Spool
import Testing

@testable import Worker

@Suite("Worker state machine: claims and fairness (pure)")
struct StateMachineFairnessTests {
    @Test("start: recovery, then the scan of new/; ready once, after the scan, with what it found")
    func startThenReady() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("a.json", job("t"))
        h.add("b.json", job("t"))
        h.start()
        guard case .recover = h.actions[0], case .listWaiting = h.actions[1] else { Issue.record("\(h.actions)"); return }
        let ready = h.actions.compactMap { if case .ready(let n) = $0 { n } else { nil } }
        #expect(ready == [2], "ready once, after the scan, before any claim: \(ready)")
        let readyAt = h.actions.firstIndex { if case .ready = $0 { true } else { false } }!
        let claimAt = h.actions.firstIndex { if case .claim = $0 { true } else { false } }!
        let readAt = h.actions.firstIndex { if case .read = $0 { true } else { false } }!
        #expect(readAt < readyAt && readyAt < claimAt)
        h.round()
        #expect(h.actions.filter { if case .ready = $0 { true } else { false } }.count == 1)
    }

    @Test("picks are claimed in one batch per round, up to maxInFlight; an ended call frees one slot")
    func claimsInBatchesUpToMaxInFlight() {
        var h = Harness(configuration { $0.maxInFlight = 4 })
        for k in 0..<10 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        #expect(h.claimBatches.count == 1 && h.claimBatches[0].count == 4)
        #expect(h.running.count == 4 && h.machine.inFlight == 4)
        h.end("j0.json")
        h.end("j1.json", round: false)
        h.end("j2.json", round: false)
        h.round()
        #expect(h.claimBatches.map(\.count) == [4, 1, 2])
        #expect(h.machine.inFlight == 4)
    }

    @Test("tenants take turns, one call each; within a tenant the oldest first")
    func roundRobinAcrossTenants() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        for k in 0..<3 { h.add("a\(k).json", job("a"), modifiedMs: Int64(k)) }
        h.add("b0.json", job("b"), modifiedMs: 10)
        h.add("c0.json", job("c"), modifiedMs: 20)
        h.start()
        for _ in 0..<5 { h.end(h.running[0].claim.name) }
        #expect(h.startedNames == ["a0.json", "b0.json", "c0.json", "a1.json", "a2.json"])
    }

    @Test("a backlog of 5,000 jobs of one tenant delays another tenant's single job by at most one call")
    func noStarvation() {
        var h = Harness(configuration { $0.maxInFlight = 2 })
        for k in 0..<5000 { h.add("big\(k).json", job("big"), modifiedMs: Int64(k)) }
        h.start()
        h.add("small.json", job("small"), modifiedMs: 9999)
        h.arrive(["small.json"])
        h.end(h.running[0].claim.name)
        h.end(h.running[0].claim.name)
        #expect(h.startedNames.prefix(4).contains("small.json"), "\(h.startedNames.prefix(4))")
    }

    @Test("a scan reads files least recently written first; arrivals are read in the order seen, once each")
    func scanOrder() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("z.json", job("t"), modifiedMs: 1)
        h.add("a.json", job("t"), modifiedMs: 3)
        h.add("m.json", job("t"), modifiedMs: 2)
        h.start()
        #expect(h.startedNames == ["z.json"])
        h.end("z.json")
        h.end("m.json")
        #expect(h.startedNames == ["z.json", "m.json", "a.json"])
        h.add("q.json", job("t"))
        h.add("p.json", job("t"))
        h.arrive(["q.json", "p.json", "q.json"])
        #expect(h.reads.last!.names == ["q.json", "p.json"] && h.reads.last!.oldestFirst == false)
    }

    @Test("a claim that fails (taken by another worker) frees its slot and the next file is claimed in the same round")
    func failedClaimPicksAgain() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("a.json", job("t"), modifiedMs: 1)
        h.add("b.json", job("t"), modifiedMs: 2)
        h.claimOverride["a.json"] = .notClaimed
        h.start()
        #expect(h.claimBatches.map { $0.map(\.name) } == [["a.json"], ["b.json"]])
        #expect(h.startedNames == ["b.json"] && h.machine.inFlight == 1)
    }

    @Test("files that left new/ before their claim are dropped at the next scan, never claimed")
    func goneFilesForgotten() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        for k in 0..<3 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        h.files["j1.json"] = nil
        h.run(h.machine.listed(h.files.keys.sorted(), at: h.now))
        h.end("j0.json")
        #expect(h.claimBatches.flatMap { $0.map(\.name) } == ["j0.json", "j2.json"])
    }
}

@Suite("Worker state machine: budgets (pure)")
struct StateMachineBudgetTests {
    @Test("a tenant over its tokens per minute waits for its bucket, with a wake-up at the right instant; others run")
    func tenantTokenBucket() {
        // 15 tokens a job; 20 a minute: the second job waits for 10 more tokens, 30 s.
        var h = Harness(configuration { $0.tenants["capped"] = TenantLimits(tokensPerMinute: 20) })
        h.add("c1.json", job("capped"), modifiedMs: 1)
        h.add("c2.json", job("capped"), modifiedMs: 2)
        h.add("f1.json", job("free"), modifiedMs: 3)
        h.start()
        #expect(Set(h.startedNames) == ["c1.json", "f1.json"])
        #expect(h.lastSleep == h.t0 + .seconds(30))
        h.advance(.milliseconds(29_999))
        #expect(!h.startedNames.contains("c2.json"))
        h.advance(.milliseconds(1))
        #expect(h.startedNames.last == "c2.json")
    }

    @Test("a call's usage refunds its over-estimate at once: the tenant's next job need not wait")
    func usageRefund() {
        var h = Harness(configuration { $0.tenants["capped"] = TenantLimits(tokensPerMinute: 20) })
        h.add("c1.json", job("capped"), modifiedMs: 1)
        h.add("c2.json", job("capped"), modifiedMs: 2)
        h.start()
        #expect(h.startedNames == ["c1.json"])
        h.end("c1.json", usedTokens: 2)
        #expect(h.startedNames == ["c1.json", "c2.json"])
    }

    @Test("a tenant's calls in flight are capped; the other tenant fills the free slots")
    func tenantInFlightCap() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 4; $0.tenants["a"] = TenantLimits(maxInFlight: 1)
            })
        for k in 0..<3 { h.add("a\(k).json", job("a"), modifiedMs: Int64(k)) }
        for k in 0..<3 { h.add("b\(k).json", job("b"), modifiedMs: Int64(10 + k)) }
        h.start()
        #expect(h.startedNames.filter { $0.hasPrefix("a") } == ["a0.json"])
        #expect(h.startedNames.filter { $0.hasPrefix("b") }.count == 3)
        h.end("a0.json")
        #expect(h.startedNames.last == "a1.json")
    }

    @Test("the provider's last requests in its window are spread to its reset: nothing starts until then")
    func providerPacing() {
        var h = Harness(configuration { $0.maxInFlight = 2 })
        for k in 0..<4 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        h.end("j0.json", budget: ProviderBudget(remainingRequests: 0, resetRequestsMs: 2000))
        #expect(h.paces == [.seconds(2)])
        #expect(h.startedNames.count == 2, "a call started during the pause")
        #expect(h.lastSleep == h.t0 + .seconds(2))
        h.advance(.milliseconds(1999))
        #expect(h.startedNames.count == 2)
        h.advance(.milliseconds(1))
        #expect(h.startedNames.count == 3)
    }

    @Test("few tokens left in the provider's window: wait half its reset; a pause never exceeds maxRetryAfter")
    func providerTokensAndCap() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 1; $0.maxRetryAfter = .seconds(5)
            })
        for k in 0..<3 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        h.end("j0.json", budget: ProviderBudget(remainingTokens: 100, resetTokensMs: 4000))
        #expect(h.paces == [.seconds(2)])
        h.advance(.seconds(2))
        h.end("j1.json", budget: ProviderBudget(remainingRequests: 0, resetRequestsMs: 600_000))
        #expect(h.paces.last == .seconds(5))
    }

    @Test("a 429 with retry-after pauses every call of the worker, capped at maxRetryAfter")
    func rateLimitPausesAll() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 2; $0.maxRetryAfter = .seconds(3)
            })
        for k in 0..<4 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        let call = h.running[0]
        h.end("j0.json", h.retry(call, after: .seconds(3), cause: .rateLimit), failure: .rateLimited(retryAfterMs: 60_000))
        #expect(h.startedNames.count == 2)
        h.advance(.milliseconds(2999))
        #expect(h.startedNames.count == 2)
        h.advance(.milliseconds(1))
        // The retry goes first, ahead of the files waiting.
        #expect(h.startedNames == ["j0.json", "j1.json", "j0.json"])
    }
}

@Suite("Worker state machine: retries, give-back and shutdown (pure)")
struct StateMachineRetryShutdownTests {
    @Test("a retry waits for its instant, holds no slot meanwhile, and runs again without a new claim, ahead of its tenant's queue")
    func retryDue() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("a.json", job("t"), modifiedMs: 1)
        h.add("b.json", job("t"), modifiedMs: 2)
        h.add("c.json", job("t"), modifiedMs: 3)
        h.start()
        let first = h.running[0]
        h.end("a.json", h.retry(first, after: .seconds(1)), failure: .unavailable)
        // The slot went to b while a waits.
        #expect(h.startedNames == ["a.json", "b.json"])
        #expect(h.lastSleep == h.t0 + .seconds(1))
        h.advance(.seconds(1))
        h.end("b.json")
        #expect(h.startedNames == ["a.json", "b.json", "a.json"], "the due retry goes before c")
        let again = h.running[0]
        #expect(again.attempts.count == 1 && again.log.transientFailures == 1)
        #expect(h.claimBatches.flatMap { $0 }.filter { $0.name == "a.json" }.count == 1, "claimed once")
        #expect(again.id != first.id)
    }

    @Test("SIGTERM: stop claiming, give back waiting retries, let calls finish; stop when none is left")
    func gracefulStop() {
        var h = Harness(configuration { $0.maxInFlight = 2 })
        for k in 0..<5 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        let call = h.running[0]
        h.end("j0.json", h.retry(call, after: .seconds(30)), failure: .unavailable)
        #expect(h.running.count == 2)
        h.shutdown()
        #expect(h.givenBack == ["j0.json"])
        guard case .stopping(let inFlight, let waiting, let grace)? = h.actions.first(where: { if case .stopping = $0 { true } else { false } })
        else { Issue.record("no stopping action"); return }
        #expect(inFlight == 2 && waiting == 1 && grace == .seconds(25))
        #expect(h.lastSleep == h.now + .seconds(25))
        h.add("late.json", job("t"))
        h.arrive(["late.json"])
        h.end(h.running[0].claim.name)
        #expect(!h.stopped && h.startedNames.count == 3, "a new call started while stopping: \(h.startedNames)")
        h.end(h.running[0].claim.name)
        #expect(h.stopped && h.cancels == 0)
        #expect(h.machine.finished == 2)
    }

    @Test("calls still running when the grace period ends are cancelled once; the worker stops when their jobs are given back")
    func graceThenAbandon() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 3; $0.gracePeriod = .seconds(5)
            })
        for k in 0..<3 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        h.shutdown()
        h.advance(.milliseconds(4999))
        #expect(h.cancels == 0)
        h.advance(.milliseconds(1))
        #expect(h.cancels == 1)
        h.advance(.seconds(10))
        #expect(h.cancels == 1 && !h.stopped)
        for name in h.running.map(\.claim.name) { h.end(name, .givenBack, failure: .cancelled) }
        #expect(h.stopped && h.machine.finished == 0)
    }

    @Test("a call that fails during shutdown is given back, not scheduled to retry")
    func retryDuringShutdownGivenBack() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("a.json", job("t"))
        h.start()
        h.shutdown()
        let call = h.running[0]
        h.end("a.json", h.retry(call, after: .seconds(1)), failure: .unavailable)
        #expect(h.givenBack == ["a.json"] && h.stopped)
    }

    @Test("an idle worker stops at once on SIGTERM; a second SIGTERM changes nothing")
    func idleStop() {
        var h = Harness()
        h.start()
        h.shutdown()
        #expect(h.stopped)
        let before = h.actions.count
        h.run(h.machine.shutdown(at: h.now))
        #expect(h.actions.count == before)
    }

    @Test("a cancelled probe's ending counts for nothing; the breaker lets the next call probe")
    func cancelledProbe() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 1; $0.circuitBreaker.minimumCalls = 1
            })
        h.add("a.json", job("t"), modifiedMs: 1)
        h.add("b.json", job("t"), modifiedMs: 2)
        h.add("c.json", job("t"), modifiedMs: 3)
        h.start()
        h.end("a.json", h.retry(h.running[0], after: .seconds(60)), failure: .unavailable)
        #expect(h.machine.breaker.state == .open)
        h.advance(.seconds(1))
        #expect(h.running.count == 1 && h.running[0].probe)
        h.end(h.running[0].claim.name, .givenBack, failure: .cancelled)
        #expect(h.breakerChanges.count == 1, "no change of state was recorded")
        #expect(
            h.running.count == 1 && h.running[0].probe && h.running[0].claim.name == "c.json" && h.machine.breaker.probes == 2,
            "the next call is a probe again, at once")
    }
}

@Suite("Worker state machine: recovery, settling, breaker, clock (pure)")
struct StateMachineTimingTests {
    @Test("recovery and the rescan come every rescan interval, not before; never while stopping")
    func rescanTiming() {
        var h = Harness(configuration { $0.rescanInterval = .seconds(10) })
        h.start()
        #expect(h.recoveries == 1 && h.listings == 1)
        h.advance(.milliseconds(9_999))
        #expect(h.recoveries == 1)
        h.advance(.milliseconds(1))
        #expect(h.recoveries == 2 && h.listings == 2)
        h.advance(.seconds(5))
        #expect(h.recoveries == 2)
        h.add("x.json", job("t"))
        h.advance(.seconds(5))
        #expect(h.recoveries == 3 && h.startedNames == ["x.json"], "the rescan found the file inotify missed")
        h.end("x.json")
        h.shutdown()
        h.advance(.seconds(60))
        #expect(h.recoveries == 3)
    }

    @Test("an inotify overflow rescans new/ at once, without recovery")
    func overflowRescans() {
        var h = Harness()
        h.start()
        h.add("x.json", job("t"))
        h.run(h.machine.overflowed(at: h.now))
        h.round()
        #expect(h.listings == 2 && h.recoveries == 1 && h.startedNames == ["x.json"])
    }

    @Test("a file still being written is read again when its settle time is over, not at the next rescan")
    func settlingFile() {
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("slow.json", job("t"))
        h.claimOverride["slow.json"] = .settling(recheckAfter: .milliseconds(1500))
        h.start()
        #expect(h.startedNames.isEmpty && h.machine.inFlight == 0)
        #expect(h.lastSleep == h.t0 + .milliseconds(1550))
        h.advance(.milliseconds(1549))
        #expect(h.reads.count == 1)
        h.claimOverride["slow.json"] = nil
        h.advance(.milliseconds(1))
        #expect(h.reads.count == 2 && h.startedNames == ["slow.json"])
    }

    @Test("the watchdog is pinged every interval, also while stopping")
    func watchdog() {
        var h = Harness(configuration { $0.maxInFlight = 1 }, watchdog: .seconds(2))
        h.add("a.json", job("t"))
        h.start()
        func pings(_ h: Harness) -> Int { h.actions.filter { if case .watchdog = $0 { true } else { false } }.count }
        h.advance(.milliseconds(1999))
        #expect(pings(h) == 0)
        h.advance(.milliseconds(1))
        #expect(pings(h) == 1)
        h.shutdown()
        h.advance(.seconds(2))
        #expect(pings(h) == 2)
    }

    @Test("an open breaker claims nothing; after its interval exactly one probe is claimed; its answer closes it and makes backing-off retries due at once")
    func breakerProbeAndClose() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 4; $0.circuitBreaker.minimumCalls = 2
            })
        for k in 0..<8 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        let a = h.running[0], b = h.running[1]
        h.end(a.claim.name, h.retry(a, after: .seconds(300)), failure: .unavailable, round: false)
        h.end(b.claim.name, h.retry(b, after: .seconds(300)), failure: .unavailable)
        #expect(h.machine.breaker.state == .open && h.breakerChanges.map(\.transition) == [.opened])
        let claimed = h.claimBatches.flatMap { $0 }.count
        h.end(h.running[0].claim.name)
        h.end(h.running[0].claim.name)
        #expect(h.claimBatches.flatMap { $0 }.count == claimed, "claimed while open")
        #expect(h.lastSleep == h.t0 + .seconds(1))
        h.advance(.seconds(1))
        #expect(h.running.count == 1 && h.running[0].probe && h.claimBatches.last!.count == 1 && h.claimBatches.last![0].probe)
        h.end(h.running[0].claim.name)
        #expect(h.breakerChanges.last?.transition == .closed && h.breakerChanges.last?.retriesDueNow == 2)
        #expect(h.breakerChanges.last?.probesBeforeClose == 1)
        #expect(
            h.running.filter { $0.claim.name == a.claim.name || $0.claim.name == b.claim.name }.count == 2,
            "the two retries run now, not in 300 s")
    }

    @Test("a probe whose claim fails does not leave the breaker waiting for it: the next file is the probe")
    func probeClaimFails() {
        var h = Harness(
            configuration {
                $0.maxInFlight = 2; $0.circuitBreaker.minimumCalls = 1
            })
        for k in 0..<4 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        h.end("j0.json", h.retry(h.running[0], after: .seconds(300)), failure: .unavailable)
        h.end("j1.json")
        h.claimOverride["j2.json"] = .notClaimed
        h.advance(.seconds(1))
        #expect(h.claimBatches.suffix(2).map { $0.map(\.name) } == [["j2.json"], ["j3.json"]])
        #expect(h.running.count == 1 && h.running[0].probe && h.machine.breaker.state == .probing)
    }

    @Test("sleeps: the earliest wake-up wins; a later one is not asked for while it is armed; after it fires the next is armed")
    func sleepDedupe() {
        var h = Harness(configuration { $0.maxInFlight = 3 })
        for k in 0..<3 { h.add("j\(k).json", job("t"), modifiedMs: Int64(k)) }
        h.start()
        h.end("j0.json", h.retry(h.running[0], after: .seconds(5)), failure: .unavailable)
        h.end("j1.json", h.retry(h.running[0], after: .seconds(2)), failure: .unavailable)
        #expect(h.sleeps == [h.t0 + .seconds(5), h.t0 + .seconds(2)])
        h.end("j2.json", h.retry(h.running[0], after: .seconds(3)), failure: .unavailable)
        #expect(h.sleeps.count == 2)
        h.advance(.seconds(2))
        #expect(h.sleeps.last == h.t0 + .seconds(3))
    }

    @Test("time is the injected instants only: a retry is due on the monotonic clock, whatever the wall clock says")
    func wallClockStepHasNoEffect() {
        // A job due 10 s ahead by the wall clock becomes an instant once, at its claim.
        let t = ContinuousClock.now
        let wall: Int64 = 1_800_000_000_000
        let d = ClockOrigin.instant(ofWallClock: wall + 10_000, wallNowMs: wall, now: t)
        #expect(d == t + .seconds(10))
        // The wall clock steps an hour ahead: an instant taken before does not move, and the machine
        // has no other way to see the wall clock (its events carry instants only).
        var h = Harness(configuration { $0.maxInFlight = 1 })
        h.add("a.json", job("t"))
        h.deadlines["a.json"] = h.now + .seconds(10)
        h.start()
        let call = h.running[0]
        #expect(call.log.deadlineMs == h.machine.clock.ms(h.t0 + .seconds(10)))
        h.end("a.json", h.retry(call, after: .seconds(2)), failure: .unavailable)
        h.advance(.milliseconds(1999))
        #expect(h.running.isEmpty)
        h.advance(.milliseconds(1))
        #expect(h.running.count == 1 && h.running[0].log.deadlineMs == call.log.deadlineMs)
    }

    @Test("wall-clock conversion stays finite far from now, and durations round toward zero in milliseconds")
    func clockArithmetic() {
        let t = ContinuousClock.now
        let far = ClockOrigin.instant(ofWallClock: .max, wallNowMs: .min, now: t)
        #expect(far > t + .seconds(86_400 * 365 * 99))
        let past = ClockOrigin.instant(ofWallClock: 0, wallNowMs: 1_800_000_000_000, now: t)
        #expect(past < t)
        #expect(Duration.milliseconds(1500).wholeMilliseconds == 1500)
        #expect(Duration.microseconds(1999).wholeMilliseconds == 1)
        let origin = ClockOrigin(t)
        #expect(origin.instant(origin.ms(t + .seconds(7))) == t + .seconds(7))
    }
}
