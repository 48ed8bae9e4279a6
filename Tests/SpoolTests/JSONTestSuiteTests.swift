// The parsing cases of nst/JSONTestSuite (https://github.com/nst/JSONTestSuite, MIT licence, kept
// with its LICENSE in JSONTestSuite/): files named y_ must be accepted, n_ refused, and i_ (where
// RFC 8259 leaves the choice to the parser) may go either way but must not crash.
import Foundation
import JSON
import Testing

@testable import Spool

enum JSONTestSuite {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("JSONTestSuite/test_parsing").path

    static func names(_ prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }.sorted()
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
    }

    /// Valid JSON that llmspool refuses on purpose (docs/spool-format.md): a key given twice.
    static let refusedValid: [String: String] = [
        "y_object_duplicated_key.json": "duplicate key",
        "y_object_duplicated_key_and_value.json": "duplicate key",
    ]
}

@Suite("JSON: nst/JSONTestSuite")
struct JSONTestSuiteTests {
    @Test func theCorpusIsThere() {
        #expect(JSONTestSuite.names("y_").count == 95)
        #expect(JSONTestSuite.names("n_").count == 188)
        #expect(JSONTestSuite.names("i_").count == 35)
    }

    @Test("y_: accepted, and the same after a round trip", arguments: JSONTestSuite.names("y_"))
    func accepted(_ name: String) throws {
        let bytes = try JSONTestSuite.bytes(name)
        if let reason = JSONTestSuite.refusedValid[name] {
            #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes) }
            do {
                _ = try JSONParser.parse(bytes)
            } catch {
                #expect(error.message.contains(reason))
            }
            return
        }
        let value = try JSONParser.parse(bytes)
        #expect(try JSONParser.parse(value.serialized()) == value)
    }

    @Test("n_: refused", arguments: JSONTestSuite.names("n_"))
    func refused(_ name: String) throws {
        let bytes = try JSONTestSuite.bytes(name)
        #expect(throws: JSONParseError.self, "\(name) was accepted") { try JSONParser.parse(bytes) }
    }

    @Test("i_: either way, without crashing", arguments: JSONTestSuite.names("i_"))
    func either(_ name: String) throws {
        let bytes = try JSONTestSuite.bytes(name)
        if let value = try? JSONParser.parse(bytes) {
            #expect(try JSONParser.parse(value.serialized()) == value)
        }
    }
}
