/// Settings of the submit endpoint, from the environment the web server passes and the
/// configuration file only — never from the command line: Apache's mod_cgi turns a query string
/// without `=` into arguments (RFC 3875 4.4), so a client writes the command line.
///
/// `LLMSPOOL_SPOOL` names the spool (default `./spool`); every other variable is declared with its
/// key of the file's `cgi` section in ``cgiSettings``.
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
    public var waitingCountMaxAge: Duration = .seconds(1)
    /// Seconds a client is told to wait after a 429 or 503.
    public var retryAfterSeconds = 10
    public var heartbeat: Duration = .seconds(15)
    public var maxStream: Duration = .seconds(3600)
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
        if let s = nonEmpty("LLMSPOOL_SPOOL") { c.spoolPath = s }
        for setting in cgiSettings {
            guard let name = setting.variable, let text = nonEmpty(name) else { continue }
            // A bad value is not passed over: the CGI answers 500 naming the variable, as for a bad file.
            do { try setting.apply(text: text, from: name, to: &c) } catch { c.settingsError = c.settingsError ?? error.description }
        }
        return c
    }
}
