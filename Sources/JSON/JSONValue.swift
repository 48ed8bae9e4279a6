/// A JSON value that keeps what a round trip must keep: member order and the exact text of numbers.
///
/// llmspool parses its documents itself rather than through Foundation so that the CGI path
/// starts fast, errors can name the offending field, and duplicate keys are refused.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number, as its literal text (already checked against the JSON grammar).
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public static func integer(_ value: Int) -> JSONValue { .number(String(value)) }

    public static func double(_ value: Double) -> JSONValue {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return .number(String(Int(value))) }
        return .number(value.isFinite ? String(value) : "null")
    }

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { o } else { nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var intValue: Int? { if case .number(let n) = self { Int(n) } else { nil } }
    public var doubleValue: Double? { if case .number(let n) = self { Double(n) } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }

    /// A short name of the type, for error messages ("expected a string, found an array").
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    public subscript(key: String) -> JSONValue? { objectValue?[key] }
}

/// A JSON object: members in their original order, keys unique.
///
/// Lookups and assignments cost O(1) on average whatever the size: an object of more than
/// ``indexedAbove`` members keeps a hash table from key to position beside its members (smaller
/// ones are scanned, which is faster for a few members). Removing a member costs O(members).
public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: JSONValue
        public init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// Objects with more members than this keep a key index.
    public static let indexedAbove = 12

    public private(set) var members: [Member]
    /// The position of each key's first member, once there are more than `indexedAbove` members.
    private var index: [String: Int]?

    public init() { members = [] }
    public init(_ members: [Member]) {
        self.members = members
        reindex()
    }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements.map { Member($0.0, $0.1) })
    }

    /// Members whose keys are known to be unique, with their index when there is one (the parser's).
    init(unique members: [Member], index: [String: Int]?) {
        self.members = members
        self.index = members.count > Self.indexedAbove ? index : nil
        if self.index == nil, members.count > Self.indexedAbove { reindex() }
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool { a.members == b.members }

    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map(\.key) }

    /// The position in `members` of the (first) member named `key`.
    public func position(of key: String) -> Int? {
        if let index { return index[key] }
        return members.firstIndex(where: { $0.key == key })
    }

    private mutating func reindex() {
        guard members.count > Self.indexedAbove else { index = nil; return }
        var index: [String: Int] = [:]
        index.reserveCapacity(members.count)
        for (i, m) in members.enumerated() where index[m.key] == nil { index[m.key] = i }
        self.index = index
    }

    /// The value for `key`; assigning nil removes the member, assigning a value replaces it in place
    /// or appends it.
    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { members[$0].value } }
        set {
            if let i = position(of: key) {
                if let newValue {
                    members[i].value = newValue
                } else {
                    members.remove(at: i)
                    // A duplicate of the key (possible only through init(_:)) now comes first.
                    reindex()
                }
            } else if let newValue {
                members.append(Member(key, newValue))
                if index != nil {
                    index![key] = members.count - 1
                } else if members.count > Self.indexedAbove {
                    reindex()
                }
            }
        }
    }
}
