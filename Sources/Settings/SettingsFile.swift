public import JSON
public import Spool

/// The llmspool configuration file (docs/configuration.md): one JSON object with the spool at
/// the top level and a section per process — `worker`, `bridge`, `cgi`.
///
/// This type only finds, reads and splits the file; each section is validated by the code that
/// uses it (`WorkerConfiguration.apply`, ``BridgeSettings/parse(_:at:)``, the CGI's
/// `Configuration`), so that an error names the key as it is written in the file.
public struct SettingsFile: Sendable, Equatable {
    /// Read when neither `--config` nor `LLMSPOOL_CONFIG` names a file, if it exists.
    public static let defaultPath = "/etc/llmspool/llmspool.json"
    /// The environment variable naming the file.
    public static let environmentVariable = "LLMSPOOL_CONFIG"
    /// The largest file read (1 MiB).
    public static let sizeLimit = 1 << 20
    /// The keys of a file with sections.
    public static let topLevelKeys = ["spool", "worker", "bridge", "cgi"]

    /// The file this came from.
    public var path: String
    /// The top-level `spool`, if set.
    public var spool: String?
    public var worker = JSONObject()
    public var bridge = JSONObject()
    public var cgi = JSONObject()
    /// True for a file in the worker's earlier flat layout (no `worker`, `bridge` or `cgi` key),
    /// which is read as the `worker` section.
    public var isFlatWorkerFile = false

    public init(path: String) { self.path = path }

    /// How the key of a worker setting is written in this file: `worker.KEY`, or `KEY` in a flat file.
    public func workerKey(_ key: String) -> String {
        isFlatWorkerFile || key.isEmpty ? key : "worker." + key
    }

    /// Which file to read: `flag` (`--config`), else `LLMSPOOL_CONFIG`, else the default path.
    /// An empty value counts as unset.
    public static func locate(flag: String?, environment: (String) -> String?) -> Location {
        if let flag, !flag.isEmpty { return Location(path: flag, explicit: true) }
        if let e = environment(environmentVariable), !e.isEmpty { return Location(path: e, explicit: true) }
        return Location(path: defaultPath, explicit: false)
    }

    /// Where the configuration comes from, and whether someone named it (then it must exist).
    public struct Location: Sendable, Equatable {
        public var path: String
        public var explicit: Bool

        public init(path: String, explicit: Bool) {
            self.path = path
            self.explicit = explicit
        }
    }

    /// Reads and splits the file at `location`; nil when it is the default path and does not exist.
    public static func load(_ location: Location) throws(SettingsError) -> SettingsFile? {
        let bytes: [UInt8]
        do { bytes = try Spool.readInput(location.path, limit: sizeLimit) } catch {
            if case .system(let e) = error, e.errno == .noSuchFileOrDirectory {
                if !location.explicit { return nil }
                throw SettingsError(path: location.path, kind: .missing)
            }
            if case .system(let e) = error, [.permissionDenied, .isDirectory, .notDirectory].contains(e.errno) {
                throw SettingsError(path: location.path, kind: .unreadable("\(e.errno.description) (\(e.call))"))
            }
            throw SettingsError(path: location.path, kind: .io(error.description))
        }
        if bytes.count > sizeLimit {
            throw SettingsError(path: location.path, kind: .invalid(DocumentError(field: "", "larger than 1 MiB: not a configuration file")))
        }
        return try parse(bytes, path: location.path)
    }

    /// Splits a file's bytes into its sections, checking the top level only.
    public static func parse(_ bytes: [UInt8], path: String) throws(SettingsError) -> SettingsFile {
        let json: JSONValue
        do { json = try JSONParser.parse(bytes, maxDepth: 16) } catch {
            throw SettingsError(path: path, kind: .syntax(error))
        }
        do { return try split(json, path: path) } catch {
            throw SettingsError(path: path, kind: .invalid(error))
        }
    }

    static func split(_ json: JSONValue, path: String) throws(DocumentError) -> SettingsFile {
        guard case .object(let top) = json else {
            throw DocumentError(field: "", "the file must hold a JSON object, not \(json.typeName)")
        }
        var file = SettingsFile(path: path)
        // A near miss of a section's name (`Worker`) makes a file with sections too, so that it is named as one.
        let sectioned = top.keys.contains { !DocumentError.didYouMean($0, in: ["worker", "bridge", "cgi"]).isEmpty }
        if let s = top["spool"] { file.spool = try SettingValue(s, at: "spool").nonEmptyString() }
        guard sectioned else {
            file.isFlatWorkerFile = true
            file.worker = JSONObject(top.members.filter { $0.key != "spool" })
            return file
        }
        for m in top.members {
            switch m.key {
            case "spool": continue
            case "worker": file.worker = try SettingValue(m.value, at: m.key).section()
            case "bridge": file.bridge = try SettingValue(m.value, at: m.key).section()
            case "cgi": file.cgi = try SettingValue(m.value, at: m.key).section()
            default:
                throw DocumentError(
                    field: m.key,
                    "unknown top-level setting\(DocumentError.didYouMean(m.key, in: topLevelKeys)) (the top level holds \(topLevelKeys.joined(separator: ", ")); worker settings go in \"worker\")"
                )
            }
        }
        if file.worker["spool"] != nil {
            throw DocumentError(field: "worker.spool", "the spool is set once, at the top level (\"spool\")")
        }
        return file
    }
}

/// Why the configuration file could not be used. Its description starts with the path, then the
/// key at fault: `/etc/llmspool/llmspool.json: worker.maxAttempts: must be an integer from 1 to 100`.
public struct SettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The file named by `--config` or `LLMSPOOL_CONFIG` does not exist.
        case missing
        /// It exists but cannot be read (permissions, a directory).
        case unreadable(String)
        /// Reading it failed otherwise.
        case io(String)
        /// It is not JSON.
        case syntax(JSONParseError)
        /// A setting is unknown or has a bad value (or the file is over 1 MiB).
        case invalid(DocumentError)
    }

    public var path: String
    public var kind: Kind

    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    public var description: String {
        switch kind {
        case .missing: "\(path): no such configuration file"
        case .unreadable(let why): "\(path): cannot read the configuration file: \(why)"
        case .io(let why): "\(path): \(why)"
        case .syntax(let e): "\(path): not valid JSON: \(e.message) at line \(e.line), column \(e.column)"
        case .invalid(let e): "\(path): \(e.description)"
        }
    }
}
