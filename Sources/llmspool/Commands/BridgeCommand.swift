import ArgumentParser
import Bridge
import Daemon
import Dispatch
import Logging
import ServiceLifecycle
import Settings
import Spool
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

struct BridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Mirror the spool to and from Kafka (librdkafka).",
        discussion: """
            Give any combination of the five directions:

            --jobs-in TOPIC: jobs from the topic (llmspool jobs or Spring's JobEvent {jobId, prompt, \
            userId}) are written durably to new/; a job id already in the spool is not enqueued twice. \
            A message's offset is stored only after its job is durable (at-least-once). Invalid \
            messages are logged and sent to the DLQ (--dlq, default Spring's error.TOPIC.GROUP) with \
            the original bytes and x-original-topic/-partition/-offset and x-exception-message headers.

            --jobs-out TOPIC: jobs arriving in new/ are locked, published (key jobId) and, once the \
            broker confirms them, moved to forwarded/, where `llmspool status` and `show` still see them.

            --results-in TOPIC: results (llmspool result documents or Spring's JobResult {jobId, \
            response}) of jobs in forwarded/ are written to done/ or failed/; others are skipped. Its \
            consumer group (--results-group) defaults to llmspool-results.HOSTNAME, so every host reads \
            every result.

            The consumers join their groups as static members (group.instance.id, --instance-id, \
            default from the host name and the spool's path): a bridge restarted within the session \
            timeout gets its partitions back without a rebalance of the other members.

            --results-out TOPIC: results in done/ and dead letters in failed/ are published (key jobId; \
            headers contentType, jobId, userId, tenantId) by an idempotent producer, and recorded in \
            SPOOL/.published/ once confirmed, so a restart does not send them again. --results-of kafka \
            limits this to jobs that came from --jobs-in.

            --deltas-out TOPIC: the answers of streamed jobs ("stream": true) are published as they \
            are written, for a service that pushes them on to its own clients: key jobId (one job's \
            messages are in order on one partition), value {"jobId", "type": "delta", "offset", \
            "text"}, {"type": "restart", "offset", "attempt"} (what came before is void), and last \
            {"type": "done", "textBytes"} or {"type": "failed"}. At-least-once: after a restart of the \
            bridge a running job's deltas are sent again from its start, and consumers drop those \
            whose offset they have passed. A job that ended while the bridge was down gets none \
            (its result goes through --results-out). --results-of kafka limits this too.

            --max-queued N (with --jobs-in): back-pressure. When N jobs this bridge brought in wait \
            in new/ and cur/ (its worker is stopped or slow), it leaves its consumer group, so the \
            group's other members take its partitions, and joins again below N/2.

            -X key=value passes any librdkafka property (repeatable; applied after the bridge's \
            defaults). SIGTERM or SIGINT: flush, commit, leave unconfirmed jobs in new/, exit 0. \
            The stop takes at most --stop-timeout (default 15s); what is not done by then (a \
            consumer close no broker answers, messages not confirmed) is left, named in the log, \
            and the exit status is 75; a second signal exits at once, also with 75. \
            See docs/bridge.md.

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

    @Option(name: .customLong("jobs-out"), help: ArgumentHelp("Publish jobs arriving in new/ to this topic.", valueName: "TOPIC"))
    var jobsOut: String?

    @Option(name: .customLong("results-in"), help: ArgumentHelp("Consume results of forwarded jobs from this topic.", valueName: "TOPIC"))
    var resultsIn: String?

    @Option(name: .customLong("results-group"), help: ArgumentHelp("Consumer group for --results-in (default llmspool-results.HOSTNAME).", valueName: "G"))
    var resultsGroup: String?

    @Option(
        name: .customLong("instance-id"),
        help: ArgumentHelp(
            "Static group membership of the consumers (group.instance.id; default llmspool.HOSTNAME.HASH-OF-SPOOL-PATH; \"\" for none).", valueName: "ID"))
    var instanceID: String?

    @Option(name: .customLong("results-out"), help: ArgumentHelp("Publish results in done/ and failed/ to this topic.", valueName: "TOPIC"))
    var resultsOut: String?

    @Option(
        name: .customLong("deltas-out"),
        help: ArgumentHelp("Publish the partial answers of streamed jobs to this topic as they are written.", valueName: "TOPIC"))
    var deltasOut: String?

    @Option(
        name: .customLong("results-of"),
        help: ArgumentHelp("Which results --results-out publishes: all, or kafka (jobs from --jobs-in) (default all).", valueName: "SCOPE"))
    var resultsOf: String?

    @Option(help: ArgumentHelp("DLQ for invalid messages on --jobs-in (default error.TOPIC.GROUP; \"\" for none).", valueName: "TOPIC"))
    var dlq: String?

    @Option(name: .customLong("max-forwarding"), help: "Most jobs held for Kafka at once with --jobs-out, sent or being moved to forwarded/ (default 5000).")
    var maxForwarding: Int = BridgeConfiguration.defaultMaxForwarding

    @Option(
        name: .customLong("max-queued"),
        help: ArgumentHelp(
            "With --jobs-in: leave the consumer group while N jobs from Kafka wait in new/ and cur/; join again below N/2 (default: no limit).",
            valueName: "N"))
    var maxQueued: Int?

    @Option(name: .customShort("X"), help: ArgumentHelp("A librdkafka property (repeatable).", valueName: "key=value"))
    var properties: [String] = []

    @Option(
        name: .customLong("metrics-address"),
        help: ArgumentHelp(
            "Serve Prometheus metrics at GET /metrics on this address (e.g. 127.0.0.1:9465; default off).",
            valueName: "HOST:PORT"))
    var metricsAddress: String?

    @Option(
        name: .customLong("stop-timeout"),
        help: ArgumentHelp("On SIGTERM, the longest the stop may take before the bridge exits anyway (default 15s).", valueName: "DURATION"))
    var stopTimeout: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env LLMSPOOL_LOG_LEVEL; default info).")
    var logLevel: String?

    @Flag(name: .customLong("print-config"), help: "Print the settings the bridge would run with (JSON) and exit.")
    var printConfig = false

    mutating func validate() throws {
        try applyConfigFile()  // BridgeCommand+Config.swift: the file's settings under the flags
        if Logger.Level(rawValue: logLevel ?? "") == nil { throw ValidationError("--log-level \"\(logLevel ?? "")\" is not a level") }
        if jobsIn == nil, jobsOut == nil, resultsIn == nil, resultsOut == nil, deltasOut == nil {
            throw ValidationError("give at least one of --jobs-in, --jobs-out, --results-in, --results-out and --deltas-out")
        }
        if let r = resultsOf, ResultScope(rawValue: r) == nil { throw ValidationError("--results-of must be all or kafka, not \"\(r)\"") }
        if !(1...100_000).contains(maxForwarding) { throw ValidationError("--max-forwarding must be 1 to 100000") }
        if let n = maxQueued, !BridgeSettings.maxQueuedRange.contains(n) { throw ValidationError("--max-queued must be 1 to 1000000") }
        for p in properties where !p.contains("=") || p.hasPrefix("=") {
            throw ValidationError("-X \"\(p)\" is not key=value")
        }
        if let a = metricsAddress, MetricsServer.parse(a) == nil {
            throw ValidationError("--metrics-address \"\(a)\" is not HOST:PORT (e.g. 127.0.0.1:9465)")
        }
        if let id = instanceID, !BridgeSettings.isInstanceID(id) {
            throw ValidationError("--instance-id \"\(id)\" is not a Kafka group.instance.id (letters, digits, '.', '_', '-'; at most 240) or \"\"")
        }
        if let t = stopTimeout, !(1_000...3_600_000).contains(HumanDuration.parseMilliseconds(t) ?? 0) {
            throw ValidationError("--stop-timeout \"\(t)\" is not a duration from 1s to 1h")
        }
    }

    var stopTimeoutMilliseconds: Int64 {
        stopTimeout.flatMap(HumanDuration.parseMilliseconds) ?? BridgeConfiguration.defaultStopTimeoutMs
    }

    func run() async throws {
        if printConfig { return try reporting(printEffectiveConfig) }
        let logger = DaemonLogging.bootstrap(label: "llmspool.bridge", level: logLevel ?? "info")
        let pairs = properties.map { p in
            let i = p.firstIndex(of: "=")!
            return (String(p[..<i]), String(p[p.index(after: i)...]))
        }
        let conf = BridgeConfiguration(
            spoolPath: options.path, brokers: brokers ?? "", group: group, jobsIn: jobsIn, jobsOut: jobsOut,
            resultsIn: resultsIn, resultsGroup: resultsGroup, instanceID: instanceID, resultsOut: resultsOut,
            resultScope: resultsOf.flatMap(ResultScope.init(rawValue:)) ?? .all, deadLetterTopic: dlq,
            properties: pairs, maxForwarding: maxForwarding, stopTimeoutMs: stopTimeoutMilliseconds, maxQueued: maxQueued,
            deltasOut: deltasOut)
        // Signals first: a SIGTERM while the bridge is still connecting must stop it cleanly too.
        // The service group turns the first SIGTERM or SIGINT into a graceful shutdown; the
        // watchdog ends a stop that overruns its limit (stuck in librdkafka, or on a spool that
        // hangs), or at once on a second signal: the bridge's own steps are bounded a little below it.
        let current = Mutex<BridgeStopper?>(nil)
        let watchdog = StopWatchdog(what: "bridge", limitMs: stopTimeoutMilliseconds + 500, logger: logger) {
            current.withLock { $0?.currentStep } ?? "starting (connecting to Kafka)"
        }
        let sources = [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { watchdog.signalled() }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        let left: [String]
        do {
            let server = try metricsAddress.map { try WorkerCommand.startMetrics($0) }
            server?.start()
            defer { server?.stop() }
            if let server { logger.info("serving metrics", metadata: ["address": "http://\(server.address)/metrics"]) }
            let notifier = SystemdNotifier()
            var onTick: (@Sendable () -> Void)?
            let every = notifier?.watchdogIntervalMs
            if let notifier, let every {
                let last = LastTick()
                onTick = {
                    let now = Timestamp.nowMilliseconds()
                    if now - last.value.load(ordering: .relaxed) >= every {
                        last.value.store(now, ordering: .relaxed)
                        notifier.notify("WATCHDOG=1")
                    }
                }
            }
            var onReady: (@Sendable () -> Void)?
            if let notifier { onReady = { notifier.notify("READY=1") } }
            let service = try BridgeService(
                configuration: conf, logger: logger, onReady: onReady,
                onTick: onTick, tickMilliseconds: every)
            current.withLock { $0 = service.stopper }
            let services: [any Service] = (server.map { [$0] } ?? []) + [service]
            let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            defer { notifier?.notify("STOPPING=1") }
            try await group.run()
            left = service.leftWork
        } catch {
            let f = Failed(error)
            Output.error(f.message)
            throw ExitCode(f.code)
        }
        // A stop that left work (already logged by the bridge) exits 75.
        if !left.isEmpty { throw ExitCode(ExitStatus.temporary) }
    }
}

/// When the bridge last told systemd's watchdog it is alive (monotonic ms).
private final class LastTick: Sendable {
    let value = Atomic<Int64>(0)
}
