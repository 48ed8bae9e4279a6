import Basics
import JSON
public import Settings
public import Spool

/// The `worker.providerBatch` settings: whether, and when, jobs go to the provider's Batch API.
public struct ProviderBatchSettings: Sendable, Equatable {
    /// On with `--provider-batch` or `providerBatch.enabled` (default off).
    public var enabled = false
    /// A job goes to a provider batch when its deadline is further away than this (24 h: the
    /// provider's completion window).
    public var window: Duration = .seconds(86_400)
    /// A job waiting in a provider batch is taken back and called live when its deadline is
    /// closer than this (1 h).
    public var liveMargin: Duration = .seconds(3600)
    /// The `completion_window` asked of the provider (OpenAI accepts only `24h`).
    public var completionWindow = "24h"
    /// The first poll of a submitted batch comes this long after submission; each later one
    /// waits twice as long as the one before, up to `maxPoll` (60 s, 10 min).
    public var poll: Duration = .seconds(60)
    public var maxPoll: Duration = .seconds(600)
    /// How often `new/` is looked through for jobs to batch (10 s: their deadlines are distant).
    public var scan: Duration = .seconds(10)
    /// The provider's limits per input file: requests (lines) and bytes (OpenAI: 50,000 and 200 MB).
    public var maxRequests = 50_000
    public var maxBytes = 200_000_000
    /// The largest output or error file read back (512 MiB); a larger one sends its jobs live.
    public var maxOutputBytes = 512 << 20

    public init() {}

    /// The `providerBatch` object's settings (docs/configuration.md; a test checks the table).
    public static let settings: [Setting<ProviderBatchSettings>] = [
        .bool("enabled", \.enabled, flag: "--provider-batch --no-provider-batch", "batch jobs whose deadline is further away than `windowSeconds`"),
        .seconds(
            "windowSeconds", \.window, 1...(30 * 86_400), flag: "--provider-batch-window",
            "the provider's window: only deadlines further away are batched"),
        .seconds(
            "liveMarginSeconds", \.liveMargin, 0...(30 * 86_400), type: "seconds, 0–2592000, below `windowSeconds`",
            "a batched job whose deadline is nearer than this is called live instead (with `--provider-batch-window` below it, half the window)"),
        .string(
            "completionWindow", \.completionWindow, "the `completion_window` asked of the provider (OpenAI accepts only `24h`)",
            check: { s, field throws(DocumentError) in
                if s.isEmpty || s.utf8.count > 16 { throw DocumentError(field: field, "must be a window such as \"24h\"") }
            }),
        .seconds("pollSeconds", \.poll, 0.01...86_400, "first poll of a submitted batch, this long after submission"),
        .seconds(
            "maxPollSeconds", \.maxPoll, 0.01...86_400, type: "seconds, 0.01–86400, not below `pollSeconds`",
            "each later poll waits twice as long as the one before, up to this"),
        .seconds("scanSeconds", \.scan, 0.05...3600, "how often `new/` is looked through for jobs to batch"),
        .integer("maxRequests", \.maxRequests, 1...1_000_000, "requests (lines) per input file at most (OpenAI: 50,000)"),
        .integer("maxBytes", \.maxBytes, 1024...2_000_000_000, "bytes per input file at most (OpenAI: 200 MB)"),
        .integer(
            "maxOutputBytes", \.maxOutputBytes, 1024...2_000_000_000,
            "largest output or error file read back; a larger one sends its jobs live"),
    ]

    /// The declaration of `key` (a programming error if there is none).
    public static func setting(_ key: String) -> Setting<ProviderBatchSettings> {
        Setting.named(key, in: settings)
    }

    /// Reads the `providerBatch` object; a key left out keeps its value.
    mutating func apply(_ v: JSONValue) throws(DocumentError) {
        guard case .object(let o) = v else {
            throw DocumentError(field: "providerBatch", "must be an object (\(Self.settings.map(\.key).joined(separator: ", ")))")
        }
        var p = self
        try Setting.apply(o, prefix: "providerBatch.", name: "providerBatch", Self.settings, to: &p)
        if p.liveMargin >= p.window {
            throw DocumentError(field: "providerBatch.liveMarginSeconds", "must be below windowSeconds (a job must have time to wait in a provider batch)")
        }
        if p.maxPoll < p.poll { throw DocumentError(field: "providerBatch.maxPollSeconds", "must not be below pollSeconds") }
        self = p
    }

    func json() -> JSONValue { Setting.section(Self.settings, of: self) }
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
        return d - nowMs > settings.window.wholeMilliseconds
    }

    /// Whether a job waiting in a provider batch must now be called live instead.
    public static func mustGoLive(_ job: Job, _ settings: ProviderBatchSettings, nowMs: Int64) -> Bool {
        guard let d = deadlineMs(job) else { return false }
        return d - nowMs < settings.liveMargin.wholeMilliseconds
    }

    /// The next wait between polls: twice the last, between `poll` and `maxPoll`.
    static func nextPoll(after lastMs: Int64?, _ settings: ProviderBatchSettings) -> Int64 {
        guard let lastMs else { return settings.poll.wholeMilliseconds }
        return min(settings.maxPoll.wholeMilliseconds, max(settings.poll.wholeMilliseconds, lastMs * 2))
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
