import Basics
public import JSON
public import LLM
public import Settings
public import Spool

/// Everything the worker needs to know. Defaults are documented in docs/worker.md and
/// docs/configuration.md (the `worker` section of the configuration file).
public struct WorkerConfiguration: Sendable {
    public var spoolPath: String = "./spool"
    /// The model asked when a job names none.
    public var defaultModel: String = "gpt-4o-mini"
    /// Most LLM calls in flight at once, all tenants together (default 256).
    public var maxInFlight: Int = 256
    /// Calls of a job that may fail transiently (408, 409, 5xx, connection, timeout) before it is
    /// dead-lettered (default 20). Rate limits (429, 529) never count.
    public var maxAttempts: Int = 20
    /// How long after its first attempt a job may still be retried after a transient failure (1 h).
    public var retryBudget: Duration = .seconds(3600)
    /// Backoff: full jitter over min(base·2ⁿ⁻¹, cap) (defaults 0.5 s and 300 s); a provider's
    /// `retry-after` is honoured up to `maxRetryAfter` (120 s).
    public var backoffBase: Duration = .milliseconds(500)
    public var backoffCap: Duration = .seconds(300)
    public var maxRetryAfter: Duration = .seconds(120)
    /// The circuit breaker in front of the endpoint (see ``CircuitBreaker``).
    public var circuitBreaker = CircuitBreaker.Settings()
    /// `max_tokens` assumed when reserving a job's tokens if the job sets none (default 1024).
    public var defaultMaxTokens: Int = 1024
    /// Longest a single LLM call may take, connection included (default 600 s, as the OpenAI SDKs).
    public var requestTimeout: Duration = .seconds(600)
    /// A streamed call (a job with `"stream": true`) fails when no byte arrives for this long once
    /// its answer has begun (default 60 s; kept by the engine to the millisecond). The wait for the
    /// first byte, and the whole call, are ``requestTimeout``'s.
    public var streamIdleTimeout: Duration = .seconds(60)
    /// Longest the TCP and TLS handshakes may take (default 10 s).
    public var connectTimeout: Duration = .seconds(10)
    /// Connections to the LLM's host at most (0, the default: no limit). Calls beyond them wait
    /// for a free connection — or, over HTTP/2, share one (up to 100 streams each).
    public var maxConnections: Int = 0
    /// On SIGTERM: how long in-flight calls may take to finish before they are given back (25 s).
    public var gracePeriod: Duration = .seconds(25)
    /// Full rescan of new/ and crash recovery, as a safety net for inotify (10 s).
    public var rescanInterval: Duration = .seconds(10)
    /// Limits for tenants by name; `*` applies to tenants not listed. Jobs without a tenant are tenant `default`.
    public var tenants: [String: TenantLimits] = [:]
    /// Log prompt text at debug level (off by default: prompts may hold personal data).
    public var logPrompts = false
    /// Routing of jobs with distant deadlines to the provider's Batch API (off by default; see
    /// ``ProviderBatchSettings`` and docs/batch.md, "Provider batches").
    public var providerBatch = ProviderBatchSettings()

    // The worker process around the Worker: read by `llmspool worker`, not by the Worker itself.

    /// OpenAI-compatible base URL, or `builtin:echo`; required (here, `--llm-url` or `LLMSPOOL_LLM_URL`).
    public var llmURL: String?
    /// File holding the API key.
    public var apiKeyFile: String?
    /// Environment variable holding the API key.
    public var apiKeyEnv = "OPENAI_API_KEY"
    /// `HOST:PORT` to serve Prometheus metrics on; nil: off.
    public var metricsAddress: String?
    /// A swift-log level name.
    public var logLevel = "info"

    public init() {}

    /// The retry budgets these settings describe, with a job's own `retry` settings over them.
    public func retryBudget(for job: Job? = nil) -> RetryBudget {
        RetryBudget(
            maxAttempts: job?.retry?.maxAttempts ?? maxAttempts, timeBudgetMs: job?.retry?.timeBudgetMs ?? retryBudget.wholeMilliseconds,
            baseDelayMs: backoffBase.wholeMilliseconds, maxDelayMs: backoffCap.wholeMilliseconds, maxServerDelayMs: maxRetryAfter.wholeMilliseconds)
    }

    public func limits(for tenant: String) -> TenantLimits {
        tenants[tenant] ?? tenants["*"] ?? TenantLimits()
    }

    /// Reads the JSON configuration file's settings over these (see docs/worker.md), each through
    /// its declaration in ``settings``.
    public mutating func apply(json: JSONValue, source: String) throws(DocumentError) {
        guard case .object(let o) = json else { throw DocumentError(field: "", "\(source): expected a JSON object") }
        try Setting.apply(o, prefix: "", name: "worker", Self.settings, to: &self)
    }

    /// The `tenants` object: tenant name (or `*`) to its limits.
    mutating func applyTenants(_ v: SettingValue) throws(DocumentError) {
        guard case .object(let ts) = v.value else { throw DocumentError(field: v.path, "must be an object of tenant name to limits") }
        for t in ts.members {
            let at = "\(v.path).\(t.key)"
            if t.key != "*" { try Job.checkName(t.key, field: at) }
            guard case .object(let lo) = t.value else { throw DocumentError(field: at, "must be an object") }
            var l = TenantLimits()
            for (key, f) in lo.settings(under: at + ".") {
                switch key {
                case "tokensPerMinute": l.tokensPerMinute = try f.int(1...1_000_000_000)
                case "requestsPerMinute": l.requestsPerMinute = try f.int(1...10_000_000)
                case "maxInFlight": l.maxInFlight = try f.int(1...100_000)
                default:
                    let limits = ["tokensPerMinute", "requestsPerMinute", "maxInFlight"]
                    throw DocumentError(field: f.path, "unknown setting\(DocumentError.didYouMean(key, in: limits)) (\(limits.joined(separator: ", ")))")
                }
            }
            tenants[t.key] = l
        }
    }

    func tenantsJSON() -> JSONValue {
        var ts = JSONObject()
        for name in tenants.keys.sorted() {
            let l = tenants[name]!
            var lo = JSONObject()
            if let n = l.tokensPerMinute { lo["tokensPerMinute"] = .integer(n) }
            if let n = l.requestsPerMinute { lo["requestsPerMinute"] = .integer(n) }
            if let n = l.maxInFlight { lo["maxInFlight"] = .integer(n) }
            ts[name] = .object(lo)
        }
        return .object(ts)
    }

    /// The `circuitBreaker` object's settings (docs/configuration.md; a test checks the table).
    public static let breakerSettings: [Setting<CircuitBreaker.Settings>] = [
        .bool("enabled", \.enabled, "false: calls never stop, however many fail"),
        .integer("window", \.window, 1...10_000, "how many of the latest calls are remembered"),
        .integer("minimumCalls", \.minimumCalls, 1...10_000, "calls remembered before the share below counts"),
        .fraction("failureRatio", \.failureRatio, "share of remembered calls failed transiently that opens it"),
        .seconds(
            "allFailingSeconds", \.allFailing, 0.001...86_400,
            "every call failed transiently for this long: open, however few calls there were"),
        .seconds("probeIntervalSeconds", \.probeInterval, 0.001...3600, "wait before the first probe of an open breaker"),
        .seconds(
            "maxProbeIntervalSeconds", \.maxProbeInterval, 0.001...3600, type: "seconds, 0.001–3600, not below `probeIntervalSeconds`",
            "the wait doubles after each failed probe up to this"),
    ]

    /// Reads the `circuitBreaker` object; a key left out keeps its value.
    mutating func applyBreaker(_ v: JSONValue) throws(DocumentError) {
        guard case .object(let o) = v else {
            throw DocumentError(field: "circuitBreaker", "must be an object (\(Self.breakerSettings.map(\.key).joined(separator: ", ")))")
        }
        var b = circuitBreaker
        try Setting.apply(o, prefix: "circuitBreaker.", name: "circuitBreaker", Self.breakerSettings, to: &b)
        if b.maxProbeInterval < b.probeInterval {
            throw DocumentError(field: "circuitBreaker.maxProbeIntervalSeconds", "must not be below probeIntervalSeconds")
        }
        circuitBreaker = b
    }

    /// The `worker` section's settings, each declared once: the file, `LLMSPOOL_LLM_URL` and
    /// `LLMSPOOL_LOG_LEVEL`, the flags of `llmspool worker`, `--print-config` and the table in
    /// docs/configuration.md (checked by a test) all read this list, in this order.
    public static let settings: [Setting<WorkerConfiguration>] = [
        .optionalString(
            "llmURL", \.llmURL, variable: "LLMSPOOL_LLM_URL", flag: "--llm-url",
            defaultNote: "required here, by flag or by the variable",
            "OpenAI-compatible base URL (`http://` or `https://`; the worker posts to `…/chat/completions`), or `builtin:echo[?delay=D]`, the offline responder that repeats the prompt",
            check: { s, field throws(DocumentError) in
                guard s.hasPrefix("http://") || s.hasPrefix("https://") || s == "builtin:echo" || s.hasPrefix("builtin:echo?delay=") else {
                    throw DocumentError(field: field, "must be an http(s):// base URL (e.g. https://api.openai.com/v1) or builtin:echo")
                }
            }),
        .optionalString(
            "apiKeyFile", \.apiKeyFile, flag: "--api-key-file",
            "file holding the API key; before the systemd credential and `apiKeyEnv`"),
        .string(
            "apiKeyEnv", \.apiKeyEnv, flag: "--api-key-env", "environment variable holding the API key",
            check: { s, field throws(DocumentError) in
                if s.isEmpty || s.contains("=") { throw DocumentError(field: field, "must be the name of an environment variable") }
            }),
        .string(
            "model", \.defaultModel, flag: "--model", "model for jobs that name none",
            check: { s, field throws(DocumentError) in if s.isEmpty { throw DocumentError(field: field, "must be a non-empty string") } }),
        .integer("maxInFlight", \.maxInFlight, 1...100_000, flag: "--concurrency", "LLM calls in flight, all tenants together"),
        .integer(
            "maxAttempts", \.maxAttempts, 1...100, flag: "--max-attempts",
            "calls of a job that may fail transiently (408, 409, 5xx, connection errors, timeouts) before it is dead-lettered; 429 and 529 never count"),
        .seconds(
            "retryBudgetSeconds", \.retryBudget, 0...Double(JobRetry.maxTimeBudgetSeconds),
            "how long after a job's first attempt a transient failure may still be retried"),
        .integer("defaultMaxTokens", \.defaultMaxTokens, 1...1_000_000, "`maxTokens` assumed when reserving tokens for a job that sets none"),
        .seconds("backoffBaseSeconds", \.backoffBase, 0...86_400, "first retry waits up to this long (full jitter) …"),
        .seconds("backoffCapSeconds", \.backoffCap, 0...86_400, "… doubling per failure up to this"),
        .seconds("maxRetryAfterSeconds", \.maxRetryAfter, 0...86_400, "longest provider `retry-after` honoured"),
        .custom(
            "circuitBreaker", type: "object", defaultNote: "below", "the circuit breaker in front of the endpoint (see docs/worker.md)",
            read: { c, v throws(DocumentError) in try c.applyBreaker(v.value) }, write: { $0.breakerJSON() }),
        .seconds("gracePeriodSeconds", \.gracePeriod, 0...86_400, flag: "--grace-period", "on SIGTERM, time for calls in flight to finish"),
        .seconds(
            "requestTimeoutSeconds", \.requestTimeout, 0...86_400, floor: .milliseconds(1), flag: "--request-timeout",
            "longest one LLM call may take"),
        .seconds("connectTimeoutSeconds", \.connectTimeout, 0...86_400, floor: .milliseconds(1), "longest the TCP and TLS handshake may take"),
        .seconds(
            "streamIdleTimeoutSeconds", \.streamIdleTimeout, 0.1...86_400, flag: "--stream-idle-timeout",
            "a streamed call (`\"stream\": true`) fails after this long without a byte once its answer has begun (the wait for it is `requestTimeoutSeconds`'s; docs/worker.md, \"Streaming\")"
        ),
        .integer(
            "maxConnections", \.maxConnections, 0...100_000, defaultNote: "no limit",
            "connections to the LLM's host at most; over HTTP/2 set it to about `maxInFlight` ÷ 100 (see worker.md, \"Connections\")"),
        .seconds(
            "rescanIntervalSeconds", \.rescanInterval, 0...86_400, floor: .milliseconds(100), type: "seconds, 0–86400 (at least 0.1 is used)",
            "full rescan and crash-recovery pass"),
        .bool("logPrompts", \.logPrompts, flag: "--log-prompts --no-log-prompts", "log prompt text at debug level"),
        .custom(
            "providerBatch", type: "object", defaultNote: "below",
            "sending jobs with distant deadlines to the provider's Batch API (see docs/batch.md, \"Provider batches\")",
            read: { c, v throws(DocumentError) in try c.providerBatch.apply(v.value) }, write: { $0.providerBatch.json() }),
        .string(
            "logLevel", \.logLevel, variable: "LLMSPOOL_LOG_LEVEL", flag: "--log-level",
            "`trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`",
            check: SettingValue.checkLogLevel),
        .optionalString(
            "metricsAddress", \.metricsAddress, type: "`HOST:PORT` or null", flag: "--metrics-address", defaultNote: "off",
            "serve Prometheus metrics on `GET /metrics` (see docs/worker.md)",
            check: SettingValue.checkHostPort),
        .custom(
            "tenants", type: "object", defaultNote: "`{}`", "limits per tenant, below",
            read: { c, v throws(DocumentError) in try c.applyTenants(v) }, write: { $0.tenantsJSON() }),
    ]

    /// Every key of the section, in order.
    public static var keys: [String] { settings.map(\.key) }

    /// The declaration of `key` (a programming error if there is none).
    public static func setting(_ key: String) -> Setting<WorkerConfiguration> {
        Setting.named(key, in: settings)
    }

    /// These settings as a `worker` section, every key present (`null`: not set); `apply` of it
    /// gives back the same settings. The spool is not in it (it is set at the top level).
    public func json() -> JSONValue { Setting.section(Self.settings, of: self) }

    func breakerJSON() -> JSONValue { Setting.section(Self.breakerSettings, of: circuitBreaker) }
}
