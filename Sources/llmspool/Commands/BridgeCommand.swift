import ArgumentParser
import Bridge
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGTERM/SIGINT; the bridge's loop checks it at least every 500 ms.
private let bridgeStopRequested = Atomic<Bool>(false)

struct BridgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Mirror the spool to and from Kafka (librdkafka).",
        discussion: """
            --jobs-in TOPIC: jobs from the topic (llmspool jobs or Spring's JobEvent {jobId, prompt, \
            userId}) are written durably to new/; a job id already in the spool is not enqueued twice. \
            A message's offset is stored only after its job is durable (at-least-once). Invalid \
            messages are logged and sent to the DLQ (--dlq, default Spring's error.TOPIC.GROUP) with \
            the original bytes and x-original-topic/-partition/-offset and x-exception-message headers.

            --results-out TOPIC: results in done/ are published (key jobId; headers contentType, jobId, \
            userId, tenantId) by an idempotent producer, and recorded in SPOOL/.published/ once the \
            broker confirms them, so a restart does not send them again.

            -X key=value passes any librdkafka property (repeatable; applied after the bridge's \
            defaults). SIGTERM or SIGINT: flush, commit, exit 0. See docs/bridge.md.
            """)

    @OptionGroup var options: SpoolOptions

    @Option(help: ArgumentHelp("Kafka bootstrap servers (host:port,…).", valueName: "LIST"))
    var brokers: String

    @Option(help: ArgumentHelp("Consumer group for --jobs-in (default llmspool-bridge).", valueName: "G"))
    var group: String?

    @Option(name: .customLong("jobs-in"), help: ArgumentHelp("Consume jobs from this topic into new/.", valueName: "TOPIC"))
    var jobsIn: String?

    @Option(name: .customLong("results-out"), help: ArgumentHelp("Publish results in done/ to this topic.", valueName: "TOPIC"))
    var resultsOut: String?

    @Option(help: ArgumentHelp("DLQ for invalid messages on --jobs-in (default error.TOPIC.GROUP; \"\" for none).", valueName: "TOPIC"))
    var dlq: String?

    @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "key=value"))
    var properties: [String] = []

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String = Environment.get("LLMSPOOL_LOG_LEVEL") ?? "info"

    func validate() throws {
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level \"\(logLevel)\" is not a level") }
        if jobsIn == nil, resultsOut == nil { throw ValidationError("give at least one of --jobs-in and --results-out") }
        for p in properties where !p.contains("=") || p.hasPrefix("=") {
            throw ValidationError("-X \"\(p)\" is not key=value")
        }
    }

    func run() throws {
        let logger = DaemonLogging.bootstrap(label: "llmspool.bridge", level: logLevel)
        let pairs = properties.map { p in
            let i = p.firstIndex(of: "=")!
            return (String(p[..<i]), String(p[p.index(after: i)...]))
        }
        let conf = BridgeConfiguration(spoolPath: options.path, brokers: brokers, group: group, jobsIn: jobsIn,
                                       resultsOut: resultsOut, deadLetterTopic: dlq, properties: pairs)
        signal(SIGTERM) { _ in bridgeStopRequested.store(true, ordering: .relaxed) }
        signal(SIGINT) { _ in bridgeStopRequested.store(true, ordering: .relaxed) }
        try reporting {
            let bridge = try Bridge(configuration: conf, logger: logger)
            try bridge.run { bridgeStopRequested.load(ordering: .relaxed) }
        }
    }
}
