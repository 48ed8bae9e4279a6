import CKafka
import Dispatch
import Spool
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Which results `--results-out` publishes.
public enum ResultScope: String, Sendable, CaseIterable {
    /// Every result and dead letter of the spool.
    case all
    /// Only those of jobs that came in from Kafka (`--jobs-in`, marked with `origin.kafka`).
    case kafka
}

/// What a bridge does: which topics it consumes and produces, and how it reaches Kafka.
public struct BridgeConfiguration: Sendable {
    public var spoolPath: String
    public var brokers: String
    /// Consumer group of `jobsIn` (default `llmspool-bridge`).
    public var group: String?
    /// Consume jobs from this topic into `new/`.
    public var jobsIn: String?
    /// Publish the jobs arriving in `new/` to this topic; they wait in `forwarded/` for their results.
    public var jobsOut: String?
    /// Consume results from this topic; those of jobs in `forwarded/` settle them.
    public var resultsIn: String?
    /// Consumer group of `resultsIn` (default `llmspool-results.HOSTNAME`: every host reads every result).
    public var resultsGroup: String?
    /// The consumers' static group membership (`group.instance.id`): nil = derived from the host
    /// name and the spool (``Bridge/defaultInstanceID(spoolPath:)``), "" = none (dynamic
    /// membership). The results consumer adds `.results`.
    public var instanceID: String?
    /// Publish the results in `done/` and dead letters in `failed/` to this topic.
    public var resultsOut: String?
    /// Which results `resultsOut` publishes, and whose deltas `deltasOut` publishes.
    public var resultScope: ResultScope
    /// Publish the partial answers of streamed jobs (`"stream": true`) to this topic as they are
    /// written: one message per delta, restart and end, key jobId.
    public var deltasOut: String?
    /// Where invalid messages from `jobsIn` go (default Spring's `error.<topic>.<group>`); "" turns it off.
    public var deadLetterTopic: String?
    /// librdkafka properties (`-X key=value`), applied after the bridge's defaults.
    public var properties: [(String, String)]
    /// Most jobs held for `jobsOut` and not yet in `forwarded/` (each holds a descriptor; the
    /// bridge raises its open-file limit and stays below it).
    public var maxForwarding: Int
    /// Enough to keep full batches going to Kafka while earlier ones are confirmed and moved.
    public static let defaultMaxForwarding = 5000
    /// The longest a stop may take, from the stop request to the end of ``Bridge/run()``:
    /// closing the consumers, flushing the producer, putting back what was held. What is not done
    /// by then is left (and said so); see ``BridgeStopIncomplete``.
    public var stopTimeout: Duration
    /// Below systemd's `TimeoutStopSec=20s` in `llmspool-bridge.service`.
    public static let defaultStopTimeout = Duration.seconds(15)
    /// Back-pressure of `jobsIn`: at most this many jobs it brought in wait in `new/` and `cur/`;
    /// at the limit the bridge leaves the consumer group (the other members take its partitions)
    /// and joins again below half of it. Nil: no limit.
    public var maxQueued: Int?

    public init(
        spoolPath: String, brokers: String, group: String? = nil, jobsIn: String? = nil, jobsOut: String? = nil,
        resultsIn: String? = nil, resultsGroup: String? = nil, instanceID: String? = nil, resultsOut: String? = nil,
        resultScope: ResultScope = .all, deadLetterTopic: String? = nil,
        properties: [(String, String)] = [], maxForwarding: Int = BridgeConfiguration.defaultMaxForwarding,
        stopTimeout: Duration = BridgeConfiguration.defaultStopTimeout, maxQueued: Int? = nil, deltasOut: String? = nil
    ) {
        self.spoolPath = spoolPath
        self.brokers = brokers
        self.group = group
        self.jobsIn = jobsIn
        self.jobsOut = jobsOut
        self.resultsIn = resultsIn
        self.resultsGroup = resultsGroup
        self.instanceID = instanceID
        self.resultsOut = resultsOut
        self.resultScope = resultScope
        self.deadLetterTopic = deadLetterTopic
        self.properties = properties
        self.maxForwarding = maxForwarding
        self.stopTimeout = stopTimeout
        self.maxQueued = maxQueued
        self.deltasOut = deltasOut
    }
}

/// A stop that could not do everything within ``BridgeConfiguration/stopTimeout`` (or found the
/// spool gone): what was left, one item per part. Nothing is lost — each item says what happens
/// to it on the next start — but the exit should not look clean.
public struct BridgeStopIncomplete: Error, CustomStringConvertible, Sendable {
    public var left: [String]
    public var description: String { "the bridge stopped with work left: " + left.joined(separator: "; ") }
}

/// Ends a bridge's ``Bridge/run()`` from any thread (a signal handler's queue, a test).
public final class BridgeStopper: Sendable {
    private let flag = Atomic<Bool>(false)
    private let requested = Atomic<Int64>(0)
    private let step = Mutex<String>("running")
    private let watcher: SpoolWatcher

    init(watcher: SpoolWatcher) { self.watcher = watcher }

    public func stop() {
        _ = requested.compareExchange(expected: 0, desired: Bridge.nowMs(), ordering: .relaxed)
        flag.store(true, ordering: .releasing)
        watcher.wake()
    }

    public var isStopping: Bool { flag.load(ordering: .acquiring) }

    /// When ``stop()`` was first called (monotonic ms), or 0.
    var requestedAt: Int64 { requested.load(ordering: .relaxed) }

    /// What the bridge is doing now, for a line logged by whoever gives up waiting for it
    /// (a watchdog after a stop request): e.g. "closing the Kafka consumers".
    public var currentStep: String { step.withLock { $0 } }

    func note(_ what: String) { step.withLock { $0 = what } }
}
