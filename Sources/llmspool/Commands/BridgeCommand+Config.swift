import ArgumentParser
import Settings
import Spool

/// The configuration file under the bridge's flags: the defaults, then the file's `bridge` section,
/// then `LLMSPOOL_LOG_LEVEL`, then the flags (docs/configuration.md); `-X` properties come after
/// the file's.
extension BridgeCommand {
    /// The settings this bridge runs with, and its spool. Fails with 65 for a bad file, 64 for a
    /// bad variable, or when no brokers or no direction are set anywhere.
    func resolve() throws -> (spool: String, settings: BridgeSettings) {
        let file = try configFile.load()
        var spool = options
        spool.useSpool(of: file)  // --spool, else LLMSPOOL_SPOOL, else the file's, else ./spool
        var s = try Self.settings(of: file)
        try SettingFlags.applyEnvironment(BridgeSettings.settings, to: &s)
        for f in flags {
            do { try f.setting.apply(text: f.text, from: f.flag, to: &s) } catch { throw Failed(error.description, code: ExitStatus.usage) }
        }
        s.properties = BridgeSettings.merged(s.properties, try propertyFlags)
        if s.brokers == nil { throw Failed("give --brokers LIST, or set bridge.brokers in the configuration file", code: ExitStatus.usage) }
        if s.jobsIn == nil, s.jobsOut == nil, s.resultsIn == nil, s.resultsOut == nil, s.deltasOut == nil {
            throw Failed(
                "give at least one of --jobs-in, --jobs-out, --results-in, --results-out and --deltas-out (or bridge.jobsIn, … in the configuration file)",
                code: ExitStatus.usage)
        }
        return (spool.path, s)
    }

    /// The file's `bridge` section over the defaults.
    static func settings(of file: SettingsFile?) throws -> BridgeSettings {
        guard let file else { return BridgeSettings() }
        do { return try BridgeSettings.parse(file.bridge) } catch { throw ConfigFile.invalid(file, error) }
    }
}
