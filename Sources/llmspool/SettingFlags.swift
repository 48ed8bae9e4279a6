import ArgumentParser
import Settings

/// Flags that set a declared ``Setting``: their help comes from the declaration and their text
/// goes through its rule, so a flag, the configuration file and the docs' table cannot disagree.
enum SettingFlags {
    /// A flag's help: its setting's meaning, the default, and the variable that may also set it.
    static func help<Root>(_ s: Setting<Root>, defaults: Root, valueName: String? = nil) -> ArgumentHelp {
        let def: String
        switch s.value(of: defaults) {
        case .null: def = s.defaultNote.map { $0.filter { $0 != "`" } } ?? "none"
        case .string(let text): def = text
        case let v where s.type.hasPrefix("seconds"): def = String(decoding: v.serialized(), as: UTF8.self) + "s"
        case let v: def = String(decoding: v.serialized(), as: UTF8.self)
        }
        let env = s.variable.map { "; env \($0)" } ?? ""
        let meaning = s.meaning.filter { $0 != "`" }
        let text = meaning.prefix(1).uppercased() + meaning.dropFirst() + " (default \(def)\(env))."
        return valueName.map { ArgumentHelp(text, valueName: $0) } ?? ArgumentHelp(text)
    }

    /// The flags given, in the order of `settings`: `texts` maps a setting's key to its flag's
    /// text (nil: not given). A setting's first flag name is the one errors name.
    static func given<Root>(
        _ texts: [String: String?], in settings: [Setting<Root>]
    ) -> [(setting: Setting<Root>, flag: String, text: String)] {
        settings.compactMap { s in
            guard let text = texts[s.key] ?? nil, let flag = s.flag?.split(separator: " ").first else { return nil }
            return (s, String(flag), text)
        }
    }

    /// Sets each of `settings` whose variable is set (an empty variable counts as unset); an
    /// error names the variable. `check` may look further at a value once it is set.
    static func applyEnvironment<Root>(
        _ settings: [Setting<Root>], to root: inout Root, check: (Setting<Root>, String, String) throws -> Void = { _, _, _ in }
    ) throws {
        for setting in settings {
            guard let name = setting.variable, let text = ConfigFile.env(name) else { continue }
            do { try setting.apply(text: text, from: name, to: &root) } catch { throw Failed(error.description, code: ExitStatus.usage) }
            try check(setting, name, text)
        }
    }
}
