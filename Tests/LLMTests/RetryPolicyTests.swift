import TestSupport
import Testing

@testable import LLM

@Suite("RetryPolicy")
struct RetryPolicyTests {
    @Test("transient statuses", arguments: [408, 409, 429, 500, 502, 503, 504, 529, 599])
    func transientStatus(status: Int) {
        #expect(RetryPolicy.isTransient(httpStatus: status))
        #expect(LLMError(.http, "x", httpStatus: status).isTransient)
    }

    @Test("permanent statuses", arguments: [400, 401, 403, 404, 405, 413, 415, 422, 451])
    func permanentStatus(status: Int) {
        #expect(!RetryPolicy.isTransient(httpStatus: status))
        let decision = RetryPolicy().decide(after: LLMError(.http, "x", httpStatus: status), attempt: 1)
        #expect(decision == .stop(.permanent))
    }

    @Test("kinds", arguments: LLMError.Kind.allCases)
    func kinds(kind: LLMError.Kind) {
        // A stream that ends in an error event or is cut off may well succeed when asked again.
        let transient: Set<LLMError.Kind> = [.timeout, .connection, .shutdown, .stream]
        if kind != .http {
            #expect(LLMError(kind, "x").isTransient == transient.contains(kind))
        }
    }

    @Test func malformedTwoHundredIsPermanent() {
        let error = LLMError(.malformedResponse, "not JSON", httpStatus: 200)
        #expect(!error.isTransient)
        #expect(RetryPolicy().decide(after: error, attempt: 1) == .stop(.permanent))
    }

    @Test("backoff ceilings double up to the cap")
    func ceilings() {
        let p = RetryPolicy()
        let ms = (0..<8).map { p.backoffCeiling(retry: $0) }
        #expect(ms == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8), .seconds(8)])
        #expect(p.backoffCeiling(retry: 10_000) == .seconds(8))
    }

    @Test("full jitter: anywhere from zero to the ceiling")
    func fullJitter() {
        let p = RetryPolicy()
        var high = MaxRandom()
        var low = ZeroRandom()
        #expect(p.delay(retry: 2, serverDelay: nil, using: &high) == .seconds(2))
        #expect(p.delay(retry: 2, serverDelay: nil, using: &low) == .zero)
        var seeded = SplitMix(seed: 42)
        let samples = (0..<2000).map { _ in p.delay(retry: 3, serverDelay: nil, using: &seeded) }
        #expect(samples.allSatisfy { $0 >= .zero && $0 <= .seconds(4) })
        let mean = samples.map(\.seconds).reduce(0, +) / Double(samples.count)
        #expect(abs(mean - 2.0) < 0.15, "full jitter averages half the ceiling, got \(mean)")
    }

    @Test("the server's wait wins, with at most 10 % added")
    func serverDelay() {
        let p = RetryPolicy()
        var low = ZeroRandom()
        var high = MaxRandom()
        #expect(p.delay(retry: 0, serverDelay: .seconds(30), using: &low) == .seconds(30))
        #expect(p.delay(retry: 0, serverDelay: .seconds(30), using: &high) == .seconds(33))
        #expect(p.delay(retry: 0, serverDelay: .milliseconds(20), using: &low) == .milliseconds(20))
    }

    @Test("the server's wait is capped at 120 s")
    func serverDelayCap() {
        var high = MaxRandom()
        #expect(RetryPolicy().delay(retry: 0, serverDelay: .seconds(3600), using: &high) == .seconds(120))
        #expect(RetryPolicy().delay(retry: 0, serverDelay: .seconds(115), using: &high) == .seconds(120))
        var low = ZeroRandom()
        let p = RetryPolicy(maxServerDelay: .seconds(5))
        #expect(p.delay(retry: 0, serverDelay: .seconds(60), using: &low) == .seconds(5))
    }

    @Test("a zero wait from the server falls back to backoff")
    func zeroServerDelay() {
        var high = MaxRandom()
        #expect(RetryPolicy().delay(retry: 1, serverDelay: .zero, using: &high) == .seconds(1))
    }

    @Test("three attempts by default")
    func attempts() {
        let p = RetryPolicy()
        var high = MaxRandom()
        let e = LLMError(.http, "busy", httpStatus: 429, retryAfter: .seconds(2))
        #expect(p.decide(after: e, attempt: 1, using: &high) == .retry(after: .milliseconds(2200)))
        #expect(p.decide(after: LLMError(.timeout, "slow"), attempt: 2, using: &high) == .retry(after: .seconds(1)))
        #expect(p.decide(after: e, attempt: 3, using: &high) == .stop(.attemptsExhausted))
        #expect(RetryPolicy(maxAttempts: 1).decide(after: e, attempt: 1) == .stop(.attemptsExhausted))
        #expect(RetryPolicy(maxAttempts: 0).maxAttempts == 1)
    }

    @Test("run retries transient errors and keeps every error")
    func runRetries() async throws {
        var random = MaxRandom()
        let slept = Box<[Duration]>([])
        let result = try await RetryPolicy().run(using: &random, sleep: { slept.value.append($0) }) { attempt in
            if attempt < 3 { throw LLMError(.http, "fail \(attempt)", httpStatus: 503) }
            return attempt
        }
        #expect(result == 3)
        #expect(slept.value == [.milliseconds(500), .seconds(1)])

        await #expect(throws: RetryFailure.self) {
            try await RetryPolicy().run(sleep: { _ in }) { (_: Int) -> Int in throw LLMError(.timeout, "slow") }
        }
        do {
            _ = try await RetryPolicy().run(sleep: { _ in }) { (n: Int) -> Int in
                throw n == 1 ? LLMError(.connection, "reset") : LLMError(.http, "bad", httpStatus: 400)
            }
            Issue.record("expected a failure")
        } catch let failure as RetryFailure {
            #expect(failure.reason == .permanent)
            #expect(failure.errors.map(\.kind) == [.connection, .http])
            #expect(failure.last.httpStatus == 400)
        }
    }

    @Test("run rethrows cancellation at once")
    func runCancellation() async {
        let calls = Box(0)
        await #expect(throws: CancellationError.self) {
            try await RetryPolicy().run(sleep: { _ in }) { (_: Int) -> Int in
                calls.value += 1
                throw CancellationError()
            }
        }
        #expect(calls.value == 1)
    }
}

final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
