/// Why a document is not JSON, with the byte offset (and line and column) where parsing stopped.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public var line: Int
    public var column: Int
    /// True when the input ended before the value did: typical of a file still being written.
    public var truncated: Bool

    public var description: String { "\(message) at line \(line), column \(column) (byte \(offset))" }
}

/// A strict RFC 8259 parser: one value, no trailing commas or comments, UTF-8 only,
/// no duplicate keys, within ``Limits``. A leading UTF-8 byte-order mark is skipped.
///
/// Its cost is linear in the input: duplicate keys are found by hashing (Swift's hasher is seeded
/// per process, so keys cannot be chosen to collide), and an error's line and column are counted
/// once, when it is thrown.
public struct JSONParser {
    /// Bounds on a document's shape, each refused with an error that names it. The byte size of a
    /// document is its caller's to bound (a job file: `Limits.maxFileBytes`).
    public struct Limits: Sendable, Equatable {
        /// How deeply arrays and objects may nest (default 64).
        public var maxDepth: Int
        /// The most members one object may have (default 10,000).
        public var maxMembers: Int
        /// The most values a document may hold, counting every array item, member value and the
        /// top-level value (default 1,000,000). It bounds the memory a document takes once parsed.
        public var maxValues: Int

        public init(maxDepth: Int = 64, maxMembers: Int = 10_000, maxValues: Int = 1_000_000) {
            self.maxDepth = maxDepth
            self.maxMembers = maxMembers
            self.maxValues = maxValues
        }

        public static let `default` = Limits()
    }

    public static let defaultMaxDepth = Limits.default.maxDepth

    public static func parse(_ bytes: [UInt8], limits: Limits = .default) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buf) throws(JSONParseError) -> JSONValue in
            var p = JSONParser(buf, limits: limits)
            p.skipBOM()
            p.skipWhitespace()
            let value = try p.parseValue(depth: 0)
            p.skipWhitespace()
            if p.i != buf.count { throw p.error("unexpected data after the JSON value") }
            return value
        }
    }

    /// Parses with the default limits but another nesting depth.
    public static func parse(_ bytes: [UInt8], maxDepth: Int) throws(JSONParseError) -> JSONValue {
        var limits = Limits.default
        limits.maxDepth = maxDepth
        return try parse(bytes, limits: limits)
    }

    public static func parse(_ text: String, limits: Limits = .default) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8), limits: limits)
    }

    private let b: UnsafeBufferPointer<UInt8>
    private var i = 0
    private let limits: Limits
    /// Values begun so far, for `limits.maxValues`.
    private var values = 0

    private init(_ b: UnsafeBufferPointer<UInt8>, limits: Limits) {
        self.b = b
        self.limits = limits
    }

    private func error(_ message: String, truncated: Bool = false) -> JSONParseError {
        var line = 1, column = 1
        for k in 0..<min(i, b.count) {
            if b[k] == 0x0A { line += 1; column = 1 } else if b[k] & 0xC0 != 0x80 { column += 1 }
        }
        return JSONParseError(message: message, offset: i, line: line, column: column, truncated: truncated)
    }

    private func endError() -> JSONParseError { error("unexpected end of input", truncated: true) }

    private mutating func skipBOM() {
        if b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { i = 3 }
    }

    private mutating func skipWhitespace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
        let n = literal.utf8CodeUnitCount
        let lit = UnsafeBufferPointer(start: literal.utf8Start, count: n)
        for k in 0..<n {
            guard i + k < b.count else { throw endError() }
            guard b[i + k] == lit[k] else { throw error("invalid literal") }
        }
        i += n
        return value
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard i < b.count else { throw endError() }
        values += 1
        if values > limits.maxValues {
            throw error("more than \(limits.maxValues) values in one document (the limit on values per document)")
        }
        switch b[i] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default:
            throw error(
                b[i] < 0x20 || b[i] >= 0x80 ? "unexpected byte 0x\(String(b[i], radix: 16))" : "unexpected character '\(Character(Unicode.Scalar(b[i])))'")
        }
    }

    private func checkDepth(_ depth: Int) throws(JSONParseError) {
        if depth > limits.maxDepth {
            throw error("nesting deeper than \(limits.maxDepth) levels (the limit on nesting depth)")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        try checkDepth(depth)
        i += 1
        var members: [JSONObject.Member] = []
        // Duplicates: the first `indexedAbove` keys are checked by a scan as they come; in a larger
        // object every key goes into a hash table sized once at the end (each key hashed once, no
        // rehashing as it grows), which the object keeps as its index. A duplicate is reported at
        // its second occurrence either way: `keyOffsets` keeps where the keys past the scan began.
        var keyOffsets: [Int] = []
        skipWhitespace()
        guard i < b.count else { throw endError() }
        if b[i] == UInt8(ascii: "}") { i += 1; return .object(JSONObject(unique: members, index: nil)) }
        while true {
            skipWhitespace()
            guard i < b.count else { throw endError() }
            guard b[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyStart = i
            let key = try parseString()
            if members.count >= limits.maxMembers {
                i = keyStart
                throw error("more than \(limits.maxMembers) members in one object (the limit on members per object)")
            }
            if members.count < JSONObject.indexedAbove {
                if members.contains(where: { $0.key == key }) {
                    i = keyStart
                    throw error("duplicate key \"\(key)\"")
                }
            } else {
                keyOffsets.append(keyStart)
            }
            skipWhitespace()
            guard i < b.count else { throw endError() }
            guard b[i] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
            i += 1
            skipWhitespace()
            members.append(.init(key, try parseValue(depth: depth)))
            skipWhitespace()
            guard i < b.count else { throw endError() }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") {
                let end = i + 1
                var index: [String: Int]?
                if members.count > JSONObject.indexedAbove {
                    var table = [String: Int](minimumCapacity: members.count)
                    for (k, m) in members.enumerated() where table.updateValue(k, forKey: m.key) != nil {
                        i = keyOffsets[k - JSONObject.indexedAbove]
                        throw error("duplicate key \"\(m.key)\"")
                    }
                    index = table
                }
                i = end
                return .object(JSONObject(unique: members, index: index))
            }
            throw error("expected ',' or '}' in an object")
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        try checkDepth(depth)
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        guard i < b.count else { throw endError() }
        if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard i < b.count else { throw endError() }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw error("expected ',' or ']' in an array")
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = i
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.i
            while p.i < p.b.count, p.b[p.i] >= 0x30, p.b[p.i] <= 0x39 { p.i += 1 }
            return p.i - s
        }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count else { throw endError() }
        if b[i] == UInt8(ascii: "0") {
            i += 1
            if i < b.count, b[i] >= 0x30, b[i] <= 0x39 { throw error("leading zero in a number") }
        } else if digits(&self) == 0 {
            throw error("expected a digit")
        }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            if digits(&self) == 0 { throw i < b.count ? error("expected a digit after '.'") : endError() }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            if digits(&self) == 0 { throw i < b.count ? error("expected a digit in the exponent") : endError() }
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self))
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard i < b.count else { throw endError() }
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// Appends the UTF-8 form of a scalar value (never a surrogate: the caller has paired them).
    private static func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
        switch v {
        case ..<0x80:
            out.append(UInt8(v))
        case ..<0x800:
            out.append(UInt8(0xC0 | v >> 6))
            out.append(UInt8(0x80 | v & 0x3F))
        case ..<0x10000:
            out.append(UInt8(0xE0 | v >> 12))
            out.append(UInt8(0x80 | v >> 6 & 0x3F))
            out.append(UInt8(0x80 | v & 0x3F))
        default:
            out.append(UInt8(0xF0 | v >> 18))
            out.append(UInt8(0x80 | v >> 12 & 0x3F))
            out.append(UInt8(0x80 | v >> 6 & 0x3F))
            out.append(UInt8(0x80 | v & 0x3F))
        }
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: b[start..<i])
                guard let s = String(validating: slice, as: UTF8.self) else {
                    i = start
                    throw error("string is not valid UTF-8")
                }
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character in a string (escape it)") }
            i += 1
        }
        guard i < b.count else { throw endError() }
        var out = Array(UnsafeBufferPointer(rebasing: b[start..<i]))
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw error("string is not valid UTF-8")
                }
                return s
            }
            if c < 0x20 { throw error("control character in a string (escape it)") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw endError() }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    // Only the end of input is "truncated"; any other byte means the pair is broken.
                    guard i < b.count else { throw endError() }
                    guard b[i] == UInt8(ascii: "\\") else { throw error("unpaired surrogate in a \\u escape") }
                    guard i + 1 < b.count else { throw endError() }
                    guard b[i + 1] == UInt8(ascii: "u") else { throw error("unpaired surrogate in a \\u escape") }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate in a \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw error("unpaired surrogate in a \\u escape")
                }
                Self.appendUTF8(scalar, to: &out)
            default:
                i -= 1
                throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
            }
        }
        throw endError()
    }
}
