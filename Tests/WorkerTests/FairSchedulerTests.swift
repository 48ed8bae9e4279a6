import Spool
import Testing

@testable import Worker

@Suite("Fair scheduling and budgets (pure)")
struct FairSchedulerTests {
    @Test("one tenant's backlog of 100,000 jobs does not starve another tenant's single job")
    func noStarvation() {
        var s = FairScheduler<Int>(limits: { _ in TenantLimits() })
        for k in 0..<100_000 { s.add(k, tenant: "big", tokens: 10, nowMs: 0) }
        s.add(-1, tenant: "small", tokens: 10, nowMs: 0)
        var order: [String] = []
        for _ in 0..<3 {
            guard case .run(let p) = s.next(nowMs: 0) else { Issue.record("nothing to run"); return }
            order.append(p.tenant)
        }
        #expect(order.contains("small"), "the small tenant waited behind the backlog: \(order)")
        #expect(s.queued == 100_000 - 2)
    }

    @Test("round-robin alternates between tenants with work")
    func roundRobin() {
        var s = FairScheduler<String>(limits: { _ in TenantLimits() })
        for k in 0..<4 { s.add("a\(k)", tenant: "a", tokens: 1, nowMs: 0) }
        for k in 0..<2 { s.add("b\(k)", tenant: "b", tokens: 1, nowMs: 0) }
        var picked: [String] = []
        while case .run(let p) = s.next(nowMs: 0) { picked.append(p.item) }
        #expect(picked == ["a0", "b0", "a1", "b1", "a2", "a3"])
    }

    @Test("a tenant over its token budget waits (not fails) while others run; usage refunds the reservation")
    func tokenBudget() {
        var s = FairScheduler<String>(limits: { $0 == "capped" ? TenantLimits(tokensPerMinute: 1000) : TenantLimits() })
        s.add("c1", tenant: "capped", tokens: 800, nowMs: 0)
        s.add("c2", tenant: "capped", tokens: 800, nowMs: 0)
        s.add("f1", tenant: "free", tokens: 800, nowMs: 0)
        guard case .run(let first) = s.next(nowMs: 0), first.item == "c1" else { Issue.record("c1 first"); return }
        guard case .run(let second) = s.next(nowMs: 0), second.item == "f1" else { Issue.record("f1 next"); return }
        guard case .wait(let ms) = s.next(nowMs: 0) else { Issue.record("capped must wait"); return }
        // 600 tokens short at 1000/min: 36 s.
        #expect(ms == 36_000)
        // The call used only 100 of its 800 tokens: the refund lets c2 run at once.
        s.finished(tenant: "capped", reservedTokens: 800, usedTokens: 100, nowMs: 1)
        guard case .run(let third) = s.next(nowMs: 1) else { Issue.record("c2 should run after the refund"); return }
        #expect(third.item == "c2")
        #expect(s.next(nowMs: 1).isIdle)
    }

    @Test("requests per minute and in-flight caps hold a tenant back")
    func requestAndInFlightLimits() {
        var s = FairScheduler<Int>(limits: { _ in TenantLimits(requestsPerMinute: 2, maxInFlight: 5) })
        for k in 0..<10 { s.add(k, tenant: "t", tokens: 1, nowMs: 0) }
        #expect(s.next(nowMs: 0).isRun && s.next(nowMs: 0).isRun)
        guard case .wait(let ms) = s.next(nowMs: 0) else { Issue.record("expected a wait"); return }
        #expect(ms == 30_000)
        var s2 = FairScheduler<Int>(limits: { _ in TenantLimits(maxInFlight: 2) })
        for k in 0..<4 { s2.add(k, tenant: "t", tokens: 1, nowMs: 0) }
        #expect(s2.next(nowMs: 0).isRun && s2.next(nowMs: 0).isRun)
        #expect(s2.next(nowMs: 0).isIdle)
        s2.finished(tenant: "t", reservedTokens: 1, usedTokens: 1, nowMs: 0)
        #expect(s2.next(nowMs: 0).isRun)
    }

    @Test("an oversized job is slowed to a full bucket, never starved")
    func oversized() {
        var s = FairScheduler<Int>(limits: { _ in TenantLimits(tokensPerMinute: 100) })
        s.add(1, tenant: "t", tokens: 1000, nowMs: 0)
        #expect(s.next(nowMs: 0).isRun)
        s.add(2, tenant: "t", tokens: 1000, nowMs: 0)
        guard case .wait = s.next(nowMs: 0) else { Issue.record("expected a wait"); return }
        // The debt of 900 plus a full bucket: runs after the bucket refills completely.
        #expect(s.next(nowMs: 600_000).isRun)
    }

    @Test("token reservation: prompt estimate plus max tokens")
    func reservation() {
        var job = Job(prompt: String(repeating: "x", count: 400))
        #expect(Prompt.reservation(job, defaultMaxTokens: 1000) == 104 + 1000)
        job.maxTokens = 10
        #expect(Prompt.reservation(job, defaultMaxTokens: 1000) == 114)
    }
}

extension FairScheduler.Decision {
    var isRun: Bool { if case .run = self { true } else { false } }
    var isIdle: Bool { if case .idle = self { true } else { false } }
}
