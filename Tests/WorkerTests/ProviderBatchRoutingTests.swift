import JSON
import Spool
import Testing

@testable import Worker

/// The provider batcher's pure decisions: which jobs it takes, when they go live, the groups
/// within the provider's limits, the poll backoff, and the `providerBatch` settings.
@Suite("Provider batch routing")
struct ProviderBatchRoutingTests {
    static let now: Int64 = 1_800_000_000_000
    static let hour: Int64 = 3_600_000

    func job(deadlineIn ms: Int64?) -> Job {
        var j = Job(prompt: "p")
        if let ms { j.deadline = Timestamp.format(milliseconds: Self.now + ms) }
        return j
    }

    var on: ProviderBatchSettings {
        var s = ProviderBatchSettings()
        s.enabled = true
        return s
    }

    @Test func takesOnlyDeadlinesBeyondTheWindow() {
        #expect(ProviderBatchRouting.batches(job(deadlineIn: 25 * Self.hour), on, nowMs: Self.now))
        #expect(!ProviderBatchRouting.batches(job(deadlineIn: 23 * Self.hour), on, nowMs: Self.now))
        #expect(!ProviderBatchRouting.batches(job(deadlineIn: nil), on, nowMs: Self.now))
        #expect(!ProviderBatchRouting.batches(job(deadlineIn: 25 * Self.hour), ProviderBatchSettings(), nowMs: Self.now), "off by default")
    }

    @Test func aJobGivenBackIsNeverBatchedAgain() {
        var j = job(deadlineIn: 48 * Self.hour)
        j.history.append(.object(["kind": .string(ProviderBatchRouting.returnedEvent), "message": .string("failed")]))
        #expect(!ProviderBatchRouting.batches(j, on, nowMs: Self.now))
    }

    @Test func frontDoorRequestsUseTheirBatchWindow() throws {
        var j = try Job(json: .object(["prompt": .string("p"), "batch": .object(["id": .string("batch_x")])]))
        j.submittedAt = Timestamp.format(milliseconds: Self.now)
        #expect(ProviderBatchRouting.deadlineMs(j) == Self.now + 24 * Self.hour)
        var shorter = on
        shorter.window = .milliseconds(12 * Self.hour)
        #expect(ProviderBatchRouting.batches(j, shorter, nowMs: Self.now))
        #expect(!ProviderBatchRouting.batches(j, on, nowMs: Self.now), "a 24 h window does not fit a 24 h provider window")
    }

    @Test func goesLiveInsideTheMargin() {
        #expect(ProviderBatchRouting.mustGoLive(job(deadlineIn: Self.hour - 1), on, nowMs: Self.now))
        #expect(!ProviderBatchRouting.mustGoLive(job(deadlineIn: 2 * Self.hour), on, nowMs: Self.now))
        #expect(!ProviderBatchRouting.mustGoLive(job(deadlineIn: nil), on, nowMs: Self.now))
    }

    @Test func groupsKeepToTheProviderLimits() {
        let r = ProviderBatchRouting.groups(sizes: [10, 10, 10, 10, 10], maxRequests: 2, maxBytes: 1000)
        #expect(r.groups == [0..<2, 2..<4, 4..<5])
        let b = ProviderBatchRouting.groups(sizes: [40, 40, 40], maxRequests: 100, maxBytes: 90)  // 41 bytes a line with its newline
        #expect(b.groups == [0..<2, 2..<3])
        let big = ProviderBatchRouting.groups(sizes: [10, 200, 10], maxRequests: 100, maxBytes: 100)
        #expect(big.groups == [0..<1, 2..<3])
        #expect(big.tooLarge == [1])
        #expect(ProviderBatchRouting.groups(sizes: [], maxRequests: 1, maxBytes: 1).groups.isEmpty)
    }

    @Test func pollsBackOffToTheCap() {
        var s = on
        s.poll = .seconds(1)
        s.maxPoll = .seconds(5)
        var waits: [Int64] = []
        var last: Int64?
        for _ in 0..<5 {
            last = ProviderBatchRouting.nextPoll(after: last, s)
            waits.append(last!)
        }
        #expect(waits == [1000, 2000, 4000, 5000, 5000])
    }

    @Test func settingsRoundTripAndRefuseNonsense() throws {
        var c = WorkerConfiguration()
        try c.apply(
            json: .object([
                "providerBatch": .object([
                    "enabled": .bool(true), "windowSeconds": .integer(172_800), "liveMarginSeconds": .integer(7200), "maxRequests": .integer(10),
                ])
            ]), source: "test")
        #expect(c.providerBatch.enabled && c.providerBatch.window == .seconds(172_800) && c.providerBatch.maxRequests == 10)
        var d = WorkerConfiguration()
        try d.apply(json: c.json(), source: "round trip")
        #expect(d.providerBatch == c.providerBatch)
        #expect(throws: DocumentError.self) {
            var e = WorkerConfiguration()
            try e.apply(json: .object(["providerBatch": .object(["windowSeconds": .integer(60), "liveMarginSeconds": .integer(60)])]), source: "t")
        }
        #expect(throws: DocumentError.self) {
            var e = WorkerConfiguration()
            try e.apply(json: .object(["providerBatch": .object(["window": .integer(60)])]), source: "t")
        }
    }
}
