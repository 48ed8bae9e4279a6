import ArgumentParser
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

    @Option(name: .customLong("llm-url"), help: ArgumentHelp("OpenAI-compatible base URL, or builtin:echo (env LLMSPOOL_LLM_URL).", valueName: "URL"))
    var llmURL: String?

    @Option(help: "Model for jobs that name none (default gpt-4o-mini).")
    var model: String?

    @Option(help: "Most LLM calls in flight at once (default 256).")
    var concurrency: Int?

    @Option(name: .customLong("max-attempts"), help: "Calls per job that may fail transiently before it is dead-lettered (default 20; 429/529 never count).")
    var maxAttempts: Int?

    @Option(name: .customLong("grace-period"), help: ArgumentHelp("On SIGTERM, how long calls in flight may finish (default 25s).", valueName: "DURATION"))
    var gracePeriod: String?

    @Option(name: .customLong("request-timeout"), help: ArgumentHelp("Longest one LLM call may take (default 10m).", valueName: "DURATION"))
    var requestTimeout: String?

    @Option(name: .customLong("api-key-file"), help: ArgumentHelp("File holding the API key.", valueName: "FILE"))
    var apiKeyFile: String?

    @Option(name: .customLong("api-key-env"), help: ArgumentHelp("Environment variable holding the API key (default OPENAI_API_KEY).", valueName: "NAME"))
    var apiKeyEnv: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env LLMSPOOL_LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(name: .customLong("metrics-address"),
            help: ArgumentHelp("Serve Prometheus metrics at GET /metrics on this address (e.g. 127.0.0.1:9464; default off).",
                               valueName: "HOST:PORT"))
    var metricsAddress: String?

    @Flag(name: .customLong("log-prompts"), inversion: .prefixedNo,
          help: "Log prompt text at debug level (default off: prompts may hold personal data).")
    var logPrompts: Bool?

    @Flag(name: .customLong("print-config"), help: "Print the settings the worker would run with (JSON) and exit.")
    var printConfig = false

    func validate() throws {
        if let l = logLevel, Logger.Level(rawValue: l) == nil { throw ValidationError("--log-level \"\(l)\" is not a level") }
        if let c = concurrency, !(1...100_000).contains(c) { throw ValidationError("--concurrency must be 1 to 100000") }
        if let m = maxAttempts, !(1...100).contains(m) { throw ValidationError("--max-attempts must be 1 to 100") }
        if let g = gracePeriod, HumanDuration.parseMilliseconds(g) == nil { throw ValidationError("--grace-period \"\(g)\" is not a duration") }
        if let t = requestTimeout, (HumanDuration.parseMilliseconds(t) ?? 0) <= 0 { throw ValidationError("--request-timeout \"\(t)\" is not a positive duration") }
        if let u = llmURL { _ = try ResponderFactory.parse(u) }
        if let a = metricsAddress, MetricsServer.parse(a) == nil {
            throw ValidationError("--metrics-address \"\(a)\" is not HOST:PORT (e.g. 127.0.0.1:9464)")
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
            let responder = try ResponderFactory.make(conf.llmURL ?? "", apiKeyFile: conf.apiKeyFile, apiKeyEnv: conf.apiKeyEnv,
                                                      configuration: conf)
            let server = try conf.metricsAddress.map(Self.startMetrics)
            if let server { logger.info("serving metrics", metadata: ["address": "http://\(server.address)/metrics"]) }
            let worker = Worker(configuration: conf, responder: responder, logger: logger)
            // The group stops its services in reverse order: the worker first, then the listener,
            // so the last scrape still sees the stop.
            let services: [any Service] = (server.map { [$0] } ?? []) + [worker]
            let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            let spoolPath = conf.spoolPath
            let watchdog = StopWatchdog(what: "worker", limitMs: conf.gracePeriodMs + Self.stopMarginMs, logger: logger) {
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
        if let u = ConfigFile.env("LLMSPOOL_LLM_URL") {
            do { _ = try ResponderFactory.parse(u) } catch { throw Failed("LLMSPOOL_LLM_URL: \(error)", code: ExitStatus.usage) }
            conf.llmURL = u
        }
        if let l = ConfigFile.env("LLMSPOOL_LOG_LEVEL") {
            guard Logger.Level(rawValue: l) != nil else { throw Failed("LLMSPOOL_LOG_LEVEL \"\(l)\" is not a level", code: ExitStatus.usage) }
            conf.logLevel = l
        }
        if let llmURL { conf.llmURL = llmURL }
        if let model { conf.defaultModel = model }
        if let concurrency { conf.maxInFlight = concurrency }
        if let maxAttempts { conf.maxAttempts = maxAttempts }
        if let g = gracePeriod.flatMap(HumanDuration.parseMilliseconds) { conf.gracePeriodMs = g }
        if let t = requestTimeout.flatMap(HumanDuration.parseMilliseconds) { conf.requestTimeoutMs = t }
        if let apiKeyFile { conf.apiKeyFile = apiKeyFile }
        if let apiKeyEnv { conf.apiKeyEnv = apiKeyEnv }
        if let logLevel { conf.logLevel = logLevel }
        if let metricsAddress { conf.metricsAddress = metricsAddress }
        if let logPrompts { conf.logPrompts = logPrompts }
        return conf
    }
}

extension WorkerCommand {
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
            do { engine = try CurlEngine(configuration: .init(maxConnectionsPerHost: configuration.maxConnections)) } catch { throw Failed("could not start libcurl: \(error)", code: ExitStatus.software) }
            let client = ChatClient(
                configuration: ChatClient.Configuration(
                    baseURL: base, apiKey: key, connectTimeout: .milliseconds(configuration.connectTimeoutMs),
                    timeout: .milliseconds(configuration.requestTimeoutMs)),
                engine: engine)
            return ChatResponder(client: client, engine: engine)
        }
    }
}
