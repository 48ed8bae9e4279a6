import ArgumentParser
import JSON
import Settings
import Spool

/// The configuration file under the bridge's flags: every option not given on the command line
/// is taken from the environment, then from the file's `bridge` section (docs/configuration.md).
extension BridgeCommand {
    /// Fills the options not given from the file and the environment; called first by `validate()`.
    mutating func applyConfigFile() throws {
        let file: SettingsFile?
        let settings: BridgeSettings
        do {
            file = try configFile.load()
            settings = try Self.settings(of: file)
        } catch {
            let f = Failed(error)
            Output.error(f.message)
            throw ExitCode(f.code)
        }
        options.useSpool(of: file)
        brokers = brokers ?? settings.brokers
        group = group ?? settings.group
        jobsIn = jobsIn ?? settings.jobsIn
        jobsOut = jobsOut ?? settings.jobsOut
        resultsIn = resultsIn ?? settings.resultsIn
        resultsGroup = resultsGroup ?? settings.resultsGroup
        instanceID = instanceID ?? settings.instanceID
        resultsOut = resultsOut ?? settings.resultsOut
        deltasOut = deltasOut ?? settings.deltasOut
        resultsOf = resultsOf ?? settings.resultsOf?.rawValue
        metricsAddress = metricsAddress ?? settings.metricsAddress
        dlq = dlq ?? settings.deadLetterTopic
        if stopTimeout == nil, let ms = settings.stopTimeoutMs { stopTimeout = "\(ms)ms" }
        maxQueued = maxQueued ?? settings.maxQueued
        properties = settings.properties.map { "\($0.key)=\($0.value)" } + properties  // -X after the file's: -X wins
        logLevel = logLevel ?? ConfigFile.env("LLMSPOOL_LOG_LEVEL") ?? settings.logLevel ?? "info"
        if brokers == nil { throw ValidationError("give --brokers LIST, or set bridge.brokers in the configuration file") }
    }

    /// The file's `bridge` section.
    static func settings(of file: SettingsFile?) throws -> BridgeSettings {
        guard let file else { return BridgeSettings() }
        let s: BridgeSettings
        do { s = try BridgeSettings.parse(file.bridge) } catch { throw ConfigFile.invalid(file, error) }
        return s
    }

    /// `--print-config`: the settings after `applyConfigFile()`, as a configuration file.
    func printEffectiveConfig() throws {
        var s = try Self.settings(of: configFile.load())
        s.brokers = brokers
        s.group = group
        s.jobsIn = jobsIn
        s.jobsOut = jobsOut
        s.resultsIn = resultsIn
        s.resultsGroup = resultsGroup
        s.instanceID = instanceID
        s.resultsOut = resultsOut
        s.deltasOut = deltasOut
        s.resultsOf = resultsOf.flatMap(BridgeSettings.ResultsOf.init(rawValue:))
        s.metricsAddress = metricsAddress
        s.deadLetterTopic = dlq
        s.logLevel = logLevel
        s.stopTimeoutMs = stopTimeoutMilliseconds
        s.maxQueued = maxQueued
        s.properties = []
        for p in properties {  // in order; a later value of a key (a -X over the file's) replaces the earlier
            let i = p.firstIndex(of: "=") ?? p.endIndex
            let property = BridgeSettings.Property(String(p[..<i]), i < p.endIndex ? String(p[p.index(after: i)...]) : "")
            if let k = s.properties.firstIndex(where: { $0.key == property.key }) { s.properties[k] = property } else { s.properties.append(property) }
        }
        Output.line(JSONValue.object(["spool": .string(options.path), "bridge": s.json()]).prettyText())
    }
}
