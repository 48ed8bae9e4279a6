public import JSON
public import Settings
public import Spool

/// The `cgi` section of the configuration file. The CGI reads the file only when
/// `LLMSPOOL_CONFIG` names it (a request should not pay for a file it was not told about);
/// the variables of the environment override it.
extension Configuration {
    /// The settings of `LLMSPOOL_CONFIG`'s file (top-level `spool` and the `cgi` section), or
    /// the defaults with ``settingsError`` set when the file is missing or invalid.
    static func fromSettingsFile(env: (String) -> String?) -> Configuration {
        var c = Configuration()
        guard let path = env(SettingsFile.environmentVariable), !path.isEmpty else { return c }
        do {
            guard let file = try SettingsFile.load(SettingsFile.Location(path: path, explicit: true)) else { return c }
            try c.apply(file)
        } catch {
            c.settingsError = error.description
        }
        return c
    }

    /// Applies a configuration file's `spool` and `cgi` section over these settings.
    public mutating func apply(_ file: SettingsFile) throws(SettingsError) {
        if let s = file.spool { spoolPath = s }
        do { try apply(cgiSection: file.cgi) } catch {
            throw SettingsError(path: file.path, kind: .invalid(error))
        }
    }

    /// Reads a `cgi` section; errors name the key (`cgi.maxBodyBytes`).
    public mutating func apply(cgiSection section: JSONObject) throws(DocumentError) {
        try Setting.apply(section, prefix: "cgi.", name: "cgi", Self.cgiSettings, to: &self)
    }

    /// The `cgi` section's settings, each with its variable: the file, the environment, `config show`
    /// and the table in docs/configuration.md all read this.
    public static let cgiSettings: [Setting<Configuration>] = [
        .optionalString(
            "tokensFile", \.tokensPath, variable: "LLMSPOOL_TOKENS", defaultNote: "only `REMOTE_USER`",
            "the bearer token file (a path; `-` is a file named `-`, not standard input)"),
        .optionalString(
            "defaultTenant", \.defaultTenant, type: "tenant id or null", variable: "LLMSPOOL_TENANT",
            "tenant of users named by `REMOTE_USER`", check: { t, field throws(DocumentError) in try Job.checkName(t, field: field) }),
        .integer("maxBodyBytes", \.maxBodyBytes, 1...(64 << 20), variable: "LLMSPOOL_MAX_BODY", "largest request body"),
        .integer(
            "maxFileBytes", \.maxFileBytes, 1...(512 << 20), variable: "LLMSPOOL_MAX_FILE",
            "largest Batch API upload (`POST /v1/files`, docs/batch.md)"),
        .integer(
            "maxWaitingPerTenant", \.maxWaitingPerTenant, 1...10_000_000, variable: "LLMSPOOL_MAX_WAITING",
            "jobs waiting in `new/` per tenant before `429`"),
        .milliseconds(
            "countCacheMilliseconds", \.waitingCountMaxAge, 0...60_000, variable: "LLMSPOOL_COUNT_CACHE",
            "how long a tenant's count of waiting jobs is reused before `new/` is counted again; 0: count on every POST"),
        .wholeSeconds(
            "heartbeatSeconds", \.heartbeat, 1...3600, variable: "LLMSPOOL_HEARTBEAT",
            "seconds between event-stream heartbeats"),
        .wholeSeconds(
            "maxStreamSeconds", \.maxStream, 1...86400, variable: "LLMSPOOL_STREAM_MAX",
            "how long an event stream stays open before the client resumes"),
        .integer(
            "eventPaddingBytes", \.eventPaddingBytes, 0...(1 << 20), variable: "LLMSPOOL_EVENTS_PAD",
            "padding after each event, for gateways that buffer (fcgiwrap: 8192)"),
    ]

    /// The `cgi` section these settings amount to, every key present (`null`: not set).
    public func cgiSectionJSON() -> JSONValue { Setting.section(Self.cgiSettings, of: self) }
}
