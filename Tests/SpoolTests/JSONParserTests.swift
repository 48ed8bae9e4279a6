import JSON
import Testing

@testable import Spool

private func parseError(_ bytes: [UInt8], maxDepth: Int = JSONParser.defaultMaxDepth) -> JSONParseError? {
    do {
        _ = try JSONParser.parse(bytes, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

private func parseError(_ text: String) -> JSONParseError? { parseError(Array(text.utf8)) }

@Suite("JSON: parsing valid documents")
struct JSONValidTests {
    static let documents: [String] = [
        "null", "true", "false", "0", "-0", "1.5", "-12.25e+3", "1E-7", "123456789012345678901234567890",
        #""""#, #""hello""#, #""é ☃ 😀""#, "[]", "{}", "[1,[2,[3]]]", #"[{"a":[{}]},[[]]]"#,
        #"{"b":1,"a":2,"c":{"z":null,"y":[true,false]}}"#,
        #"{"emoji":"\ud83d\ude00","tab":"\t","quote":"\"","slash":"\/","nul":"\u0000"}"#,
        " \n\t{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\r\n ",
    ]

    @Test("parse → serialized() → parse gives the same value", arguments: documents)
    func roundTrip(_ text: String) throws {
        let value = try JSONParser.parse(text)
        let bytes = value.serialized()
        let again = try JSONParser.parse(bytes)
        #expect(again == value)
        #expect(again.serialized() == bytes, "serialization is stable")
        #expect(!bytes.contains(where: { $0 < 0x20 }), "compact output has no raw control bytes")
    }

    /// Compact documents without escapes serialize back to exactly their own bytes.
    @Test(arguments: [
        "[1,-0,1.50,1e400,2E+2,-0.0e-0,123456789012345678901234567890.5]",
        #"{"z":1,"a":{"y":2,"b":3},"m":[]}"#,
        "{\"text\":\"déjà vu ☃ 😀 \u{2028}\"}",
        "[null,true,false,\"\"]",
    ])
    func compactDocumentsAreReproducedByteForByte(_ text: String) throws {
        let value = try JSONParser.parse(text)
        #expect(value.text == text)
    }

    @Test func memberOrderIsKept() throws {
        let value = try JSONParser.parse(#"{"zeta":1,"alpha":2,"mid":3}"#)
        #expect(value.objectValue?.keys == ["zeta", "alpha", "mid"])
    }

    @Test func numberLiteralTextIsKept() throws {
        let value = try JSONParser.parse("[1.0, 1e2, 1E+02, -0, 0.10, 1e400]")
        #expect(value == .array([.number("1.0"), .number("1e2"), .number("1E+02"), .number("-0"), .number("0.10"), .number("1e400")]))
        #expect(value.text == "[1.0,1e2,1E+02,-0,0.10,1e400]")
    }

    @Test(
        "escapes decode to the right text",
        arguments: [
            (#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{8}\u{C}\n\r\t"),
            (#""\u0041\u00e9\u2603""#, "Aé☃"),
            (#""\u00E9\u00e9""#, "éé"),
            (#""\ud83d\ude00""#, "😀"),
            (#""\uD83D\uDE00x""#, "😀x"),
            (#""a\u0000b""#, "a\u{0}b"),
            (#""plain \u0020 and \\u0041""#, "plain   and \\u0041"),
            (#""\uDBFF\uDFFF""#, "\u{10FFFF}"),
        ])
    func escapes(_ json: String, _ expected: String) throws {
        #expect(try JSONParser.parse(json) == .string(expected))
    }

    @Test func byteOrderMarkIsSkipped() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(#"{"a":1}"#.utf8)
        #expect(try JSONParser.parse(bytes) == .object(["a": .number("1")]))
        // Only one, and only at the start.
        #expect(parseError([0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF] + Array("1".utf8)) != nil)
        #expect(parseError([0x5B, 0xEF, 0xBB, 0xBF, 0x31, 0x5D]) != nil)
        #expect(parseError([0xEF, 0xBB, 0xBF])?.truncated == true, "a BOM alone is an empty document")
    }

    @Test func scalarsAtTopLevel() throws {
        #expect(try JSONParser.parse(" 42 ") == .number("42"))
        #expect(try JSONParser.parse("\"x\"") == .string("x"))
        #expect(try JSONParser.parse("null") == .null)
    }

    @Test func nestingUpToTheDepthLimit() throws {
        let depth = JSONParser.defaultMaxDepth
        #expect(depth == 64)
        let arrays = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(throws: Never.self) { try JSONParser.parse(arrays) }
        let objects = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        #expect(throws: Never.self) { try JSONParser.parse(objects) }

        let tooDeep = String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        let error = try #require(parseError(tooDeep))
        #expect(error.message.contains("nesting"))
        #expect(error.offset == depth, "stops at the bracket that goes too deep")
        #expect(!error.truncated)
        let objectsTooDeep = String(repeating: #"{"a":"#, count: depth + 1) + "1" + String(repeating: "}", count: depth + 1)
        #expect(parseError(objectsTooDeep)?.message.contains("nesting") == true)
        let mixed = String(repeating: #"[{"a":"#, count: 33) + "1" + String(repeating: "}]", count: 33)
        #expect(parseError(mixed)?.message.contains("nesting") == true)

        #expect(parseError(Array("[[1]]".utf8), maxDepth: 1) != nil)
        #expect(parseError(Array("[[1]]".utf8), maxDepth: 2) == nil)
    }

    @Test func objectAccessors() throws {
        let value = try JSONParser.parse(#"{"s":"x","i":7,"f":1.5,"b":true,"a":[1],"o":{},"n":null,"big":1e3}"#)
        #expect(value["s"]?.stringValue == "x")
        #expect(value["i"]?.intValue == 7)
        #expect(value["f"]?.intValue == nil)
        #expect(value["f"]?.doubleValue == 1.5)
        #expect(value["big"]?.intValue == nil, "1e3 is not integer text")
        #expect(value["b"]?.boolValue == true)
        #expect(value["a"]?.arrayValue == [.number("1")])
        #expect(value["o"]?.objectValue?.isEmpty == true)
        #expect(value["n"] == .null)
        #expect(value["missing"] == nil)
        #expect(value["a"]?.typeName == "an array")
    }

    @Test func objectSubscriptReplacesInPlaceAndRemoves() {
        var o: JSONObject = ["a": .integer(1), "b": .integer(2), "c": .integer(3)]
        o["b"] = .string("two")
        o["d"] = .null
        o["a"] = nil
        #expect(o.keys == ["b", "c", "d"])
        #expect(JSONValue.object(o).text == #"{"b":"two","c":3,"d":null}"#)
    }
}

@Suite("JSON: strictness")
struct JSONStrictnessTests {
    /// Each is invalid JSON for a reason other than ending early, so `truncated` must be false.
    static let invalidTexts: [String] = [
        "[1,]", #"{"a":1,}"#, "[,1]", "{,}", "[1 2]", #"{"a" 1}"#, #"{"a":1 "b":2}"#, "{a:1}", "{'a':1}", "'a'",
        "01", "-01", "00", "1.e5", ".5", "+1", "-a", "0x10", "1e+e", "NaN", "Infinity", "-Infinity",
        "True", "nulL", "trUe x",
        "// comment\n1", "/* comment */ 1", "1 // comment", "#1", "[1] /**/",
        #"{"a":1,"a":2}"#, #"{"a":{"x":1,"x":1}}"#,
        #"{"a":1} x"#, "1 2", "[] []", "{}{}", "nullnull", "\"a\"\"b\"",
        #""\x""#, #""\u12G4""#, #""\u12""#, #""\'""#, #""\U0041""#,
        #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\ud800x""#, #""\ud800\n""#, #""\ude00\ud83d""#,
        "\"a\tb\"", "\"a\nb\"", "\"\u{1}\"", "\"\u{1F}\"", "[\"a\"]]", "]", "}", ":", ",",
    ]

    @Test(arguments: invalidTexts)
    func rejectsInvalidText(_ text: String) throws {
        let error = try #require(parseError(text), "accepted \(text.debugDescription)")
        #expect(!error.truncated, "\(text.debugDescription): \(error)")
    }

    /// Invalid UTF-8, in and out of strings, on the fast and the escape path.
    static let invalidBytes: [[UInt8]] = [
        [0x22, 0xFF, 0x22],
        [0x22, 0xC3, 0x28, 0x22],  // a lead byte without its continuation
        [0x22, 0xC0, 0xAF, 0x22],  // overlong '/'
        [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong, 3 bytes
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // a UTF-16 surrogate encoded as UTF-8
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        [0x22, 0x80, 0x22],  // a lone continuation byte
        [0x22, 0x5C, 0x6E, 0xFF, 0x22],  // "\n" then a bad byte: the slow path
        [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D],  // in a key
        [0xFF],
        [0xFE, 0xFF, 0x00, 0x31],  // UTF-16 BOM
        [0x22, 0x00, 0x22],  // a raw NUL in a string
        [0x31, 0x00],  // NUL after a value
    ]

    @Test(arguments: invalidBytes)
    func rejectsInvalidBytes(_ bytes: [UInt8]) throws {
        let error = try #require(parseError(bytes), "accepted \(bytes)")
        #expect(!error.truncated, "\(bytes): \(error)")
    }

    /// Input that stops early: what a file still being written looks like.
    static let truncatedTexts: [String] = [
        "", "  \n", "{", "[", "[1", "[1,", "[1, ", #"{"a""#, #"{"a":"#, #"{"a":1"#, #"{"a":1,"#, #""abc"#, #""\"#,
        #""\u00"#, #""\ud83d"#, #""\ud83d\"#, #""\ud83d\u"#, #""\ud83d\ude0"#, "tru", "fals", "n", "-", "1.", "1e", "1e+",
        #"{"prompt": "hel"#,
    ]

    @Test(arguments: truncatedTexts)
    func cutOffInputIsTruncated(_ text: String) throws {
        let error = try #require(parseError(text), "accepted \(text.debugDescription)")
        #expect(error.truncated, "\(text.debugDescription): \(error)")
        #expect(error.offset <= text.utf8.count)
    }

    @Test func cutInsideAMultiByteCharacterIsTruncated() throws {
        let error = try #require(parseError([0x22, 0xE2, 0x98]))  // "☃ cut after two of three bytes
        #expect(error.truncated)
    }

    /// Every proper prefix of a document (that is not a bare number) fails as truncated.
    @Test(arguments: [
        #"{"jobId":"a-1","prompt":"Hé ☃ 😀 \"q\" \u00e9 \ud83d\ude00","maxTokens":-12.5e+3,"ok":[true,false,null],"o":{}}"#,
        #"[{"messages":[{"role":"user","content":"line\nnext"}]}, 0, -0.5E-2, "\\"]"#,
    ])
    func everyPrefixIsTruncated(_ text: String) throws {
        let bytes = Array(text.utf8)
        #expect(parseError(bytes) == nil)
        for n in 0..<bytes.count {
            let error = try #require(parseError(Array(bytes[..<n])), "prefix of \(n) bytes parsed")
            #expect(error.truncated, "prefix of \(n) bytes: \(error)")
        }
    }

    @Test func errorPositionIsLineAndColumn() throws {
        let e1 = try #require(parseError("{\n\"a\":x}"))
        #expect((e1.line, e1.column, e1.offset) == (2, 5, 6))
        #expect(e1.description.contains("line 2, column 5"))

        // Columns count characters, not bytes.
        let e2 = try #require(parseError(#"{"é":x}"#))
        #expect((e2.line, e2.column, e2.offset) == (1, 6, 6))

        let e3 = try #require(parseError("[1,\n 2,\n  ]"))
        #expect((e3.line, e3.column) == (3, 3))

        // A duplicate key is reported at the second occurrence of the key.
        let e4 = try #require(parseError(#"{"a":1,"a":2}"#))
        #expect((e4.line, e4.column, e4.offset) == (1, 8, 7))
        #expect(e4.message.contains("duplicate key \"a\""))

        let e5 = try #require(parseError("\r\n\r\n  [1,]"))
        #expect((e5.line, e5.column) == (3, 6))
    }

    @Test func leadingZeroIsNamed() throws {
        #expect(parseError("01")?.message == "leading zero in a number")
        #expect(parseError("[-00.5]")?.message == "leading zero in a number")
    }

    @Test func trailingDataIsNamed() throws {
        let error = try #require(parseError("{} x"))
        #expect(error.message.contains("after the JSON value"))
        #expect(error.offset == 3)
    }
}

@Suite("JSON: writing")
struct JSONWriterTests {
    @Test(arguments: [
        ("\"", #""\"""#), ("\\", #""\\""#), ("\n\r\t", #""\n\r\t""#), ("\u{0}", #""\u0000""#),
        ("\u{1}\u{8}\u{C}\u{1F}", #""\u0001\u0008\u000c\u001f""#), ("\u{7F}", #""\u007f""#),
        ("/", #""/""#), ("é☃😀", "\"é☃😀\""), ("\u{2028}", "\"\u{2028}\""), ("", #""""#),
    ])
    func stringEscapes(_ string: String, _ json: String) throws {
        #expect(JSONValue.string(string).text == json)
        #expect(try JSONParser.parse(json) == .string(string))
    }

    @Test func everyControlCharacterIsEscapedAndRoundTrips() throws {
        let all = String(decoding: Array(0..<0x20) + [0x7F], as: UTF8.self)
        let value = JSONValue.object([all: .string(all)])
        let bytes = value.serialized()
        #expect(!bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }))
        #expect(try JSONParser.parse(bytes) == value)
    }

    @Test func numbersFromSwiftValues() {
        #expect(JSONValue.integer(-3).text == "-3")
        #expect(JSONValue.integer(Int.max).text == "9223372036854775807")
        #expect(JSONValue.double(0.5).text == "0.5")
        #expect(JSONValue.double(2).text == "2")
        #expect(JSONValue.double(0.2).text == "0.2")
        #expect(JSONValue.double(.nan).text == "null")
        #expect(JSONValue.double(.infinity).text == "null")
        #expect(JSONValue.double(1e-7).doubleValue == 1e-7)
        #expect(throws: Never.self) { try JSONParser.parse(JSONValue.double(1e-7).serialized()) }
        #expect(throws: Never.self) { try JSONParser.parse(JSONValue.double(1e300).serialized()) }
    }

    @Test func prettyTextIsIndentedAndParsesBack() throws {
        let value = try JSONParser.parse(#"{"b":[1,{"c":"x"}],"a":{},"e":[],"d":null}"#)
        let pretty = value.prettyText()
        #expect(
            pretty == """
                {
                  "b": [
                    1,
                    {
                      "c": "x"
                    }
                  ],
                  "a": {},
                  "e": [],
                  "d": null
                }
                """)
        #expect(try JSONParser.parse(pretty) == value)
        #expect(JSONValue.string("a\nb").prettyText() == #""a\nb""#)
    }

    @Test func compactOutput() throws {
        let value: JSONValue = .object(["a": .array([.integer(1), .bool(true), .null]), "b": .object([:])])
        #expect(value.text == #"{"a":[1,true,null],"b":{}}"#)
    }
}

@Suite("JSON: bounds on a document's shape")
struct JSONLimitsTests {
    @Test func membersPerObjectAreBounded() throws {
        let limits = JSONParser.Limits(maxMembers: 3)
        #expect(throws: Never.self) { try JSONParser.parse(#"{"a":1,"b":2,"c":{"x":1,"y":2,"z":3}}"#, limits: limits) }
        let text = #"{"a":1,"b":2,"c":3,"d":4}"#
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text, limits: limits) }
        do throws(JSONParseError) {
            _ = try JSONParser.parse(text, limits: limits)
        } catch {
            #expect(error.message == "more than 3 members in one object (the limit on members per object)")
            #expect(error.offset == 19, "stops at the key that goes over")
            #expect(!error.truncated)
        }
    }

    @Test func defaultMemberBoundIsTenThousand() throws {
        #expect(throws: Never.self) { try JSONParser.parse(manyKeysDocument(10_000)) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse(manyKeysDocument(10_001)) }
    }

    @Test func valuesPerDocumentAreBounded() throws {
        let limits = JSONParser.Limits(maxValues: 4)
        // The array, then three items: four values.
        #expect(throws: Never.self) { try JSONParser.parse("[1,[],3]", limits: limits) }
        #expect(throws: Never.self) { try JSONParser.parse(#"{"a":1,"b":[2]}"#, limits: limits) }
        do throws(JSONParseError) {
            _ = try JSONParser.parse(#"{"a":1,"b":[2,3]}"#, limits: limits)
            Issue.record("a fifth value was accepted")
        } catch {
            #expect(error.message == "more than 4 values in one document (the limit on values per document)")
        }
    }

    @Test func depthErrorNamesTheLimit() {
        #expect(
            parseError(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))?.message
                == "nesting deeper than 64 levels (the limit on nesting depth)")
    }

    @Test("duplicates are found in small and large objects, wherever they are", arguments: [2, 12, 13, 14, 100, 5_000])
    func duplicatesAtEverySize(_ n: Int) throws {
        let doc = manyKeysDocument(n)
        #expect(try JSONParser.parse(doc).objectValue?.members.count == n)
        for dup in [0, n / 2, n - 1] {
            let bad = Array(doc.dropLast()) + Array(",\"k\(dup)\":0}".utf8)
            #expect(parseError(bad)?.message == "duplicate key \"k\(dup)\"")
        }
    }

    @Test("lookups and assignments agree with a plain scan, small and large", arguments: [3, 12, 13, 40])
    func objectIndexAgreesWithTheMembers(_ n: Int) throws {
        let parsed = try #require(JSONParser.parse(manyKeysDocument(n)).objectValue)
        var built = JSONObject()
        for k in 0..<n { built["k\(k)"] = .number(String(k % 10)) }
        #expect(built == parsed)
        for k in 0..<n { #expect(parsed["k\(k)"] == .number(String(k % 10))) }
        #expect(parsed["k\(n)"] == nil)

        var o = parsed
        o["k1"] = .string("one")  // in place
        o["k0"] = nil  // removed: positions after it move
        o["new"] = .bool(true)  // appended
        #expect(o.keys == Array(parsed.keys.dropFirst()) + ["new"])
        #expect(o["k1"] == .string("one"))
        for k in 2..<n { #expect(o["k\(k)"] == .number(String(k % 10))) }
        #expect(o["new"] == .bool(true))
        #expect(o["k0"] == nil)
    }

    @Test func anObjectMadeWithARepeatedKeyFindsTheFirstThenTheNext() {
        let members = (0..<20).map { JSONObject.Member("k\($0)", .integer($0)) } + [.init("k3", .string("again"))]
        var o = JSONObject(members)
        #expect(o["k3"] == .integer(3))
        o["k3"] = nil
        #expect(o["k3"] == .string("again"))
    }
}
