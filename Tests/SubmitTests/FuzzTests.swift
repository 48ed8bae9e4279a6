import Foundation
import JSON
import Spool
import Submit
import TestSupport
import Testing

/// Property tests of the request parsing, over a kept corpus (Tests/SubmitTests/Corpus) and
/// seeded random mutations of it: nothing crashes; every input is either a valid job stamped
/// with the caller's identity or a 400/415 problem; routing only yields valid ids.
@Suite("Request parsing, fuzzed")
struct FuzzTests {
    static let corpusDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus").path

    static func corpus() -> [[UInt8]] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: corpusDirectory)) ?? []
        return names.sorted().compactMap { FileManager.default.contents(atPath: corpusDirectory + "/" + $0).map { [UInt8]($0) } }
    }

    static let types = [
        "application/json", "text/plain", "application/json; charset=utf-8", "TEXT/PLAIN;charset=\"UTF-8\"",
        "application/xml", "", ";", "text/plain; charset=latin1", "application/json;;", "a/b/c",
    ]

    /// Checks the property for one body under every media type.
    static func check(_ body: [UInt8]) {
        let who = Identity(userId: "alice", tenantId: "acme")
        for type in types {
            do {
                let job = try Submission.job(body: body, contentType: type, identity: who)
                #expect(job.userId == "alice" && job.tenantId == "acme")
                #expect(job.prompt != nil || job.messages != nil)
                // What the endpoint accepts, the spool accepts too.
                var stamped = job
                stamped.jobId = "fuzz-1"
                #expect((try? Job.decode(stamped.json().serialized())) != nil, "accepted but not decodable: \(body.prefix(80))")
            } catch {
                #expect(error.status == 400 || error.status == 415, "\(error)")
                #expect(!error.response.cgiBytes().isEmpty)
            }
        }
    }

    @Test("every corpus entry")
    func corpusEntries() {
        let entries = FuzzTests.corpus()
        #expect(entries.count >= 5, "corpus missing at \(FuzzTests.corpusDirectory)")
        for body in entries { FuzzTests.check(body) }
    }

    @Test("seeded mutations of the corpus: flips, truncations, splices, random bytes")
    func mutations() {
        var rng = SplitMix(seed: 0x5EED_1234)
        let entries = FuzzTests.corpus()
        guard !entries.isEmpty else { return }
        let alphabet = Array("{}[]\",:\\ 0123456789.eE+-truefalsnul\u{0}\u{7f}prompt messages role content".utf8) + [0xC3, 0xA9, 0xFF, 0xF0, 0x9F]
        for _ in 0..<3000 {
            var b = entries[Int(rng.next() % UInt64(entries.count))]
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                switch rng.next() % 5 {
                case 0 where !b.isEmpty: b[Int(rng.next() % UInt64(b.count))] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                case 1 where !b.isEmpty: b = Array(b.prefix(Int(rng.next() % UInt64(b.count))))
                case 2: b.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: Int(rng.next() % UInt64(b.count + 1)))
                case 3: let o = entries[Int(rng.next() % UInt64(entries.count))]; b += o.suffix(Int(rng.next() % UInt64(o.count + 1)))
                default: b = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                }
            }
            FuzzTests.check(b)
        }
    }

    @Test("random CGI variables and paths: routing yields only valid ids, Content-Length only digits")
    func variables() {
        var rng = SplitMix(seed: 42)
        let pieces = [
            "/", "jobs", "events", "v1", "files", "batches", "content", "cancel", "..", ".", "%2F", "a", "01a2-b_c.d", "", "//", "\u{0}", "é",
            String(repeating: "x", count: 130),
        ]
        let methods = ["GET", "POST", "DELETE", "PUT", "HEAD", "", "get"]
        for _ in 0..<3000 {
            let path = (0..<Int(rng.next() % 6)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined(separator: "/")
            let method = methods[Int(rng.next() % UInt64(methods.count))]
            if let r = try? Route.resolve(method: method, path: path) {
                switch r.route {
                case .show(let id), .events(let id), .cancel(let id), .file(let id), .fileContent(let id), .deleteFile(let id),
                    .batch(let id), .cancelBatch(let id):
                    #expect(JobID.isValid(id))
                case .submit, .list, .uploadFile, .createBatch, .listBatches: break
                }
            }
            let length = String(rng.next() % 3 == 0 ? "\(rng.next())" : path)
            let env = ["REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": length, "QUERY_STRING": path]
            if let req = try? Request.fromCGI({ env[$0] }) {
                #expect(req.contentLength.map { $0 >= 0 } ?? true)
                _ = req.queryValue("limit")
            }
        }
    }
}
