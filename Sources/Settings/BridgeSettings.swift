public import JSON
public import Spool

/// The `bridge` section of the configuration file: what `llmspool bridge` reads before its flags.
/// A nil field is not set in the file; the bridge's flag, or its default, decides.
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

    /// Bootstrap servers, `host:port,…` (`--brokers`).
    public var brokers: String?
    /// Consumer group of `jobsIn` (`--group`; the bridge's default is `llmspool-bridge`).
    public var group: String?
    public var jobsIn: String?
    public var jobsOut: String?
    public var resultsIn: String?
    public var resultsOut: String?
    /// The partial answers of streamed jobs go to this topic (`--deltas-out`).
    public var deltasOut: String?
    /// Consumer group of `resultsIn`.
    public var resultsGroup: String?
    /// Static group membership of the consumers (`--instance-id`): nil = the bridge's default
    /// (from the host name and the spool), "" = none.
    public var instanceID: String?
    public var resultsOf: ResultsOf?
    /// DLQ of `jobsIn`: nil = Spring's `error.TOPIC.GROUP`, "" = none (`--dlq`).
    public var deadLetterTopic: String?
    public var metricsAddress: String?
    public var logLevel: String?
    /// The longest a stop may take, in ms (`--stop-timeout`; the bridge's default is 15 s).
    public var stopTimeoutMs: Int64?
    /// Back-pressure of `jobsIn` (`--max-queued`): the most jobs from Kafka left waiting in `new/`
    /// and `cur/` before the bridge leaves its consumer group; nil = no limit.
    public var maxQueued: Int?
    /// Applied in this order, before any `-X`.
    public var properties: [Property] = []

    public init() {}

    /// The group the bridge uses when none is set.
    public static let defaultGroup = "llmspool-bridge"
    /// The stop limit when none is set (ms); the same as `BridgeConfiguration.defaultStopTimeoutMs`.
    public static let defaultStopTimeoutMs: Int64 = 15_000

    /// Reads a `bridge` section; errors name the key under `prefix` (`bridge.jobsIn`).
    public static func parse(_ section: JSONObject, at prefix: String = "bridge.") throws(DocumentError) -> BridgeSettings {
        var b = BridgeSettings()
        for (key, v) in section.settings(under: prefix) {
            switch key {
            case "brokers":
                guard let s = try v.optionalString() else { continue }
                if s.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" })
                    || s.split(separator: ",", omittingEmptySubsequences: false).contains(where: \.isEmpty)
                {
                    throw DocumentError(field: v.path, "must be a comma-separated list of host:port, without spaces")
                }
                b.brokers = s
            case "group": b.group = try v.optionalString()
            case "jobsIn": b.jobsIn = v.isNull ? nil : try v.topic()
            case "jobsOut": b.jobsOut = v.isNull ? nil : try v.topic()
            case "resultsIn": b.resultsIn = v.isNull ? nil : try v.topic()
            case "resultsOut": b.resultsOut = v.isNull ? nil : try v.topic()
            case "deltasOut": b.deltasOut = v.isNull ? nil : try v.topic()
            case "resultsGroup": b.resultsGroup = try v.optionalString()
            case "instanceId":
                if v.isNull { continue }
                let s = try v.string()  // "" turns static membership off
                guard isInstanceID(s) else {
                    throw DocumentError(field: v.path, "must be a Kafka group.instance.id (letters, digits, '.', '_', '-'; at most 240), or \"\" for none")
                }
                b.instanceID = s
            case "resultsOf":
                if v.isNull { continue }
                guard let r = ResultsOf(rawValue: try v.string()) else { throw DocumentError(field: v.path, "must be \"all\" or \"kafka\"") }
                b.resultsOf = r
            case "deadLetterTopic":
                if v.isNull { continue }
                let s = try v.string()
                b.deadLetterTopic = s.isEmpty ? "" : try v.topic()
            case "metricsAddress": b.metricsAddress = try v.hostPort()
            case "logLevel": b.logLevel = v.isNull ? nil : try v.logLevel()
            case "stopTimeoutSeconds": b.stopTimeoutMs = v.isNull ? nil : try v.seconds(1...3_600)
            case "maxQueued": b.maxQueued = v.isNull ? nil : try v.int(maxQueuedRange)
            case "properties":
                for (name, p) in try v.section().settings(under: v.path + ".") {
                    if name.isEmpty || name.contains("=") { throw DocumentError(field: p.path, "is not a librdkafka property name") }
                    guard let s = p.value.stringValue else {
                        throw DocumentError(field: p.path, "must be a string (librdkafka takes every property as text, e.g. \"6000\")")
                    }
                    b.properties.append(Property(name, s))
                }
            default:
                throw DocumentError(
                    field: v.path, "unknown setting\(DocumentError.didYouMean(key, in: keys)) (bridge settings: \(keys.joined(separator: ", ")))")
            }
        }
        return b
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

    /// Every key of the section, in the order `json()` writes them.
    public static let keys = [
        "brokers", "group", "jobsIn", "jobsOut", "resultsIn", "resultsOut", "deltasOut", "resultsGroup", "instanceId",
        "resultsOf", "deadLetterTopic", "metricsAddress", "logLevel", "stopTimeoutSeconds", "maxQueued", "properties",
    ]

    /// What `maxQueued` (`--max-queued`) may be.
    public static let maxQueuedRange = 1...1_000_000

    /// The section as JSON, every key present: unset ones as `null`, except where the bridge's
    /// default is known (`group`, `logLevel`, the DLQ of `jobsIn`). Parsing it gives back the same
    /// effective settings, except that the value of a property whose name holds `password` or
    /// `secret` (`sasl.password`, `ssl.key.password`, …) is written as `(hidden)`.
    public func json() -> JSONValue {
        func str(_ s: String?) -> JSONValue { s.map(JSONValue.string) ?? .null }
        let g = group ?? Self.defaultGroup
        let dlq = deadLetterTopic ?? jobsIn.map { "error.\($0).\(g)" }
        var o = JSONObject()
        o["brokers"] = str(brokers)
        o["group"] = .string(g)
        o["jobsIn"] = str(jobsIn)
        o["jobsOut"] = str(jobsOut)
        o["resultsIn"] = str(resultsIn)
        o["resultsOut"] = str(resultsOut)
        o["deltasOut"] = str(deltasOut)
        o["resultsGroup"] = str(resultsGroup)
        o["instanceId"] = str(instanceID)
        o["resultsOf"] = str(resultsOf?.rawValue)
        o["deadLetterTopic"] = str(dlq)
        o["metricsAddress"] = str(metricsAddress)
        o["logLevel"] = .string(logLevel ?? "info")
        o["stopTimeoutSeconds"] = .double(Double(stopTimeoutMs ?? Self.defaultStopTimeoutMs) / 1000)
        o["maxQueued"] = maxQueued.map { .integer($0) } ?? .null
        o["properties"] = .object(JSONObject(properties.map { .init($0.key, .string(Self.isSecret($0.key) ? "(hidden)" : $0.value)) }))
        return .object(o)
    }
}
