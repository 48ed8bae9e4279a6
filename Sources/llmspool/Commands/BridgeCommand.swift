import ArgumentParser
import Basics
import Bridge
import Daemon
import Dispatch
import JSON
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

    // Each flag's help and rule come from its setting's declaration (BridgeSettings.settings).

    @Option(help: Self.help("brokers", valueName: "LIST"))
    var brokers: String?

    @Option(help: Self.help("group", valueName: "G"))
    var group: String?

    @Option(name: .customLong("jobs-in"), help: Self.help("jobsIn", valueName: "TOPIC"))
    var jobsIn: String?

    @Option(name: .customLong("jobs-out"), help: Self.help("jobsOut", valueName: "TOPIC"))
    var jobsOut: String?

    @Option(name: .customLong("results-in"), help: Self.help("resultsIn", valueName: "TOPIC"))
    var resultsIn: String?

    @Option(name: .customLong("results-group"), help: Self.help("resultsGroup", valueName: "G"))
    var resultsGroup: String?

    @Option(name: .customLong("instance-id"), help: Self.help("instanceId", valueName: "ID"))
    var instanceID: String?

    @Option(name: .customLong("results-out"), help: Self.help("resultsOut", valueName: "TOPIC"))
    var resultsOut: String?

    @Option(name: .customLong("results-of"), help: Self.help("resultsOf", valueName: "SCOPE"))
    var resultsOf: String?

    @Option(name: .customLong("deltas-out"), help: Self.help("deltasOut", valueName: "TOPIC"))
    var deltasOut: String?

    @Option(help: Self.help("deadLetterTopic", valueName: "TOPIC"))
    var dlq: String?

    @Option(name: .customLong("max-forwarding"), help: Self.help("maxForwarding", valueName: "N"))
    var maxForwarding: String?

    @Option(name: .customLong("max-queued"), help: Self.help("maxQueued", valueName: "N"))
    var maxQueued: String?

    @Option(
        name: .customShort("X"),
        help: ArgumentHelp("A librdkafka property (repeatable; after the bridge's defaults and the file's properties).", valueName: "key=value"))
    var properties: [String] = []

    @Option(name: .customLong("metrics-address"), help: Self.help("metricsAddress", valueName: "HOST:PORT"))
    var metricsAddress: String?

    @Option(name: .customLong("stop-timeout"), help: Self.help("stopTimeoutSeconds", valueName: "DURATION"))
    var stopTimeout: String?

    @Option(name: .customLong("log-level"), help: Self.help("logLevel", valueName: "LEVEL"))
    var logLevel: String?

    @Flag(name: .customLong("print-config"), help: "Print the settings the bridge would run with (JSON) and exit.")
    var printConfig = false

    /// A flag's help, from its setting's declaration.
    static func help(_ key: String, valueName: String) -> ArgumentHelp {
        SettingFlags.help(BridgeSettings.setting(key), defaults: BridgeSettings(), valueName: valueName)
    }

    /// The flags given, each with its setting, in the order of the settings.
    var flags: [(setting: Setting<BridgeSettings>, flag: String, text: String)] {
        let given: [String: String?] = [
            "brokers": brokers, "group": group, "jobsIn": jobsIn, "jobsOut": jobsOut, "resultsIn": resultsIn,
            "resultsGroup": resultsGroup, "instanceId": instanceID, "resultsOut": resultsOut, "resultsOf": resultsOf, "deltasOut": deltasOut,
            "deadLetterTopic": dlq, "metricsAddress": metricsAddress, "logLevel": logLevel, "stopTimeoutSeconds": stopTimeout,
            "maxForwarding": maxForwarding, "maxQueued": maxQueued,
        ]
        return SettingFlags.given(given, in: BridgeSettings.settings)
    }

    /// `-X key=value`, each checked.
    var propertyFlags: [BridgeSettings.Property] {
        get throws {
            try properties.map { p in
                guard let property = BridgeSettings.property(p) else { throw ValidationError("-X \"\(p)\" is not key=value") }
                return property
            }
        }
    }

    func validate() throws {
        var scratch = BridgeSettings()
        for f in flags {
            do { try f.setting.apply(text: f.text, from: f.flag, to: &scratch) } catch { throw ValidationError(error.description) }
        }
        _ = try propertyFlags
    }

    func run() async throws {
        let spoolPath: String
        let settings: BridgeSettings
        do { (spoolPath, settings) = try resolve() } catch {
            let f = Failed(error)
            Output.error(f.message)
            throw ExitCode(f.code)
        }
        if printConfig {
            return Output.line(JSONValue.object(["spool": .string(spoolPath), "bridge": settings.json()]).prettyText())
        }
        let logger = DaemonLogging.bootstrap(label: "llmspool.bridge", level: settings.logLevel)
        let conf = BridgeConfiguration(
            spoolPath: spoolPath, brokers: settings.brokers ?? "", group: settings.group, jobsIn: settings.jobsIn,
            jobsOut: settings.jobsOut, resultsIn: settings.resultsIn, resultsGroup: settings.resultsGroup,
            instanceID: settings.instanceID, resultsOut: settings.resultsOut,
            resultScope: settings.resultsOf == .kafka ? .kafka : .all, deadLetterTopic: settings.effectiveDeadLetterTopic,
            properties: settings.properties.map { ($0.key, $0.value) }, maxForwarding: settings.maxForwarding,
            stopTimeout: settings.stopTimeout, maxQueued: settings.maxQueued, deltasOut: settings.deltasOut)
        // Signals first: a SIGTERM while the bridge is still connecting must stop it cleanly too.
        // The service group turns the first SIGTERM or SIGINT into a graceful shutdown; the
        // watchdog ends a stop that overruns its limit (stuck in librdkafka, or on a spool that
        // hangs), or at once on a second signal: the bridge's own steps are bounded a little below it.
        let current = Mutex<BridgeStopper?>(nil)
        let watchdog = StopWatchdog(what: "bridge", limitMs: settings.stopTimeout.wholeMilliseconds + 500, logger: logger) {
            current.withLock { $0?.currentStep } ?? "starting (connecting to Kafka)"
        }
        let sources = watchdog.watchSignals()
        defer { sources.forEach { $0.cancel() } }
        let left: [String]
        do {
            let server = try settings.metricsAddress.map { try WorkerCommand.startMetrics($0) }
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
