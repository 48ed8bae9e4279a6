import ArgumentParser
import Basics
import Daemon
import Dispatch
import JSON
import LLM
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Settings
import Spool
import Worker

#if canImport(Glibc)
import Glibc
#endif

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run the worker daemon: claim jobs, call the LLM, write results.",
        discussion: """
            Settings come from the configuration file's "worker" section (--config FILE, else \
            $LLMSPOOL_CONFIG, else /etc/llmspool/llmspool.json if it exists; docs/configuration.md), \
            then the environment (LLMSPOOL_SPOOL, LLMSPOOL_LLM_URL, LLMSPOOL_LOG_LEVEL), then these \
            flags. --print-config shows the result and exits.

            The LLM URL (--llm-url, LLMSPOOL_LLM_URL or worker.llmURL) is an OpenAI-compatible base \
            URL (the worker POSTs to BASE_URL/chat/completions), or builtin:echo for the offline \
            responder that repeats each prompt — not a model, for trying the pipeline with no network \
            or key (builtin:echo?delay=200ms adds latency).

            The API key comes from --api-key-file, else $CREDENTIALS_DIRECTORY/llm-api-key \
            (systemd LoadCredential=), else the variable named by --api-key-env (default \
            OPENAI_API_KEY). It is never logged.

            SIGTERM or SIGINT: stop claiming, let calls in flight finish within the grace period, \
            give the rest back to new/, exit 0. The stop takes at most the grace period plus 5 s: \
            past that, or on a second signal, the worker exits 75 with a log line saying what was \
            left (claims in cur/ go back to new/ through recovery); it also exits 75 if the spool \
            was removed under it. With $NOTIFY_SOCKET set it reports READY, STOPPING and WATCHDOG \
            to systemd.

            --metrics-address HOST:PORT (e.g. 127.0.0.1:9464) serves Prometheus metrics at \
            GET /metrics; off by default. The metrics are listed in docs/worker.md.
            """)

    @OptionGroup var options: SpoolOptions

    @OptionGroup var configFile: ConfigFileOptions

    // Each flag's help and rule come from its setting's declaration (WorkerConfiguration.settings).

    @Option(name: .customLong("llm-url"), help: Self.help("llmURL", valueName: "URL"))
    var llmURL: String?

    @Option(help: Self.help("model", valueName: "NAME"))
    var model: String?

    @Option(help: Self.help("maxInFlight", valueName: "N"))
    var concurrency: String?

    @Option(name: .customLong("max-attempts"), help: Self.help("maxAttempts", valueName: "N"))
    var maxAttempts: String?

    @Option(name: .customLong("grace-period"), help: Self.help("gracePeriodSeconds", valueName: "DURATION"))
    var gracePeriod: String?

    @Option(name: .customLong("request-timeout"), help: Self.help("requestTimeoutSeconds", valueName: "DURATION"))
    var requestTimeout: String?

    @Option(name: .customLong("stream-idle-timeout"), help: Self.help("streamIdleTimeoutSeconds", valueName: "DURATION"))
    var streamIdleTimeout: String?

    @Option(name: .customLong("api-key-file"), help: Self.help("apiKeyFile", valueName: "FILE"))
    var apiKeyFile: String?

    @Option(name: .customLong("api-key-env"), help: Self.help("apiKeyEnv", valueName: "NAME"))
    var apiKeyEnv: String?

    @Option(name: .customLong("log-level"), help: Self.help("logLevel", valueName: "LEVEL"))
    var logLevel: String?

    @Option(name: .customLong("metrics-address"), help: Self.help("metricsAddress", valueName: "HOST:PORT"))
    var metricsAddress: String?

    @Flag(name: .customLong("log-prompts"), inversion: .prefixedNo, help: Self.help("logPrompts"))
    var logPrompts: Bool?

    @Flag(
        name: .customLong("provider-batch"), inversion: .prefixedNo,
        help: SettingFlags.help(ProviderBatchSettings.setting("enabled"), defaults: ProviderBatchSettings()))
    var providerBatch: Bool?

    @Option(
        name: .customLong("provider-batch-window"),
        help: SettingFlags.help(ProviderBatchSettings.setting("windowSeconds"), defaults: ProviderBatchSettings(), valueName: "DURATION"))
    var providerBatchWindow: String?

    @Flag(name: .customLong("print-config"), help: "Print the settings the worker would run with (JSON) and exit.")
    var printConfig = false

    func validate() throws {
        var scratch = WorkerConfiguration()
        do { try applyFlags(to: &scratch) } catch { throw ValidationError(error.description) }
        if let u = llmURL { _ = try ResponderFactory.parse(u) }
    }

    /// A flag's help, from its setting's declaration.
    static func help(_ key: String, valueName: String? = nil) -> ArgumentHelp {
        SettingFlags.help(WorkerConfiguration.setting(key), defaults: WorkerConfiguration(), valueName: valueName)
    }

    /// The flags given, each with its setting's key and its text, in the order of the settings.
    var flags: [(setting: Setting<WorkerConfiguration>, flag: String, text: String)] {
        let given: [String: String?] = [
            "llmURL": llmURL, "model": model, "maxInFlight": concurrency, "maxAttempts": maxAttempts,
            "gracePeriodSeconds": gracePeriod, "requestTimeoutSeconds": requestTimeout,
            "streamIdleTimeoutSeconds": streamIdleTimeout, "apiKeyFile": apiKeyFile, "apiKeyEnv": apiKeyEnv,
            "logLevel": logLevel, "metricsAddress": metricsAddress, "logPrompts": logPrompts.map { String($0) },
        ]
        return SettingFlags.given(given, in: WorkerConfiguration.settings)
    }

    /// Applies the flags through their settings' rules; an error names the flag.
    func applyFlags(to conf: inout WorkerConfiguration) throws(DocumentError) {
        for f in flags { try f.setting.apply(text: f.text, from: f.flag, to: &conf) }
        if let providerBatch { conf.providerBatch.enabled = providerBatch }
        if let w = providerBatchWindow {
            try ProviderBatchSettings.setting("windowSeconds").apply(text: w, from: "--provider-batch-window", to: &conf.providerBatch)
            // The live margin stays below the window: half of it when the window is that short.
            if conf.providerBatch.liveMargin >= conf.providerBatch.window { conf.providerBatch.liveMargin = conf.providerBatch.window / 2 }
        }
    }

    func run() async throws {
        let conf: WorkerConfiguration
        do {
            let file = try configFile.load()
            conf = try resolve(file: file)
            if printConfig {
                Output.line(JSONValue.object(["spool": .string(conf.spoolPath), "worker": conf.json()]).prettyText())
                return
            }
            if conf.llmURL == nil {
                let key = file.map { "\($0.workerKey("llmURL")) in \($0.path)" } ?? "worker.llmURL in \(SettingsFile.defaultPath)"
                throw Failed("no LLM endpoint: give --llm-url URL, set LLMSPOOL_LLM_URL, or set \(key)", code: ExitStatus.usage)
            }
        } catch {
            let f = Failed(error)
            Output.error(f.message)
            throw ExitCode(f.code)
        }
        let logger = DaemonLogging.bootstrap(label: "llmspool.worker", level: conf.logLevel)
        do {
            _ = try Spool(path: conf.spoolPath)  // fail early, with the path, if it is not a spool
            let responder = try ResponderFactory.make(
                conf.llmURL ?? "", apiKeyFile: conf.apiKeyFile, apiKeyEnv: conf.apiKeyEnv,
                configuration: conf)
            let server = try conf.metricsAddress.map(Self.startMetrics)
            if let server { logger.info("serving metrics", metadata: ["address": "http://\(server.address)/metrics"]) }
            let worker = Worker(configuration: conf, responder: responder, logger: logger)
            let batcher = try Self.providerBatcher(conf, logger: logger)
            // The group stops its services in reverse order: the worker first, then the provider
            // batcher, then the listener, so the last scrape still sees the stop.
            let services: [any Service] = (server.map { [$0] } ?? []) + (batcher.map { [$0] } ?? []) + [worker]
            let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            let spoolPath = conf.spoolPath
            let watchdog = StopWatchdog(what: "worker", limitMs: conf.gracePeriod.wholeMilliseconds + Self.stopMarginMs, logger: logger) {
                Self.leftInSpool(spoolPath)
            }
            let sources = watchdog.watchSignals()
            defer { sources.forEach { $0.cancel() } }
            try await group.run()
            if access(spoolPath + "/cur", F_OK) != 0 {
                logger.error("stopped, but the spool \(spoolPath) is gone: nothing could be given back or written")
                throw ExitCode(ExitStatus.temporary)
            }
        } catch let code as ExitCode {
            throw code
        } catch {
            let f = Failed(error)
            Output.error(f.message)
            throw ExitCode(f.code)
        }
    }

    /// The settings this worker runs with: the defaults, the file's `worker` section over them, then
    /// the environment, then the flags. Fails with 65 for a bad file, 64 for a bad or missing value
    /// from the environment (the flags were checked by `validate()`). The LLM URL may be unset.
    func resolve(file: SettingsFile?) throws -> WorkerConfiguration {
        var conf = WorkerConfiguration()
        if let file {
            do { try conf.apply(json: .object(file.worker), source: file.path) } catch {
                throw ConfigFile.invalid(file, DocumentError(field: file.workerKey(error.field), error.message))
            }
            if let u = conf.llmURL {
                do { _ = try ResponderFactory.parse(u) } catch {
                    throw ConfigFile.invalid(file, DocumentError(field: file.workerKey("llmURL"), "\(error)"))
                }
            }
        }
        var spool = options
        spool.useSpool(of: file)
        conf.spoolPath = spool.path
        try SettingFlags.applyEnvironment(WorkerConfiguration.settings, to: &conf) { setting, name, text in
            guard setting.key == "llmURL" else { return }
            do { _ = try ResponderFactory.parse(text) } catch { throw Failed("\(name): \(error)", code: ExitStatus.usage) }
        }
        do { try applyFlags(to: &conf) } catch { throw Failed(error.description, code: ExitStatus.usage) }  // checked by validate()
        return conf
    }
}

extension WorkerCommand {
    /// The provider batcher, when batching is on or batches recorded earlier must be finished
    /// (then it takes no new jobs). It needs an HTTP endpoint.
    static func providerBatcher(_ conf: WorkerConfiguration, logger: Logger) throws -> ProviderBatcher? {
        let recorded = ProviderBatcher.hasRecords(spoolPath: conf.spoolPath)
        guard conf.providerBatch.enabled || recorded else { return nil }
        guard case .http(let base) = try ResponderFactory.parse(conf.llmURL ?? "") else {
            if conf.providerBatch.enabled {
                throw Failed("--provider-batch needs an OpenAI-compatible endpoint (--llm-url http(s)://…), not builtin:echo", code: ExitStatus.usage)
            }
            logger.error("the spool holds provider batches, but the LLM URL is not an HTTP endpoint: they wait for a worker that has one")
            return nil
        }
        if !conf.providerBatch.enabled {
            logger.notice("provider batching is off, but the spool holds provider batches: finishing them")
        }
        let key: APIKey?
        do { key = try APIKey.load(file: conf.apiKeyFile, credential: "llm-api-key", environmentVariable: conf.apiKeyEnv) } catch {
            throw Failed("API key: \(error)", code: ExitStatus.dataError)
        }
        let engine: CurlEngine
        do { engine = try CurlEngine() } catch { throw Failed("could not start libcurl: \(error)", code: ExitStatus.software) }
        let client = ProviderBatchClient(
            configuration: ChatClient.Configuration(
                baseURL: base, apiKey: key, connectTimeout: conf.connectTimeout,
                timeout: conf.requestTimeout,
                maxResponseBytes: conf.providerBatch.maxOutputBytes),
            engine: engine)
        return ProviderBatcher(configuration: conf, client: client, logger: logger, gather: conf.providerBatch.enabled)
    }

    /// Time a stop may take past the grace period: cancelled calls give their jobs back, the
    /// libcurl engine stops. Past it the watchdog ends the process (status 75).
    static let stopMarginMs: Int64 = 5_000

    /// What a stop that overran leaves, for the watchdog's line.
    static func leftInSpool(_ path: String) -> String {
        guard let dir = opendir(path + "/cur") else { return "the spool \(path) is gone (\(String(cString: strerror(errno))))" }
        defer { closedir(dir) }
        var claims = 0
        while let e = readdir(dir) {
            let first = withUnsafeBytes(of: e.pointee.d_name) { $0.first ?? 0 }
            if first != UInt8(ascii: ".") { claims += 1 }
        }
        return "\(claims) entries in \(path)/cur (claims of this or other workers, and their markers); recovery gives dead claims back to new/"
    }

    /// Bootstraps swift-metrics with a Prometheus registry and binds `address`; the server serves
    /// once started (as a `Service` of the daemon's group, or by `start()`).
    static func startMetrics(_ address: String) throws -> MetricsServer {
        let registry = PrometheusCollectorRegistry()
        let server: MetricsServer
        do { server = try MetricsServer(address: address, body: { registry.emitToBuffer() }) } catch {
            throw Failed(error.description, code: ExitStatus.ioError)
        }
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[WorkerMetrics.latencyLabel] =
            [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300].map { Duration.milliseconds(Int64($0 * 1000)) }
        MetricsSystem.bootstrap(factory)
        return server
    }
}

/// Turns `--llm-url` into a responder.
enum ResponderFactory {
    enum Kind { case echo(delayMs: Int), http(String) }

    static func parse(_ url: String) throws -> Kind {
        if url == "builtin:echo" { return .echo(delayMs: 0) }
        if url.hasPrefix("builtin:echo?delay=") {
            let d = String(url.dropFirst("builtin:echo?delay=".count))
            guard let ms = HumanDuration.parseMilliseconds(d) else { throw ValidationError("--llm-url: \"\(d)\" is not a duration") }
            return .echo(delayMs: Int(ms))
        }
        if url.hasPrefix("http://") || url.hasPrefix("https://") { return .http(url) }
        throw ValidationError("--llm-url must be an http(s):// base URL or builtin:echo, not \"\(url)\"")
    }

    static func make(_ url: String, apiKeyFile: String?, apiKeyEnv: String, configuration: WorkerConfiguration) throws -> any Responder {
        switch try parse(url) {
        case .echo(let ms): return EchoResponder(delayMs: ms)
        case .http(let base):
            let key: APIKey?
            do { key = try APIKey.load(file: apiKeyFile, credential: "llm-api-key", environmentVariable: apiKeyEnv) } catch {
                throw Failed("API key: \(error)", code: ExitStatus.dataError)
            }
            let engine: CurlEngine
            do { engine = try CurlEngine(configuration: .init(maxConnectionsPerHost: configuration.maxConnections)) } catch {
                throw Failed("could not start libcurl: \(error)", code: ExitStatus.software)
            }
            var chat = ChatClient.Configuration(
                baseURL: base, apiKey: key, connectTimeout: configuration.connectTimeout,
                timeout: configuration.requestTimeout)
            chat.streamIdleTimeout = configuration.streamIdleTimeout
            let client = ChatClient(configuration: chat, engine: engine)
            return ChatResponder(client: client, engine: engine)
        }
    }
}
