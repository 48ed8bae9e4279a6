import Daemon
public import JSON
public import LLM
import Logging
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
    public var retryBudgetMs: Int64 = 3_600_000
    /// Backoff: full jitter over min(base·2ⁿ⁻¹, cap) (defaults 0.5 s and 300 s); a provider's
    /// `retry-after` is honoured up to `maxRetryAfterMs` (120 s).
    public var backoffBaseMs: Int64 = 500
    public var backoffCapMs: Int64 = 300_000
    public var maxRetryAfterMs: Int64 = 120_000
    /// The circuit breaker in front of the endpoint (see ``CircuitBreaker``).
    public var circuitBreaker = CircuitBreaker.Settings()
    /// `max_tokens` assumed when reserving a job's tokens if the job sets none (default 1024).
    public var defaultMaxTokens: Int = 1024
    /// Longest a single LLM call may take, connection included (default 600 s, as the OpenAI SDKs).
    public var requestTimeoutMs: Int64 = 600_000
    /// Longest the TCP and TLS handshakes may take (default 10 s).
    public var connectTimeoutMs: Int64 = 10_000
    /// Connections to the LLM's host at most (0, the default: no limit). Calls beyond them wait
    /// for a free connection — or, over HTTP/2, share one (up to 100 streams each).
    public var maxConnections: Int = 0
    /// On SIGTERM: how long in-flight calls may take to finish before they are given back (25 s).
    public var gracePeriodMs: Int64 = 25_000
    /// Full rescan of new/ and crash recovery, as a safety net for inotify (10 s).
    public var rescanIntervalMs: Int64 = 10_000
    /// Limits for tenants by name; `*` applies to tenants not listed. Jobs without a tenant are tenant `default`.
    public var tenants: [String: TenantLimits] = [:]
    /// Log prompt text at debug level (off by default: prompts may hold personal data).
    public var logPrompts = false

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
        RetryBudget(maxAttempts: job?.retry?.maxAttempts ?? maxAttempts, timeBudgetMs: job?.retry?.timeBudgetMs ?? retryBudgetMs,
                    baseDelayMs: backoffBaseMs, maxDelayMs: backoffCapMs, maxServerDelayMs: maxRetryAfterMs)
    }

    public func limits(for tenant: String) -> TenantLimits {
        tenants[tenant] ?? tenants["*"] ?? TenantLimits()
    }

    /// Reads the JSON configuration file's settings over these (see docs/worker.md).
    public mutating func apply(json: JSONValue, source: String) throws(DocumentError) {
        guard case .object(let o) = json else { throw DocumentError(field: "", "\(source): expected a JSON object") }
        func int(_ key: String, _ v: JSONValue, _ range: ClosedRange<Int>) throws(DocumentError) -> Int {
            guard let n = v.intValue, range.contains(n) else {
                throw DocumentError(field: key, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
        func ms(_ key: String, _ v: JSONValue) throws(DocumentError) -> Int64 {
            guard let d = v.doubleValue, d >= 0, d <= 86_400 else { throw DocumentError(field: key, "must be a number of seconds from 0 to 86400") }
            return Int64(d * 1000)
        }
        for m in o.members {
            let k = m.key, v = m.value
            switch k {
            case "spool": guard let s = v.stringValue else { throw DocumentError(field: k, "must be a string") }; spoolPath = s
            case "model": guard let s = v.stringValue, !s.isEmpty else { throw DocumentError(field: k, "must be a non-empty string") }; defaultModel = s
            case "maxInFlight": maxInFlight = try int(k, v, 1...100_000)
            case "maxAttempts": maxAttempts = try int(k, v, 1...100)
            case "defaultMaxTokens": defaultMaxTokens = try int(k, v, 1...1_000_000)
            case "retryBudgetSeconds":
                guard let d = v.doubleValue, d >= 0, d <= Double(JobRetry.maxTimeBudgetSeconds) else {
                    throw DocumentError(field: k, "must be a number of seconds from 0 to \(JobRetry.maxTimeBudgetSeconds) (7 days)")
                }
                retryBudgetMs = Int64(d * 1000)
            case "circuitBreaker": try applyBreaker(v)
            case "backoffBaseSeconds": backoffBaseMs = try ms(k, v)
            case "backoffCapSeconds": backoffCapMs = try ms(k, v)
            case "maxRetryAfterSeconds": maxRetryAfterMs = try ms(k, v)
            case "gracePeriodSeconds": gracePeriodMs = try ms(k, v)
            case "requestTimeoutSeconds": requestTimeoutMs = max(1, try ms(k, v))
            case "connectTimeoutSeconds": connectTimeoutMs = max(1, try ms(k, v))
            case "maxConnections": maxConnections = try int(k, v, 0...100_000)
            case "rescanIntervalSeconds": rescanIntervalMs = max(100, try ms(k, v))
            case "logPrompts": guard let b = v.boolValue else { throw DocumentError(field: k, "must be true or false") }; logPrompts = b
            case "llmURL":
                if v == .null { llmURL = nil; continue }
                guard let s = v.stringValue, s.hasPrefix("http://") || s.hasPrefix("https://") || s.hasPrefix("builtin:echo") else {
                    throw DocumentError(field: k, "must be an http(s):// base URL (e.g. https://api.openai.com/v1) or builtin:echo")
                }
                llmURL = s
            case "apiKeyFile":
                if v == .null { apiKeyFile = nil; continue }
                guard let s = v.stringValue, !s.isEmpty else { throw DocumentError(field: k, "must be a file name, or null for none") }
                apiKeyFile = s
            case "apiKeyEnv":
                guard let s = v.stringValue, !s.isEmpty, !s.contains("=") else { throw DocumentError(field: k, "must be the name of an environment variable") }
                apiKeyEnv = s
            case "metricsAddress":
                if v == .null { metricsAddress = nil; continue }
                guard let s = v.stringValue, MetricsServer.parse(s) != nil else {
                    throw DocumentError(field: k, "must be HOST:PORT (e.g. 127.0.0.1:9464), or null for off")
                }
                metricsAddress = s
            case "logLevel":
                guard let s = v.stringValue, Logger.Level(rawValue: s) != nil else {
                    throw DocumentError(field: k, "must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                logLevel = s
            case "tenants":
                guard case .object(let ts) = v else { throw DocumentError(field: k, "must be an object of tenant name to limits") }
                for t in ts.members {
                    let at = "tenants.\(t.key)"
                    if t.key != "*" { try Job.checkName(t.key, field: at) }
                    guard case .object(let lo) = t.value else { throw DocumentError(field: at, "must be an object") }
                    var l = TenantLimits()
                    for f in lo.members {
                        switch f.key {
                        case "tokensPerMinute": l.tokensPerMinute = try int(at + "." + f.key, f.value, 1...1_000_000_000)
                        case "requestsPerMinute": l.requestsPerMinute = try int(at + "." + f.key, f.value, 1...10_000_000)
                        case "maxInFlight": l.maxInFlight = try int(at + "." + f.key, f.value, 1...100_000)
                        default:
                            let limits = ["tokensPerMinute", "requestsPerMinute", "maxInFlight"]
                            throw DocumentError(field: at + "." + f.key, "unknown setting\(DocumentError.didYouMean(f.key, in: limits)) (\(limits.joined(separator: ", ")))")
                        }
                    }
                    tenants[t.key] = l
                }
            default:
                throw DocumentError(field: k, "unknown setting\(DocumentError.didYouMean(k, in: Self.keys)) (worker settings: \(Self.keys.joined(separator: ", ")))")
            }
        }
    }

    static let breakerKeys = [
        "enabled", "window", "failureRatio", "minimumCalls", "allFailingSeconds", "probeIntervalSeconds", "maxProbeIntervalSeconds",
    ]

    /// Reads the `circuitBreaker` object; a key left out keeps its value.
    mutating func applyBreaker(_ v: JSONValue) throws(DocumentError) {
        guard case .object(let o) = v else { throw DocumentError(field: "circuitBreaker", "must be an object (\(Self.breakerKeys.joined(separator: ", ")))") }
        var b = circuitBreaker
        for m in o.members {
            let at = "circuitBreaker." + m.key
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
            case "enabled": guard let e = m.value.boolValue else { throw DocumentError(field: at, "must be true or false") }; b.enabled = e
            case "window": b.window = try count(1...10_000)
            case "minimumCalls": b.minimumCalls = try count(1...10_000)
            case "failureRatio":
                guard let r = m.value.doubleValue, r > 0, r <= 1 else { throw DocumentError(field: at, "must be a number above 0 and at most 1") }
                b.failureRatio = r
            case "allFailingSeconds": b.allFailingMs = try seconds(0.001...86_400)
            case "probeIntervalSeconds": b.probeIntervalMs = try seconds(0.001...3600)
            case "maxProbeIntervalSeconds": b.maxProbeIntervalMs = try seconds(0.001...3600)
            default: throw DocumentError(field: at, "unknown setting (\(Self.breakerKeys.joined(separator: ", ")))")
            }
        }
        if b.maxProbeIntervalMs < b.probeIntervalMs {
            throw DocumentError(field: "circuitBreaker.maxProbeIntervalSeconds", "must not be below probeIntervalSeconds")
        }
        circuitBreaker = b
    }

    /// Every key `apply(json:source:)` reads, in the order `json()` writes them.
    public static let keys = [
        "llmURL", "apiKeyFile", "apiKeyEnv", "model", "maxInFlight", "maxAttempts", "retryBudgetSeconds", "defaultMaxTokens",
        "backoffBaseSeconds", "backoffCapSeconds", "maxRetryAfterSeconds", "circuitBreaker", "gracePeriodSeconds", "requestTimeoutSeconds", "connectTimeoutSeconds",
        "maxConnections", "rescanIntervalSeconds", "logPrompts", "logLevel", "metricsAddress", "tenants",
    ]

    /// These settings as a `worker` section, every key present (`null`: not set); `apply` of it
    /// gives back the same settings. The spool is not in it (it is set at the top level).
    public func json() -> JSONValue {
        func seconds(_ ms: Int64) -> JSONValue { .double(Double(ms) / 1000) }
        func opt(_ s: String?) -> JSONValue { s.map(JSONValue.string) ?? .null }
        var o = JSONObject()
        o["llmURL"] = opt(llmURL)
        o["apiKeyFile"] = opt(apiKeyFile)
        o["apiKeyEnv"] = .string(apiKeyEnv)
        o["model"] = .string(defaultModel)
        o["maxInFlight"] = .integer(maxInFlight)
        o["maxAttempts"] = .integer(maxAttempts)
        o["retryBudgetSeconds"] = seconds(retryBudgetMs)
        o["defaultMaxTokens"] = .integer(defaultMaxTokens)
        o["backoffBaseSeconds"] = seconds(backoffBaseMs)
        o["backoffCapSeconds"] = seconds(backoffCapMs)
        o["maxRetryAfterSeconds"] = seconds(maxRetryAfterMs)
        let b = circuitBreaker
        o["circuitBreaker"] = .object([
            "enabled": .bool(b.enabled), "window": .integer(b.window), "failureRatio": .double(b.failureRatio),
            "minimumCalls": .integer(b.minimumCalls), "allFailingSeconds": seconds(b.allFailingMs),
            "probeIntervalSeconds": seconds(b.probeIntervalMs), "maxProbeIntervalSeconds": seconds(b.maxProbeIntervalMs),
        ])
        o["gracePeriodSeconds"] = seconds(gracePeriodMs)
        o["requestTimeoutSeconds"] = seconds(requestTimeoutMs)
        o["connectTimeoutSeconds"] = seconds(connectTimeoutMs)
        o["maxConnections"] = .integer(maxConnections)
        o["rescanIntervalSeconds"] = seconds(rescanIntervalMs)
        o["logPrompts"] = .bool(logPrompts)
        o["logLevel"] = .string(logLevel)
        o["metricsAddress"] = opt(metricsAddress)
        var ts = JSONObject()
        for name in tenants.keys.sorted() {
            let l = tenants[name]!
            var lo = JSONObject()
            if let n = l.tokensPerMinute { lo["tokensPerMinute"] = .integer(n) }
            if let n = l.requestsPerMinute { lo["requestsPerMinute"] = .integer(n) }
            if let n = l.maxInFlight { lo["maxInFlight"] = .integer(n) }
            ts[name] = .object(lo)
        }
        o["tenants"] = .object(ts)
        return .object(o)
    }
}
