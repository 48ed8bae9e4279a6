import JSON
public import Spool

/// The `worker.providerBatch` settings: whether, and when, jobs go to the provider's Batch API.
public struct ProviderBatchSettings: Sendable, Equatable {
    /// On with `--provider-batch` or `providerBatch.enabled` (default off).
    public var enabled = false
    /// A job goes to a provider batch when its deadline is further away than this (24 h: the
    /// provider's completion window).
    public var windowMs: Int64 = 86_400_000
    /// A job waiting in a provider batch is taken back and called live when its deadline is
    /// closer than this (1 h).
    public var liveMarginMs: Int64 = 3_600_000
    /// The `completion_window` asked of the provider (OpenAI accepts only `24h`).
    public var completionWindow = "24h"
    /// The first poll of a submitted batch comes this long after submission; each later one
    /// waits twice as long as the one before, up to `maxPollMs` (60 s, 10 min).
    public var pollMs: Int64 = 60_000
    public var maxPollMs: Int64 = 600_000
    /// How often `new/` is looked through for jobs to batch (10 s: their deadlines are distant).
    public var scanMs: Int64 = 10_000
    /// The provider's limits per input file: requests (lines) and bytes (OpenAI: 50,000 and 200 MB).
    public var maxRequests = 50_000
    public var maxBytes = 200_000_000
    /// The largest output or error file read back (512 MiB); a larger one sends its jobs live.
    public var maxOutputBytes = 512 << 20

    public init() {}

    static let keys = [
        "enabled", "windowSeconds", "liveMarginSeconds", "completionWindow", "pollSeconds", "maxPollSeconds", "scanSeconds",
        "maxRequests", "maxBytes", "maxOutputBytes",
    ]

    /// Reads the `providerBatch` object; a key left out keeps its value.
    mutating func apply(_ v: JSONValue) throws(DocumentError) {
        guard case .object(let o) = v else { throw DocumentError(field: "providerBatch", "must be an object (\(Self.keys.joined(separator: ", ")))") }
        var p = self
        for m in o.members {
            let at = "providerBatch." + m.key
            func seconds(_ range: ClosedRange<Double>) throws(DocumentError) -> Int64 {
                guard let d = m.value.doubleValue, range.contains(d) else {
                    throw DocumentError(field: at, "must be a number of seconds from \(range.lowerBound) to \(range.upperBound)")
                }
                return Int64((d * 1000).rounded())
            }
            func count(_ range: ClosedRange<Int>) throws(DocumentError) -> Int {
                guard let n = m.value.intValue, range.contains(n) else {
                    throw DocumentError(field: at, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
                }
                return n
            }
            switch m.key {
            case "enabled": guard let e = m.value.boolValue else { throw DocumentError(field: at, "must be true or false") }; p.enabled = e
            case "windowSeconds": p.windowMs = try seconds(1...30 * 86_400)
            case "liveMarginSeconds": p.liveMarginMs = try seconds(0...30 * 86_400)
            case "completionWindow":
                guard let s = m.value.stringValue, !s.isEmpty, s.utf8.count <= 16 else { throw DocumentError(field: at, "must be a window such as \"24h\"") }
                p.completionWindow = s
            case "pollSeconds": p.pollMs = try seconds(0.01...86_400)
            case "maxPollSeconds": p.maxPollMs = try seconds(0.01...86_400)
            case "scanSeconds": p.scanMs = try seconds(0.05...3600)
            case "maxRequests": p.maxRequests = try count(1...1_000_000)
            case "maxBytes": p.maxBytes = try count(1024...2_000_000_000)
            case "maxOutputBytes": p.maxOutputBytes = try count(1024...2_000_000_000)
            default:
                throw DocumentError(field: at, "unknown setting\(DocumentError.didYouMean(m.key, in: Self.keys)) (\(Self.keys.joined(separator: ", ")))")
            }
        }
        if p.liveMarginMs >= p.windowMs {
            throw DocumentError(field: "providerBatch.liveMarginSeconds", "must be below windowSeconds (a job must have time to wait in a provider batch)")
        }
        if p.maxPollMs < p.pollMs { throw DocumentError(field: "providerBatch.maxPollSeconds", "must not be below pollSeconds") }
        self = p
    }

    func json() -> JSONValue {
        func seconds(_ ms: Int64) -> JSONValue { .double(Double(ms) / 1000) }
        return .object([
            "enabled": .bool(enabled), "windowSeconds": seconds(windowMs), "liveMarginSeconds": seconds(liveMarginMs),
            "completionWindow": .string(completionWindow), "pollSeconds": seconds(pollMs), "maxPollSeconds": seconds(maxPollMs),
            "scanSeconds": seconds(scanMs), "maxRequests": .integer(maxRequests), "maxBytes": .integer(maxBytes),
            "maxOutputBytes": .integer(maxOutputBytes),
        ])
    }
}

/// Which path a job takes: pure decisions on its deadline, no disk and no network.
public enum ProviderBatchRouting {
    /// The history entry of a job a provider batch gave back to the live path: such a job is
    /// never batched again.
    public static let returnedEvent = "providerBatchReturned"
    /// The Batch API front door's completion window (docs/batch.md), for its jobs that carry no deadline.
    static let frontDoorWindowMs: Int64 = 86_400_000

    /// The job's deadline (wall-clock milliseconds): its `deadline`, else, for a request of a
    /// batch taken in by the Batch API front door, its submission time plus the batch's window.
    public static func deadlineMs(_ job: Job) -> Int64? {
        if let d = job.deadline { return Timestamp.parse(d) }
        guard job.extra.contains(where: { $0.key == "batch" }), let s = job.submittedAt.flatMap(Timestamp.parse) else { return nil }
        return s + frontDoorWindowMs
    }

    /// Whether a provider batch gave the job back already.
    public static func wasReturned(_ job: Job) -> Bool {
        job.history.contains { $0["kind"]?.stringValue == returnedEvent }
    }

    /// Whether the provider batcher takes the job (the live loop then leaves it in `new/`): batching
    /// is on, the job was never given back by a provider batch, and its deadline is further away
    /// than the provider's window.
    public static func batches(_ job: Job, _ settings: ProviderBatchSettings, nowMs: Int64) -> Bool {
        guard settings.enabled, !wasReturned(job), let d = deadlineMs(job) else { return false }
        return d - nowMs > settings.windowMs
    }

    /// Whether a job waiting in a provider batch must now be called live instead.
    public static func mustGoLive(_ job: Job, _ settings: ProviderBatchSettings, nowMs: Int64) -> Bool {
        guard let d = deadlineMs(job) else { return false }
        return d - nowMs < settings.liveMarginMs
    }

    /// The next wait between polls: twice the last, between `pollMs` and `maxPollMs`.
    static func nextPoll(after lastMs: Int64?, _ settings: ProviderBatchSettings) -> Int64 {
        guard let lastMs else { return settings.pollMs }
        return min(settings.maxPollMs, max(settings.pollMs, lastMs * 2))
    }

    /// Splits request lines (already in order, each with its byte size) into groups within the
    /// provider's limits: at most `maxRequests` lines and `maxBytes` bytes (lines and their newlines)
    /// each. A line larger than `maxBytes` alone is returned in `tooLarge`.
    static func groups(sizes: [Int], maxRequests: Int, maxBytes: Int) -> (groups: [Range<Int>], tooLarge: [Int]) {
        var groups: [Range<Int>] = [], tooLarge: [Int] = []
        var count = 0, bytes = 0
        var members: [Int] = []
        func close() {
            if !members.isEmpty { groups.append(members.first!..<(members.last! + 1)) }
            members = []
            count = 0
            bytes = 0
        }
        for (k, size) in sizes.enumerated() {
            let line = size + 1
            if line > maxBytes {
                close()
                tooLarge.append(k)
                continue
            }
            if count + 1 > maxRequests || bytes + line > maxBytes { close() }
            members.append(k)
            count += 1
            bytes += line
        }
        close()
        return (groups, tooLarge)
    }
}
