import Basics
public import JSON
public import Spool

/// One setting, declared once: its key in the configuration file, the environment variable and
/// the command-line flag that may also set it, the rule its value keeps, and the row the docs'
/// table gives it. Reading the file, reading a variable or a flag, `config show`, and the table
/// in docs/configuration.md (checked by a test) all come from this declaration, so they cannot
/// drift apart.
public struct Setting<Root>: Sendable {
    /// The key in the file's section (`maxBodyBytes`).
    public let key: String
    /// The environment variable of the same meaning (`LLMSPOOL_MAX_BODY`), if there is one.
    public let variable: String?
    /// The flag of the same meaning (`--concurrency`), if there is one.
    public let flag: String?
    /// The docs' "type" column (`integer 1–67108864`).
    public let type: String
    /// The docs' "default" column where the value alone does not say enough (`null: only REMOTE_USER`).
    public let defaultNote: String?
    /// The docs' "meaning" column, and the flag's help.
    public let meaning: String
    let readJSON: @Sendable (inout Root, SettingValue) throws(DocumentError) -> Void
    let readText: @Sendable (inout Root, String, String) throws(DocumentError) -> Void
    let write: @Sendable (Root) -> JSONValue

    init(
        key: String, variable: String?, flag: String?, type: String, defaultNote: String?, meaning: String,
        readJSON: @escaping @Sendable (inout Root, SettingValue) throws(DocumentError) -> Void,
        readText: @escaping @Sendable (inout Root, String, String) throws(DocumentError) -> Void,
        write: @escaping @Sendable (Root) -> JSONValue
    ) {
        self.key = key
        self.variable = variable
        self.flag = flag
        self.type = type
        self.defaultNote = defaultNote
        self.meaning = meaning
        self.readJSON = readJSON
        self.readText = readText
        self.write = write
    }

    /// Sets the value from the file (`v.path` names the key in errors).
    public func apply(_ v: SettingValue, to root: inout Root) throws(DocumentError) { try readJSON(&root, v) }

    /// Sets the value from a variable or a flag's text; errors name `source` (`LLMSPOOL_MAX_BODY`).
    public func apply(text: String, from source: String, to root: inout Root) throws(DocumentError) {
        try readText(&root, text, source)
    }

    /// The value as the file would carry it (`null`: not set).
    public func value(of root: Root) -> JSONValue { write(root) }
}

extension Setting {
    /// An integer in `range`, stored as it is.
    public static func integer(
        _ key: String, _ path: any WritableKeyPath<Root, Int> & Sendable, _ range: ClosedRange<Int>,
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String
    ) -> Setting {
        whole(key, path, range, variable: variable, flag: flag, defaultNote: defaultNote, meaning, stored: { $0 }, shown: { $0 })
    }

    /// A duration given as whole milliseconds in `range`.
    public static func milliseconds(
        _ key: String, _ path: any WritableKeyPath<Root, Duration> & Sendable, _ range: ClosedRange<Int>,
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String
    ) -> Setting {
        whole(
            key, path, range, variable: variable, flag: flag, defaultNote: defaultNote, meaning,
            stored: { .milliseconds($0) }, shown: { Int(clamping: $0.wholeMilliseconds) })
    }

    /// A duration given as whole seconds in `range`.
    public static func wholeSeconds(
        _ key: String, _ path: any WritableKeyPath<Root, Duration> & Sendable, _ range: ClosedRange<Int>,
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String
    ) -> Setting {
        whole(
            key, path, range, variable: variable, flag: flag, defaultNote: defaultNote, meaning,
            stored: { .seconds($0) }, shown: { Int(clamping: $0.wholeMilliseconds / 1000) })
    }

    /// An integer in `range`, or null (not set: `defaultNote` says what then).
    public static func optionalInteger(
        _ key: String, _ path: any WritableKeyPath<Root, Int?> & Sendable, _ range: ClosedRange<Int>,
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String
    ) -> Setting {
        Setting(
            key: key, variable: variable, flag: flag, type: "integer \(range.lowerBound)–\(range.upperBound) or null",
            defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in root[keyPath: path] = v.isNull ? nil : try v.int(range) },
            readText: { root, text, source throws(DocumentError) in
                root[keyPath: path] = try SettingValue.integer(text, range, source: source)
            },
            write: { $0[keyPath: path].map { .integer($0) } ?? .null })
    }

    /// One of the cases of `Choice`, by its raw value.
    public static func choice<Choice: RawRepresentable & CaseIterable & Sendable>(
        _ key: String, _ path: any WritableKeyPath<Root, Choice> & Sendable,
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String
    ) -> Setting where Choice.RawValue == String {
        let names = Choice.allCases.map(\.rawValue)
        let rule = "must be " + names.map { "\"\($0)\"" }.joined(separator: " or ")
        return Setting(
            key: key, variable: variable, flag: flag, type: names.map { "`\"\($0)\"`" }.joined(separator: " or "),
            defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in
                guard let c = Choice(rawValue: try v.string()) else { throw DocumentError(field: v.path, rule) }
                root[keyPath: path] = c
            },
            readText: { root, text, source throws(DocumentError) in
                guard let c = Choice(rawValue: text) else { throw DocumentError(field: source, "\(rule), not \"\(text)\"") }
                root[keyPath: path] = c
            },
            write: { .string($0[keyPath: path].rawValue) })
    }

    /// An integer in `range` in the file, a variable or a flag, kept as `stored(n)`.
    private static func whole<Value>(
        _ key: String, _ path: any WritableKeyPath<Root, Value> & Sendable, _ range: ClosedRange<Int>,
        variable: String?, flag: String?, defaultNote: String?, _ meaning: String,
        stored: @escaping @Sendable (Int) -> Value, shown: @escaping @Sendable (Value) -> Int
    ) -> Setting {
        Setting(
            key: key, variable: variable, flag: flag, type: "integer \(range.lowerBound)–\(range.upperBound)",
            defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in root[keyPath: path] = stored(try v.int(range)) },
            readText: { root, text, source throws(DocumentError) in
                root[keyPath: path] = stored(try SettingValue.integer(text, range, source: source))
            },
            write: { .integer(shown($0[keyPath: path])) })
    }

    /// A non-empty string or null (not set), checked by `check` (which names `field` in its error).
    public static func optionalString(
        _ key: String, _ path: any WritableKeyPath<Root, String?> & Sendable, type: String = "string or null",
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String,
        check: @escaping @Sendable (_ value: String, _ field: String) throws(DocumentError) -> Void = { _, _ in }
    ) -> Setting {
        Setting(
            key: key, variable: variable, flag: flag, type: type, defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in
                let s = try v.optionalString()
                if let s { try check(s, v.path) }
                root[keyPath: path] = s
            },
            readText: { root, text, source throws(DocumentError) in
                guard !text.isEmpty else { throw DocumentError(field: source, "must not be empty") }
                try check(text, source)
                root[keyPath: path] = text
            },
            write: { $0[keyPath: path].map(JSONValue.string) ?? .null })
    }
}

extension Setting {
    /// A duration given as a number of seconds (fractions allowed, kept to the millisecond) in
    /// `range`, raised to `floor` at least. From a variable or a flag it is a duration: `90s`,
    /// `500ms`, `1h30m`, or a bare number of seconds.
    public static func seconds(
        _ key: String, _ path: any WritableKeyPath<Root, Duration> & Sendable, _ range: ClosedRange<Double>,
        floor: Duration = .zero, type: String? = nil, variable: String? = nil, flag: String? = nil, defaultNote: String? = nil,
        _ meaning: String
    ) -> Setting {
        let rule = "a number of seconds from \(number(range.lowerBound)) to \(number(range.upperBound))"
        return Setting(
            key: key, variable: variable, flag: flag, type: type ?? "seconds, \(number(range.lowerBound))–\(number(range.upperBound))",
            defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in
                guard let d = v.value.doubleValue, range.contains(d) else { throw DocumentError(field: v.path, "must be \(rule)") }
                root[keyPath: path] = max(floor, .milliseconds(Int64((d * 1000).rounded())))
            },
            readText: { root, text, source throws(DocumentError) in
                guard let ms = HumanDuration.parseMilliseconds(text), range.contains(Double(ms) / 1000) else {
                    throw DocumentError(field: source, "must be a duration like 90s, 500ms or 1h30m, \(rule), not \"\(text)\"")
                }
                root[keyPath: path] = max(floor, .milliseconds(ms))
            },
            write: { .double(Double($0[keyPath: path].wholeMilliseconds) / 1000) })
    }

    /// A number above 0 and at most 1 (a share).
    public static func fraction(
        _ key: String, _ path: any WritableKeyPath<Root, Double> & Sendable, flag: String? = nil, _ meaning: String
    ) -> Setting {
        let rule = "must be a number above 0 and at most 1"
        return Setting(
            key: key, variable: nil, flag: flag, type: "number, above 0, at most 1", defaultNote: nil, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in
                guard let d = v.value.doubleValue, d > 0, d <= 1 else { throw DocumentError(field: v.path, rule) }
                root[keyPath: path] = d
            },
            readText: { root, text, source throws(DocumentError) in
                guard let d = Double(text), d > 0, d <= 1 else { throw DocumentError(field: source, "\(rule), not \"\(text)\"") }
                root[keyPath: path] = d
            },
            write: { .double($0[keyPath: path]) })
    }

    /// A string, checked by `check` (which names `field` in its error).
    public static func string(
        _ key: String, _ path: any WritableKeyPath<Root, String> & Sendable, type: String = "string",
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String,
        check: @escaping @Sendable (_ value: String, _ field: String) throws(DocumentError) -> Void
    ) -> Setting {
        Setting(
            key: key, variable: variable, flag: flag, type: type, defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in
                let s = try v.string()
                try check(s, v.path)
                root[keyPath: path] = s
            },
            readText: { root, text, source throws(DocumentError) in
                try check(text, source)
                root[keyPath: path] = text
            },
            write: { .string($0[keyPath: path]) })
    }

    /// `true` or `false` (from a flag's text: `true`/`false`).
    public static func bool(
        _ key: String, _ path: any WritableKeyPath<Root, Bool> & Sendable,
        variable: String? = nil, flag: String? = nil, defaultNote: String? = nil, _ meaning: String
    ) -> Setting {
        Setting(
            key: key, variable: variable, flag: flag, type: "boolean", defaultNote: defaultNote, meaning: meaning,
            readJSON: { root, v throws(DocumentError) in root[keyPath: path] = try v.bool() },
            readText: { root, text, source throws(DocumentError) in
                switch text {
                case "true": root[keyPath: path] = true
                case "false": root[keyPath: path] = false
                default: throw DocumentError(field: source, "must be true or false, not \"\(text)\"")
                }
            },
            write: { .bool($0[keyPath: path]) })
    }

    /// A setting with its own reader and writer (an object of further settings); not settable
    /// from a variable or a flag.
    public static func custom(
        _ key: String, type: String, defaultNote: String? = nil, _ meaning: String,
        read: @escaping @Sendable (inout Root, SettingValue) throws(DocumentError) -> Void,
        write: @escaping @Sendable (Root) -> JSONValue
    ) -> Setting {
        Setting(
            key: key, variable: nil, flag: nil, type: type, defaultNote: defaultNote, meaning: meaning, readJSON: read,
            readText: { _, _, source throws(DocumentError) in throw DocumentError(field: source, "is set in the file only") },
            write: write)
    }

    /// `2`, `0.5`, `604800`: a bound as the docs write it.
    static func number(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d) }
}

extension Setting {
    /// The docs' table of `settings` with `defaults` in the default column; the fourth column is
    /// the variable (`variables: true`) or the flag.
    public static func markdownTable(_ settings: [Setting], defaults: Root, variables: Bool) -> String {
        var lines = ["| key | type | default | \(variables ? "variable" : "flag") | meaning |", "|---|---|---|---|---|"]
        for s in settings {
            let def: String
            switch (s.value(of: defaults), s.defaultNote) {
            case (.null, let note?): def = "null: \(note)"
            case (.object, let note?): def = note  // a section of its own, tabled below
            case (.string(let text), _): def = "`\(text)`"
            case (let v, let note):
                let shown = String(decoding: v.serialized(), as: UTF8.self)
                def = note.map { "\(shown) (\($0))" } ?? shown
            }
            let other: String
            if variables {
                other = s.variable.map { "`\($0)`" } ?? "—"
            } else {
                let flags = s.flag.map { $0.split(separator: " ").map { "`\($0)`" }.joined(separator: ", ") }
                let variable = s.variable.map { "env `\($0)`" }
                other = [flags, variable].compactMap { $0 }.joined(separator: ", ")
            }
            lines.append("| `\(s.key)` | \(s.type) | \(def) | \(other.isEmpty ? "—" : other) | \(s.meaning) |")
        }
        return lines.joined(separator: "\n")
    }

    /// Each member of a section through its declaration; an unknown key is refused naming the
    /// known ones (and the nearest, when it looks like a typo).
    /// `name` is the section's, for the message (`cgi`, `worker`).
    public static func apply(
        _ section: JSONObject, prefix: String, name: String, _ settings: [Setting], to root: inout Root
    ) throws(DocumentError) {
        for (key, v) in section.settings(under: prefix) {
            guard let s = settings.first(where: { $0.key == key }) else {
                let keys = settings.map(\.key)
                throw DocumentError(
                    field: v.path,
                    "unknown setting\(DocumentError.didYouMean(key, in: keys)) (\(name) settings: \(keys.joined(separator: ", ")))")
            }
            try s.apply(v, to: &root)
        }
    }

    /// The declaration of `key` in `settings` (a programming error if there is none).
    public static func named(_ key: String, in settings: [Setting]) -> Setting {
        guard let s = settings.first(where: { $0.key == key }) else { preconditionFailure("no setting \(key) of \(Root.self)") }
        return s
    }

    /// Every setting's value, in declaration order, as a section.
    public static func section(_ settings: [Setting], of root: Root) -> JSONValue {
        var o = JSONObject()
        for s in settings { o[s.key] = s.value(of: root) }
        return .object(o)
    }
}

extension SettingValue {
    /// An integer in `range` from a variable's or a flag's text; the error names `source`.
    public static func integer(_ text: String, _ range: ClosedRange<Int>, source: String) throws(DocumentError) -> Int {
        guard let n = Int(text), range.contains(n) else {
            throw DocumentError(field: source, "must be an integer from \(range.lowerBound) to \(range.upperBound), not \"\(text)\"")
        }
        return n
    }
}
