import Basics
public import JSON
public import Spool

/// A value from the configuration file with the key path it was found at, and checked
/// conversions whose errors name that path (`bridge.properties.acks: must be a string`).
public struct SettingValue: Sendable {
    public var value: JSONValue
    /// The key path, e.g. `worker.tenants.acme.tokensPerMinute`.
    public var path: String

    public init(_ value: JSONValue, at path: String) {
        self.value = value
        self.path = path
    }

    func fail(_ message: String) -> DocumentError { DocumentError(field: path, message) }

    public var isNull: Bool { value == .null }

    public func string() throws(DocumentError) -> String {
        guard let s = value.stringValue else { throw fail("must be a string, not \(value.typeName)") }
        return s
    }

    public func nonEmptyString() throws(DocumentError) -> String {
        let s = try string()
        if s.isEmpty { throw fail("must not be empty") }
        return s
    }

    /// A non-empty string, or nil for `null` (the setting's default).
    public func optionalString() throws(DocumentError) -> String? {
        isNull ? nil : try nonEmptyString()
    }

    public func bool() throws(DocumentError) -> Bool {
        guard let b = value.boolValue else { throw fail("must be true or false") }
        return b
    }

    public func int(_ range: ClosedRange<Int>) throws(DocumentError) -> Int {
        guard let n = value.intValue, range.contains(n) else {
            throw fail("must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return n
    }

    /// An object, whose members the caller checks one by one.
    public func section() throws(DocumentError) -> JSONObject {
        guard case .object(let o) = value else { throw fail("must be an object, not \(value.typeName)") }
        return o
    }

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    // Rules for `Setting`s' `check:`, each naming `field` (a key, a variable or a flag) in its error.

    /// One of the swift-log level names.
    public static func checkLogLevel(_ s: String, _ field: String) throws(DocumentError) {
        guard logLevels.contains(s) else { throw DocumentError(field: field, "must be one of \(logLevels.joined(separator: ", ")), not \"\(s)\"") }
    }

    /// `HOST:PORT` (`[::1]:9464` for IPv6), the metrics listener's rule (``HostPort``).
    public static func checkHostPort(_ s: String, _ field: String) throws(DocumentError) {
        guard HostPort.split(s) != nil else { throw DocumentError(field: field, "must be HOST:PORT (e.g. 127.0.0.1:9464), or null for off") }
    }

    /// A Kafka topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
    public static func checkTopic(_ s: String, _ field: String) throws(DocumentError) {
        guard isTopic(s) else {
            throw DocumentError(field: field, "must be a Kafka topic name: 1 to 249 characters of [A-Za-z0-9._-] (null for none), not \"\(s)\"")
        }
    }

    public static func isTopic(_ s: String) -> Bool {
        let u = s.utf8
        guard (1...249).contains(u.count), s != ".", s != ".." else { return false }
        return u.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F || c == 0x2D
        }
    }
}

extension JSONObject {
    /// Each member as a ``SettingValue`` under `prefix` (`bridge.` gives `bridge.brokers`).
    public func settings(under prefix: String) -> [(key: String, value: SettingValue)] {
        members.map { ($0.key, SettingValue($0.value, at: prefix + $0.key)) }
    }
}
