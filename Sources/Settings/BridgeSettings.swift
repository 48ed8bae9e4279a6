public import JSON
public import Spool

/// What `llmspool bridge` runs with: the defaults, the configuration file's `bridge` section over
/// them, then `LLMSPOOL_LOG_LEVEL`, then the flags. Each setting is declared once in
/// ``settings``, which the file reader, the flags (their rules and `--help`), `--print-config`,
/// `config show` and the table in docs/configuration.md (checked by a test) all read.
public struct BridgeSettings: Sendable, Equatable {
    /// Which results `resultsOut` publishes.
    public enum ResultsOf: String, Sendable, Equatable, CaseIterable {
        /// Every result in `done/`.
        case all
        /// Only results of jobs that came in from Kafka.
        case kafka
    }

    /// A librdkafka property, `key=value`.
    public struct Property: Sendable, Equatable {
        public var key: String
        public var value: String

        public init(_ key: String, _ value: String) {
            self.key = key
            self.value = value
        }
    }

    /// Bootstrap servers, `host:port,…`; the bridge needs them from the file or a flag.
    public var brokers: String?
    /// Consumer group of `jobsIn`.
    public var group = "llmspool-bridge"
    public var jobsIn: String?
    public var jobsOut: String?
    public var resultsIn: String?
    public var resultsOut: String?
    /// The partial answers of streamed jobs go to this topic.
    public var deltasOut: String?
    /// Consumer group of `resultsIn`: nil = `llmspool-results.HOSTNAME` (every host reads every result).
    public var resultsGroup: String?
    /// Static group membership of the consumers: nil = the bridge's default (from the host name
    /// and the spool), "" = none.
    public var instanceID: String?
    public var resultsOf = ResultsOf.all
    /// DLQ of `jobsIn`: nil = Spring's `error.TOPIC.GROUP`, "" = none.
    public var deadLetterTopic: String?
    public var metricsAddress: String?
    public var logLevel = "info"
    /// The longest a stop may take; below systemd's `TimeoutStopSec=20s` in `llmspool-bridge.service`.
    public var stopTimeout = Duration.seconds(15)
    /// Most jobs held for `jobsOut` at once, sent or being moved to `forwarded/`.
    public var maxForwarding = 5000
    /// Back-pressure of `jobsIn`: the most jobs from Kafka left waiting in `new/` and `cur/`
    /// before the bridge leaves its consumer group; nil = no limit.
    public var maxQueued: Int?
    /// Applied in this order, after the bridge's own defaults and before any `-X`.
    public var properties: [Property] = []

    public init() {}

    /// The DLQ in effect: the one set, else Spring's name for `jobsIn` and `group`.
    public var effectiveDeadLetterTopic: String? { deadLetterTopic ?? jobsIn.map { "error.\($0).\(group)" } }

    /// Reads a `bridge` section over the defaults; errors name the key under `prefix` (`bridge.jobsIn`).
    public static func parse(_ section: JSONObject, at prefix: String = "bridge.") throws(DocumentError) -> BridgeSettings {
        var b = BridgeSettings()
        try Setting.apply(section, prefix: prefix, name: "bridge", settings, to: &b)
        return b
    }

    /// The section as JSON, every key present (`null`: not set), the DLQ's default spelled out.
    /// Parsing it gives back the same effective settings, except that the value of a property
    /// whose name holds `password` or `secret` (`sasl.password`, `ssl.key.password`, …) is
    /// written as `(hidden)`.
    public func json() -> JSONValue { Setting.section(Self.settings, of: self) }

    /// Every key of the section, in declaration order.
    public static var keys: [String] { settings.map(\.key) }

    /// The declaration of `key`.
    public static func setting(_ key: String) -> Setting<BridgeSettings> { Setting.named(key, in: settings) }

    /// The `bridge` section's settings (docs/configuration.md; a test checks the table).
    public static let settings: [Setting<BridgeSettings>] = [
        .optionalString(
            "brokers", \.brokers, type: "string", flag: "--brokers", defaultNote: "none; required here or by flag",
            "bootstrap servers, `host:port,host:port` without spaces",
            check: { s, field throws(DocumentError) in
                if s.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" })
                    || s.split(separator: ",", omittingEmptySubsequences: false).contains(where: \.isEmpty)
                {
                    throw DocumentError(field: field, "must be a comma-separated list of host:port, without spaces")
                }
            }),
        .string("group", \.group, flag: "--group", "consumer group of `jobsIn`", check: nonEmpty),
        .optionalString(
            "jobsIn", \.jobsIn, type: "topic or null", flag: "--jobs-in", defaultNote: "off", "consume jobs from this topic into `new/`",
            check: SettingValue.checkTopic),
        .optionalString(
            "jobsOut", \.jobsOut, type: "topic or null", flag: "--jobs-out", defaultNote: "off",
            "publish jobs arriving in `new/` to this topic; they wait in `forwarded/`", check: SettingValue.checkTopic),
        .optionalString(
            "resultsIn", \.resultsIn, type: "topic or null", flag: "--results-in", defaultNote: "off",
            "consume results of forwarded jobs from this topic into `done/`/`failed/`", check: SettingValue.checkTopic),
        .optionalString(
            "resultsGroup", \.resultsGroup, flag: "--results-group", defaultNote: "`llmspool-results.HOSTNAME`", "consumer group of `resultsIn`"),
        Setting(
            key: "instanceId", variable: nil, flag: "--instance-id", type: "string or null",
            defaultNote: "`llmspool.HOSTNAME.HASH` (HASH of the spool's real path)",
            meaning:
                "static group membership of the consumers (`group.instance.id`; the results consumer adds `.results`); `\"\"`: none. Letters, digits, `.`, `_`, `-`, at most 240 (docs/bridge.md, \"Many hosts\")",
            readJSON: { b, v throws(DocumentError) in
                b.instanceID = v.isNull ? nil : try instanceID(v.string(), field: v.path)
            },
            readText: { b, text, source throws(DocumentError) in b.instanceID = try instanceID(text, field: source) },
            write: { $0.instanceID.map(JSONValue.string) ?? .null }),
        .optionalString(
            "resultsOut", \.resultsOut, type: "topic or null", flag: "--results-out", defaultNote: "off",
            "publish the results in `done/` and dead letters in `failed/` to this topic", check: SettingValue.checkTopic),
        .choice(
            "resultsOf", \.resultsOf, flag: "--results-of",
            "which results `resultsOut` publishes, and whose deltas `deltasOut` publishes: all, or only those of jobs that came from Kafka"),
        .optionalString(
            "deltasOut", \.deltasOut, type: "topic or null", flag: "--deltas-out", defaultNote: "off",
            "publish the partial answers of streamed jobs (`\"stream\": true`) to this topic as they are written: one message per delta, restart and end, key jobId (docs/bridge.md, \"Deltas out\")",
            check: SettingValue.checkTopic),
        Setting(
            key: "deadLetterTopic", variable: nil, flag: "--dlq", type: "topic, `\"\"` or null", defaultNote: "`error.<jobsIn>.<group>`",
            meaning: "where invalid messages of `jobsIn` go (Spring's naming); `\"\"`: no DLQ, they are only logged",
            readJSON: { b, v throws(DocumentError) in
                b.deadLetterTopic = v.isNull ? nil : try deadLetterTopic(v.string(), field: v.path)
            },
            readText: { b, text, source throws(DocumentError) in b.deadLetterTopic = try deadLetterTopic(text, field: source) },
            write: { $0.effectiveDeadLetterTopic.map(JSONValue.string) ?? .null }),
        .string(
            "logLevel", \.logLevel, variable: "LLMSPOOL_LOG_LEVEL", flag: "--log-level",
            "least severity logged: trace, debug, info, notice, warning, error or critical", check: SettingValue.checkLogLevel),
        .custom(
            "properties", type: "object of string → string", defaultNote: "`{}`",
            "librdkafka properties, applied after the bridge's own defaults and before `-X key=value` (repeatable); every value is a string (`\"6000\"`, not `6000`), as librdkafka takes them",
            read: { b, v throws(DocumentError) in b.properties = try properties(v) },
            write: { b in
                .object(JSONObject(b.properties.map { .init($0.key, .string(isSecret($0.key) ? "(hidden)" : $0.value)) }))
            }),
        .optionalString(
            "metricsAddress", \.metricsAddress, type: "`HOST:PORT` or null", flag: "--metrics-address", defaultNote: "off",
            "Prometheus metrics of the bridge at `GET /metrics` (docs/bridge.md)",
            check: SettingValue.checkHostPort),
        .seconds(
            "stopTimeoutSeconds", \.stopTimeout, 1...3_600, flag: "--stop-timeout",
            "the longest a stop may take from SIGTERM to exit; work left then is named in the log and the exit is 75 (docs/bridge.md)"),
        .integer(
            "maxForwarding", \.maxForwarding, 1...100_000, flag: "--max-forwarding",
            "most jobs held for `jobsOut` at once, sent or being moved to `forwarded/` (each holds a descriptor)"),
        .optionalInteger(
            "maxQueued", \.maxQueued, 1...1_000_000, flag: "--max-queued", defaultNote: "no limit",
            "back-pressure of `jobsIn`: when this many jobs the bridge brought in wait in `new/` and `cur/`, it leaves its consumer group (the other members take its partitions) and joins again below half of it (docs/bridge.md, \"Back-pressure\")"
        ),
    ]

    static func nonEmpty(_ s: String, _ field: String) throws(DocumentError) {
        if s.isEmpty { throw DocumentError(field: field, "must be a non-empty string") }
    }

    static func instanceID(_ s: String, field: String) throws(DocumentError) -> String {
        guard isInstanceID(s) else {
            throw DocumentError(
                field: field, "must be a Kafka group.instance.id (letters, digits, '.', '_', '-'; at most 240), or \"\" for none, not \"\(s)\"")
        }
        return s
    }

    static func deadLetterTopic(_ s: String, field: String) throws(DocumentError) -> String {
        if !s.isEmpty { try SettingValue.checkTopic(s, field) }
        return s
    }

    static func properties(_ v: SettingValue) throws(DocumentError) -> [Property] {
        var found: [Property] = []
        for (name, p) in try v.section().settings(under: v.path + ".") {
            if name.isEmpty || name.contains("=") { throw DocumentError(field: p.path, "is not a librdkafka property name") }
            guard let s = p.value.stringValue else {
                throw DocumentError(field: p.path, "must be a string (librdkafka takes every property as text, e.g. \"6000\")")
            }
            found.append(Property(name, s))
        }
        return found
    }

    /// True for "" (no static membership) and for names Kafka takes as a `group.instance.id`
    /// (the results consumer adds `.results`, so 240 at most).
    public static func isInstanceID(_ s: String) -> Bool {
        s.utf8.count <= 240
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
            }
    }

    /// True for librdkafka properties that hold secrets, which `json()` does not show.
    public static func isSecret(_ property: String) -> Bool {
        let k = property.lowercased()
        return k.contains("password") || k.contains("secret")
    }

    /// `-X key=value` as a property, or nil when it is not `key=value` with a non-empty key.
    public static func property(_ text: String) -> Property? {
        guard let i = text.firstIndex(of: "="), i > text.startIndex else { return nil }
        return Property(String(text[..<i]), String(text[text.index(after: i)...]))
    }

    /// `properties` with `more` after them; a later value of a key replaces the earlier in place.
    public static func merged(_ properties: [Property], _ more: [Property]) -> [Property] {
        var all = properties
        for p in more {
            if let k = all.firstIndex(where: { $0.key == p.key }) { all[k] = p } else { all.append(p) }
        }
        return all
    }
}
