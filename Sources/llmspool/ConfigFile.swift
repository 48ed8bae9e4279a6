import ArgumentParser
import Settings
import Spool

/// `--config FILE`, shared by the commands that read the configuration file (docs/configuration.md).
struct ConfigFileOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The configuration file (env LLMSPOOL_CONFIG; default \(SettingsFile.defaultPath), read if it exists).",
            valueName: "FILE"))
    var config: String?

    var location: SettingsFile.Location { SettingsFile.locate(flag: config, environment: Environment.get) }

    /// The file, or nil when none is named and the default does not exist.
    func load() throws(Failed) -> SettingsFile? { try ConfigFile.load(location) }
}

enum ConfigFile {
    /// Reads the file at `location`, turning a failure into a message and its sysexits code:
    /// 66 missing or unreadable, 65 not JSON or a bad setting, 74 another I/O error.
    static func load(_ location: SettingsFile.Location) throws(Failed) -> SettingsFile? {
        do { return try SettingsFile.load(location) } catch { throw failure(error) }
    }

    static func failure(_ error: SettingsError) -> Failed {
        switch error.kind {
        case .missing, .unreadable: Failed(error.description, code: ExitStatus.noInput)
        case .io: Failed(error.description, code: ExitStatus.ioError)
        case .syntax, .invalid: Failed(error.description, code: ExitStatus.dataError)
        }
    }

    /// A bad setting of `file`, named as it is written there.
    static func invalid(_ file: SettingsFile, _ error: DocumentError) -> Failed {
        failure(SettingsError(path: file.path, kind: .invalid(error)))
    }

    /// A non-empty environment variable.
    static func env(_ name: String) -> String? { Environment.get(name).flatMap { $0.isEmpty ? nil : $0 } }
}

extension SpoolOptions {
    /// Takes the file's `spool` when neither `--spool` nor `LLMSPOOL_SPOOL` is given.
    mutating func useSpool(of file: SettingsFile?) {
        if spool == nil, ConfigFile.env("LLMSPOOL_SPOOL") == nil, let s = file?.spool { spool = s }
    }
}
