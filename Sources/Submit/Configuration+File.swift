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
        for (key, v) in section.settings(under: "cgi.") {
            switch key {
            case "tokensFile": tokensPath = try v.optionalString()
            case "defaultTenant":
                defaultTenant = try v.optionalString()
                if let t = defaultTenant { try Job.checkName(t, field: v.path) }
            case "maxBodyBytes": maxBodyBytes = try v.int(1...(64 << 20))
            case "maxFileBytes": maxFileBytes = try v.int(1...(512 << 20))
            case "maxWaitingPerTenant": maxWaitingPerTenant = try v.int(1...10_000_000)
            case "heartbeatSeconds": heartbeatMilliseconds = Int64(try v.int(1...3600)) * 1000
            case "maxStreamSeconds": maxStreamMilliseconds = Int64(try v.int(1...86400)) * 1000
            case "eventPaddingBytes": eventPaddingBytes = try v.int(0...(1 << 20))
            default:
                throw DocumentError(field: v.path, "unknown setting\(DocumentError.didYouMean(key, in: Self.cgiKeys)) (cgi settings: \(Self.cgiKeys.joined(separator: ", ")))")
            }
        }
    }

    public static let cgiKeys = ["tokensFile", "defaultTenant", "maxBodyBytes", "maxFileBytes", "maxWaitingPerTenant",
                                 "heartbeatSeconds", "maxStreamSeconds", "eventPaddingBytes"]

    /// The `cgi` section these settings amount to, every key present (`null`: not set).
    public func cgiSectionJSON() -> JSONValue {
        var o = JSONObject()
        o["tokensFile"] = tokensPath.map(JSONValue.string) ?? .null
        o["defaultTenant"] = defaultTenant.map(JSONValue.string) ?? .null
        o["maxBodyBytes"] = .integer(maxBodyBytes)
        o["maxFileBytes"] = .integer(maxFileBytes)
        o["maxWaitingPerTenant"] = .integer(maxWaitingPerTenant)
        o["heartbeatSeconds"] = .integer(Int(heartbeatMilliseconds / 1000))
        o["maxStreamSeconds"] = .integer(Int(maxStreamMilliseconds / 1000))
        o["eventPaddingBytes"] = .integer(eventPaddingBytes)
        return .object(o)
    }
}
