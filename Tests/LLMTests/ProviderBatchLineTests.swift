import JSON
import Testing

@testable import LLM

/// Reading a provider batch's output and error files: every line is hostile until read.
@Suite("Provider batch output lines")
struct ProviderBatchLineTests {
    @Test func readsAnswersAndErrors() throws {
        let text = """
            {"id":"r1","custom_id":"a","response":{"status_code":200,"request_id":"q1","body":{"choices":[]}},"error":null}\r

            {"id":"r2","custom_id":"b","response":null,"error":{"code":"batch_expired","message":"too late"}}
            not json
            {"id":"r3","response":{"status_code":200}}
            """
        let lines = ProviderBatchLine.lines(Array(text.utf8))
        #expect(lines.count == 4)
        let a = try ProviderBatchLine.parse(lines[0]).get()
        #expect(a.customID == "a" && a.statusCode == 200 && a.requestID == "q1" && a.error == nil)
        let b = try ProviderBatchLine.parse(lines[1]).get()
        #expect(b.customID == "b" && b.statusCode == nil && b.error == "too late")
        #expect((try? ProviderBatchLine.parse(lines[2]).get()) == nil)
        #expect((try? ProviderBatchLine.parse(lines[3]).get()) == nil, "no custom_id")
    }

    @Test func batchObjects() {
        let v: JSONValue = .object([
            "id": .string("batch_1"), "status": .string("failed"), "input_file_id": .string("file-1"),
            "errors": .object(["data": .array([.object(["message": .string("bad line 3")])])]),
        ])
        let b = ProviderBatch.parse(v)
        #expect(b?.status == "failed" && b?.isFinal == true && b?.errors == ["bad line 3"] && b?.inputFileID == "file-1")
        #expect(ProviderBatch.parse(.object(["status": .string("completed")])) == nil)
    }

    @Test func idsArePathSegments() {
        #expect(ProviderBatchClient.pathSegment("batch_abc-1.2") == "batch_abc-1.2")
        #expect(ProviderBatchClient.pathSegment("../x?y") == "..%2Fx%3Fy")
    }
}
