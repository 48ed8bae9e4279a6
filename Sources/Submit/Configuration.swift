/// Settings of the submit endpoint, from the environment the web server passes and the
/// configuration file only — never from the command line: Apache's mod_cgi turns a query string
/// without `=` into arguments (RFC 3875 4.4), so a client writes the command line.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `LLMSPOOL_SPOOL` | the spool | `./spool` |
/// | `LLMSPOOL_TOKENS` | bearer token file (a path; `-` is not standard input) | none: only `REMOTE_USER` |
/// | `LLMSPOOL_TENANT` | tenant of users named by `REMOTE_USER` | none |
/// | `LLMSPOOL_MAX_BODY` | largest request body, bytes | 1048576 |
/// | `LLMSPOOL_MAX_FILE` | largest Batch API upload (`POST /v1/files`), bytes | 67108864 |
/// | `LLMSPOOL_MAX_WAITING` | waiting jobs per tenant before 429 | 1000 |
/// | `LLMSPOOL_COUNT_CACHE` | milliseconds a tenant's count of waiting jobs is reused before `new/` is counted again; 0: count every time | 1000 |
/// | `LLMSPOOL_HEARTBEAT` | seconds between event-stream heartbeats | 15 |
/// | `LLMSPOOL_EVENTS_PAD` | bytes of padding comment after each event, to push it through a gateway that buffers (fcgiwrap: 8192) | 0 |
/// | `LLMSPOOL_STREAM_MAX` | seconds an event stream stays open (the client then resumes) | 3600 |
///
/// With `LLMSPOOL_CONFIG` set, the configuration file's `spool` and `cgi` section come first
/// (see `Configuration+File.swift` and docs/configuration.md); the variables override them.
public struct Configuration: Sendable, Equatable {
    public var spoolPath = "./spool"
    public var tokensPath: String?
    public var defaultTenant: String?
    public var maxBodyBytes = 1 << 20
    /// The largest Batch API upload (`POST /v1/files`): 64 MiB.
    public var maxFileBytes = 64 << 20
    public var maxWaitingPerTenant = 1000
    /// How long a count of a tenant's waiting jobs (``WaitingCount``) is reused; 0 counts `new/` on every POST.
    public var waitingCountMaxAgeMilliseconds: Int64 = 1000
    /// Seconds a client is told to wait after a 429 or 503.
    public var retryAfterSeconds = 10
    public var heartbeatMilliseconds: Int64 = 15_000
    public var maxStreamMilliseconds: Int64 = 3_600_000
    /// Padding after each event: fcgiwrap passes output on only in 8 KiB records.
    public var eventPaddingBytes = 0
    /// How long an `Idempotency-Key` keeps answering with the same job (24 h).
    public var idempotencyMilliseconds: Int64 = 24 * 3600 * 1000
    /// How many of the newest files `GET /jobs` looks through for the caller's jobs.
    public var listScanLimit = 2000
    /// Why `LLMSPOOL_CONFIG`'s file could not be used; the CGI then answers every request with a 500.
    public var settingsError: String?

    public init() {}

    /// Reads the settings from `env` (and `LLMSPOOL_CONFIG`'s file). There is deliberately no
    /// way to pass arguments: whatever a server puts on the command line is the client's.
    public static func from(env: (String) -> String?) -> Configuration {
        var c = Configuration.fromSettingsFile(env: env)
        func nonEmpty(_ name: String) -> String? { env(name).flatMap { $0.isEmpty ? nil : $0 } }
        func number(_ name: String, _ range: ClosedRange<Int>) -> Int? {
            nonEmpty(name).flatMap { Int($0) }.flatMap { range.contains($0) ? $0 : nil }
        }
        if let s = nonEmpty("LLMSPOOL_SPOOL") { c.spoolPath = s }
        if let t = nonEmpty("LLMSPOOL_TOKENS") { c.tokensPath = t }
        if let t = nonEmpty("LLMSPOOL_TENANT") { c.defaultTenant = t }
        if let n = number("LLMSPOOL_MAX_BODY", 1...(64 << 20)) { c.maxBodyBytes = n }
        if let n = number("LLMSPOOL_MAX_FILE", 1...(512 << 20)) { c.maxFileBytes = n }
        if let n = number("LLMSPOOL_MAX_WAITING", 1...10_000_000) { c.maxWaitingPerTenant = n }
        if let n = number("LLMSPOOL_COUNT_CACHE", 0...60_000) { c.waitingCountMaxAgeMilliseconds = Int64(n) }
        if let n = number("LLMSPOOL_HEARTBEAT", 1...3600) { c.heartbeatMilliseconds = Int64(n) * 1000 }
        if let n = number("LLMSPOOL_EVENTS_PAD", 0...(1 << 20)) { c.eventPaddingBytes = n }
        if let n = number("LLMSPOOL_STREAM_MAX", 1...86400) { c.maxStreamMilliseconds = Int64(n) * 1000 }
        return c
    }
}
