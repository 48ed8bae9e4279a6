import ArgumentParser
import JSON
import Settings
import Spool
import Submit
import Worker

/// `llmspool config check|show`: the configuration file (docs/configuration.md).
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check the configuration file, or show the settings in effect.",
        discussion: """
            One JSON file holds the settings of the worker, the bridge and the CGI endpoint: \
            --config FILE, else $LLMSPOOL_CONFIG, else /etc/llmspool/llmspool.json. Every key and \
            its default is in docs/configuration.md.
            """,
        subcommands: [Check.self, Show.self]
    )

    /// The key of each bad setting, section by section (one per section: each stops at its first).
    static func problems(in file: SettingsFile) -> [DocumentError] {
        var found: [DocumentError] = []
        var worker = WorkerConfiguration()
        do { try worker.apply(json: .object(file.worker), source: file.path) } catch {
            found.append(DocumentError(field: file.workerKey(error.field), error.message))
        }
        if found.isEmpty, let u = worker.llmURL {
            do { _ = try ResponderFactory.parse(u) } catch { found.append(DocumentError(field: file.workerKey("llmURL"), "\(error)")) }
        }
        do { _ = try BridgeSettings.parse(file.bridge) } catch { found.append(error) }
        var cgi = Configuration()
        do { try cgi.apply(cgiSection: file.cgi) } catch { found.append(error) }
        return found
    }
}

extension ConfigCommand {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration file; each error names its key.",
            discussion: """
                Checks the top level and every section (worker, bridge, cgi): unknown keys, types and \
                ranges. Prints a short summary and exits 0 when the file is valid; otherwise prints \
                FILE: KEY: PROBLEM for each bad section and exits 65 (also for a file that is not \
                JSON, with its line and column). 66: no such file, or it cannot be read.
                """
        )

        @Argument(help: ArgumentHelp("The file (default $LLMSPOOL_CONFIG, else /etc/llmspool/llmspool.json).", valueName: "FILE"))
        var file: String?

        func run() throws {
            try reporting {
                var location = SettingsFile.locate(flag: file, environment: Environment.get)
                location.explicit = true  // asked to check it: it must exist
                guard let f = try ConfigFile.load(location) else { throw Failed("\(location.path): no such configuration file", code: ExitStatus.noInput) }
                let problems = ConfigCommand.problems(in: f)
                if !problems.isEmpty {
                    for p in problems { Output.error("\(f.path): \(p.description)") }
                    throw ExitCode(ExitStatus.dataError)
                }
                for line in Self.summary(of: f) { Output.line(line) }
            }
        }

        /// A few lines on what the file sets (it is valid).
        static func summary(of f: SettingsFile) -> [String] {
            var lines = [f.path + ": ok" + (f.isFlatWorkerFile ? " (a flat worker file: read as the worker section)" : "")]
            lines.append("  spool:  " + (f.spool ?? "not set (--spool, LLMSPOOL_SPOOL, or ./spool)"))
            var w = WorkerConfiguration()
            try? w.apply(json: .object(f.worker), source: f.path)
            let tenants = w.tenants.keys.sorted()
            lines.append(
                "  worker: "
                    + (f.worker.isEmpty
                        ? "no settings (defaults)"
                        : [
                            "llmURL " + (w.llmURL ?? "not set"), "model " + w.defaultModel, "\(w.maxInFlight) calls in flight",
                            "\(w.maxAttempts) attempts", tenants.isEmpty ? "no tenant limits" : "limits for " + tenants.joined(separator: ", "),
                        ].joined(separator: ", ")))
            let b = (try? BridgeSettings.parse(f.bridge)) ?? BridgeSettings()
            var directions: [String] = []
            if let t = b.jobsIn { directions.append("jobs in from \(t)") }
            if let t = b.jobsOut { directions.append("jobs out to \(t)") }
            if let t = b.resultsIn { directions.append("results in from \(t)") }
            if let t = b.resultsOut { directions.append("results out to \(t)") }
            if let t = b.deltasOut { directions.append("deltas out to \(t)") }
            lines.append("  bridge: " + (f.bridge.isEmpty ? "no settings" : (["brokers " + (b.brokers ?? "not set")] + directions).joined(separator: ", ")))
            var c = Configuration()
            try? c.apply(cgiSection: f.cgi)
            lines.append(
                "  cgi:    "
                    + (f.cgi.isEmpty
                        ? "no settings"
                        : [
                            "tokens " + (c.tokensPath ?? "none"), "max body \(c.maxBodyBytes) bytes", "\(c.maxWaitingPerTenant) waiting jobs per tenant",
                        ].joined(separator: ", ")) + " (read by the CGI when LLMSPOOL_CONFIG names this file)")
            return lines
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the settings in effect, defaults filled in, as a configuration file (JSON).",
            discussion: """
                Reads FILE (default $LLMSPOOL_CONFIG, else /etc/llmspool/llmspool.json if it exists), \
                applies the environment the processes read (LLMSPOOL_SPOOL, LLMSPOOL_LLM_URL, \
                LLMSPOOL_LOG_LEVEL, the CGI's LLMSPOOL_* variables) and --spool, and prints every \
                setting of every section; null means not set. Other flags of a command are not applied: use `llmspool worker \
                … --print-config` or `llmspool bridge … --print-config` for those. API keys are never shown.
                """
        )

        @Argument(help: ArgumentHelp("The file (default $LLMSPOOL_CONFIG, else /etc/llmspool/llmspool.json if it exists).", valueName: "FILE"))
        var file: String?

        @OptionGroup var options: SpoolOptions

        func run() throws {
            try reporting {
                let location = SettingsFile.locate(flag: file, environment: Environment.get)
                let f = try ConfigFile.load(location)
                if f == nil { Output.note("\(location.path) does not exist; showing the defaults") }
                let worker = try WorkerCommand.parse(options.spool.map { ["--spool", $0] } ?? []).resolve(file: f)
                var bridge = BridgeSettings()
                if let f {
                    do throws(DocumentError) { bridge = try BridgeSettings.parse(f.bridge) } catch { throw ConfigFile.invalid(f, error) }
                }
                try SettingFlags.applyEnvironment(BridgeSettings.settings, to: &bridge)
                // The CGI's own reading of the file and its variables, as if LLMSPOOL_CONFIG named this file.
                let cgi = Configuration.from(env: { name in
                    name == SettingsFile.environmentVariable ? f?.path : Environment.get(name)
                })
                if let why = cgi.settingsError { throw Failed(why, code: ExitStatus.dataError) }
                let all: JSONObject = [
                    "spool": .string(worker.spoolPath), "worker": worker.json(), "bridge": bridge.json(), "cgi": cgi.cgiSectionJSON(),
                ]
                Output.line(JSONValue.object(all).prettyText())
            }
        }
    }
}
