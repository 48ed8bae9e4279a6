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

            Every option may also be set in the configuration file's "bridge" section (--config \
            FILE, else $LLMSPOOL_CONFIG, else /etc/llmspool/llmspool.json if it exists; see \
            docs/configuration.md); flags override it, and -X properties come after the file's. \
            --print-config shows the result and exits.
            """)

    @OptionGroup var options: SpoolOptions

    @OptionGroup var configFile: ConfigFileOptions

    @Option(help: ArgumentHelp("Kafka bootstrap servers (host:port,…); required here or in the file.", valueName: "LIST"))
    var brokers: String?

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

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env LLMSPOOL_LOG_LEVEL; default info).")
    var logLevel: String?

    @Flag(name: .customLong("print-config"), help: "Print the settings the bridge would run with (JSON) and exit.")
    var printConfig = false

    mutating func validate() throws {
        try applyConfigFile()  // BridgeCommand+Config.swift: the file's settings under the flags
        if Logger.Level(rawValue: logLevel ?? "") == nil { throw ValidationError("--log-level \"\(logLevel ?? "")\" is not a level") }
        if jobsIn == nil, resultsOut == nil { throw ValidationError("give at least one of --jobs-in and --results-out") }
        for p in properties where !p.contains("=") || p.hasPrefix("=") {
            throw ValidationError("-X \"\(p)\" is not key=value")
        }
    }

    func run() throws {
        if printConfig { return try reporting(printEffectiveConfig) }
        let logger = DaemonLogging.bootstrap(label: "llmspool.bridge", level: logLevel ?? "info")
        let pairs = properties.map { p in
            let i = p.firstIndex(of: "=")!
            return (String(p[..<i]), String(p[p.index(after: i)...]))
        }
        let conf = BridgeConfiguration(spoolPath: options.path, brokers: brokers ?? "", group: group, jobsIn: jobsIn,
                                       resultsOut: resultsOut, deadLetterTopic: dlq, properties: pairs)
        signal(SIGTERM) { _ in bridgeStopRequested.store(true, ordering: .relaxed) }
        signal(SIGINT) { _ in bridgeStopRequested.store(true, ordering: .relaxed) }
        try reporting {
            let bridge = try Bridge(configuration: conf, logger: logger)
            try bridge.run { bridgeStopRequested.load(ordering: .relaxed) }
        }
    }
}
