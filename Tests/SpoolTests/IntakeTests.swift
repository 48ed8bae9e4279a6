import JSON
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

/// Files written into `new/` by hand, not through `enqueue`.
@Suite("Spool: hand-dropped files")
struct SpoolIntakeTests {
    /// Checks a rejection: `failed/KEY.original` holds exactly `bytes`, `failed/KEY.json` says why,
    /// and nothing is left in `new/` or `cur/`.
    private func expectRejected(
        _ t: TestSpool, _ outcome: ClaimOutcome, kind: IntakeError.Kind, name: String, bytes: [UInt8]?,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (key: String, error: IntakeError, doc: JSONValue) {
        let (key, error) = try #require(outcome.rejection, "expected a rejection, got \(outcome)", sourceLocation: sourceLocation)
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        #expect(JobID.isValid(key), sourceLocation: sourceLocation)
        if let bytes {
            #expect(t.read(.failed, key + ".original") == bytes, "the original bytes are kept exactly", sourceLocation: sourceLocation)
        }
        #expect(t.visible(.new).isEmpty, "new/ still has \(t.visible(.new))", sourceLocation: sourceLocation)
        #expect(t.visible(.cur).isEmpty, "cur/ still has \(t.visible(.cur))", sourceLocation: sourceLocation)
        #expect(t.visible(.tmp).isEmpty, sourceLocation: sourceLocation)
        let doc = try t.document(.failed, key + ".json", sourceLocation: sourceLocation)
        #expect(doc["status"] == .string("failed"), sourceLocation: sourceLocation)
        #expect(doc[path: "error", "kind"] == .string(kind.rawValue), sourceLocation: sourceLocation)
        #expect(doc[path: "error", "message"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(doc[path: "original", "file"] == .string(key + ".original"), sourceLocation: sourceLocation)
        #expect(doc[path: "original", "name"] == .string(name), sourceLocation: sourceLocation)
        if let bytes { #expect(doc[path: "original", "size"]?.intValue == bytes.count, sourceLocation: sourceLocation) }
        #expect(doc["history"]?.arrayValue?.first?["kind"] == .string("rejected"), sourceLocation: sourceLocation)
        #expect(doc["jobId"] == nil, "a rejected file has no trusted id", sourceLocation: sourceLocation)
        return (key, error, doc)
    }

    @Test func validFileTakesItsIdFromItsName() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("foo.json", #"{"prompt":"hi"}"#)
        let claim = try #require(try t.spool.claim("foo.json").claim)
        #expect(claim.id == "foo")
        #expect(claim.job.jobId == nil)
        #expect(t.visible(.cur) == ["foo.json"])
        try t.spool.finish(claim, answer: Answer(response: "ok"))
        #expect(try t.document(.done, "foo.json")["jobId"] == .string("foo"))
    }

    @Test func nameWithoutJsonSuffix() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("bar", #"{"prompt":"hi"}"#)
        let claim = try #require(try t.spool.claim("bar").claim)
        #expect(claim.id == "bar")
        #expect(t.visible(.cur) == ["bar.json"])
    }

    @Test func jobIdWinsOverTheFileName() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("x.json", #"{"jobId":"J-1","prompt":"hi"}"#)
        let claim = try #require(try t.spool.claim("x.json").claim)
        #expect(claim.id == "J-1")
        #expect(t.visible(.cur) == ["J-1.json"], "claimed under its canonical name")
        #expect(try t.spool.state(of: "J-1") == .cur)
    }

    @Test func badFileNameIsFineWhenTheDocumentHasAnId() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("bad name!.json", #"{"jobId":"good","prompt":"hi"}"#)
        let claim = try #require(try t.spool.claim("bad name!.json").claim)
        #expect(claim.id == "good")
        #expect(t.visible(.cur) == ["good.json"])
    }

    @Test func staleInvalidJSONIsRejectedWithItsBytes() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let bytes = Array(#"{"prompt": "hi""#.utf8)
        t.drop("broken.json", bytes, ageMilliseconds: 10_000)
        let outcome = try t.spool.claim("broken.json")
        let (key, error, _) = try expectRejected(t, outcome, kind: .invalidJSON, name: "broken.json", bytes: bytes)
        #expect(key == "broken", "a valid file name is the key")
        #expect(error.truncated)
        #expect(t.visible(.failed) == ["broken.json", "broken.original"])
    }

    @Test func freshTruncatedFileIsLeftToSettle() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let bytes = Array(#"{"prompt": "still being wri"#.utf8)
        t.drop("slow.json", bytes)
        #expect(try t.spool.claim("slow.json").isSettling)
        #expect(t.read(.new, "slow.json") == bytes)
        #expect(t.visible(.cur).isEmpty && t.visible(.failed).isEmpty)
        // Not locked: the next look may take it. Once it is old enough it is rejected.
        t.setAge(.new, "slow.json", milliseconds: Spool.settleMilliseconds + 1000)
        _ = try expectRejected(t, try t.spool.claim("slow.json"), kind: .invalidJSON, name: "slow.json", bytes: bytes)
    }

    @Test func settleTimeCanBeChosen() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let bytes = Array(#"{"prompt": "x"#.utf8)
        t.drop("s.json", bytes)
        _ = try expectRejected(t, try t.spool.claim("s.json", settleMilliseconds: 0), kind: .invalidJSON, name: "s.json", bytes: bytes)
    }

    @Test func emptyFile() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("empty.json", [UInt8]())
        #expect(try t.spool.claim("empty.json").isSettling, "an empty file may be one being written")
        t.setAge(.new, "empty.json", milliseconds: 60_000)
        let (_, error, _) = try expectRejected(t, try t.spool.claim("empty.json"), kind: .invalidJSON, name: "empty.json", bytes: [])
        #expect(error.message == "file is empty")
    }

    @Test func binaryGarbageIsRejectedAtOnce() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let bytes: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 0x02, 0x01, 0x00, 0xFF, 0xFE, 0x80, 0x0A, 0x00]
        t.drop("core.json", bytes)  // fresh: but not truncated, so there is nothing to wait for
        let (_, error, _) = try expectRejected(t, try t.spool.claim("core.json"), kind: .invalidJSON, name: "core.json", bytes: bytes)
        #expect(!error.truncated)
    }

    @Test func invalidJobIsRejectedNamingTheField() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let bytes = Array(#"{"prompt":"hi","maxTokens":0}"#.utf8)
        t.drop("j.json", bytes)
        let (_, error, doc) = try expectRejected(t, try t.spool.claim("j.json"), kind: .invalidJob, name: "j.json", bytes: bytes)
        #expect(error.field == "maxTokens")
        #expect(doc[path: "error", "message"]?.stringValue?.hasPrefix("maxTokens") == true)
    }

    @Test func fileOverTheSizeLimitIsRejected() throws {
        let limits = Limits.with { $0.maxFileBytes = 64 }
        let t = try TestSpool(limits: limits)
        defer { t.remove() }
        let bytes = Array(("{\"prompt\":\"" + String(repeating: "x", count: 100) + "\"}").utf8)
        t.drop("big.json", bytes)
        let (_, error, _) = try expectRejected(t, try t.spool.claim("big.json"), kind: .tooLarge, name: "big.json", bytes: bytes)
        #expect(error.message.contains("64"))
        // Exactly at the limit is fine.
        let exact = Array(("{\"prompt\":\"" + String(repeating: "y", count: 64 - 13) + "\"}").utf8)
        #expect(exact.count == 64)
        t.drop("ok.json", exact)
        #expect(try t.spool.claim("ok.json").claim != nil)
    }

    @Test func badNameWithoutJobIdIsRejected() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let bytes = Array(#"{"prompt":"hi"}"#.utf8)
        t.drop("bad name!.json", bytes)
        let (key, error, _) = try expectRejected(
            t, try t.spool.claim("bad name!.json"), kind: .badId,
            name: "bad name!.json", bytes: bytes)
        #expect(error.field == "jobId")
        #expect(key != "bad name!")
        #expect(Array(key).count == 36, "the key is a fresh UUIDv7")
        #expect(error.message.contains("bad name!"))
    }

    @Test func idAlreadyDoneIsAClashAndDoneIsUntouched() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var job = Job(prompt: "original")
        job.jobId = "J"
        try t.spool.enqueue(job)
        try t.spool.finish(t.claim(id: "J"), answer: Answer(response: "answered"))
        let done = try #require(t.read(.done, "J.json"))

        let bytes = Array(#"{"jobId":"J","prompt":"again"}"#.utf8)
        t.drop("x.json", bytes)
        let (key, error, _) = try expectRejected(t, try t.spool.claim("x.json"), kind: .idClash, name: "x.json", bytes: bytes)
        #expect(key != "J", "the clash does not take the job's name in failed/")
        #expect(error.field == "jobId")
        #expect(error.message.contains("done/"))
        #expect(t.read(.done, "J.json") == done)
        #expect(try t.spool.state(of: "J") == .done)
    }

    @Test func sameNameAsADoneJobIsAClash() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("J.json", #"{"status":"done"}"#, into: .done)
        let bytes = Array(#"{"prompt":"again"}"#.utf8)
        t.drop("J.json", bytes)
        let (key, _, _) = try expectRejected(t, try t.spool.claim("J.json"), kind: .idClash, name: "J.json", bytes: bytes)
        #expect(key != "J")
        #expect(t.read(.done, "J.json") == Array(#"{"status":"done"}"#.utf8))
    }

    /// A bad file named like a finished job must not put that id into failed/ as well (invariant 2).
    @Test func badFileNamedLikeADoneJobDoesNotTakeItsId() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("J.json", #"{"status":"done"}"#, into: .done)
        let bytes: [UInt8] = [0x00]
        t.drop("J.json", bytes)
        let (key, _, _) = try expectRejected(t, try t.spool.claim("J.json"), kind: .invalidJSON, name: "J.json", bytes: bytes)
        #expect(key != "J")
        #expect(!t.exists(.failed, "J.json"))
        #expect(try t.spool.state(of: "J") == .done)
    }

    @Test func idAlreadyFailedIsAClash() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("F.json", #"{"status":"failed"}"#, into: .failed)
        t.drop("y.json", #"{"jobId":"F","prompt":"p"}"#)
        let (key, _, _) = try expectRejected(t, try t.spool.claim("y.json"), kind: .idClash, name: "y.json", bytes: nil)
        #expect(key != "F")
        #expect(t.read(.failed, "F.json") == Array(#"{"status":"failed"}"#.utf8))
    }

    @Test func sameNameAsALiveClaimIsAClash() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var job = Job(prompt: "first")
        job.jobId = "L"
        try t.spool.enqueue(job)
        let live = try t.claim(id: "L")
        let bytes = Array(#"{"prompt":"second"}"#.utf8)
        t.drop("L.json", bytes)
        let outcome = try t.spool.claim("L.json")
        let (key, error) = try #require(outcome.rejection, "\(outcome)")
        #expect(error.kind == .idClash)
        #expect(error.message.contains("cur/"))
        #expect(t.read(.failed, key + ".original") == bytes)
        #expect(t.read(.cur, "L.json") == live.bytes, "the live claim's file is not replaced")
        #expect(t.visible(.cur) == ["L.json"] && t.visible(.new).isEmpty)
        withExtendedLifetime(live) {}
    }

    @Test func symlinkIsRejectedAndItsTargetUntouched() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let target = t.scratch + "/target.json"
        let content = Array(#"{"prompt":"secret"}"#.utf8)
        writeFile(target, content)
        #expect(symlink(target, t.path(.new, "link.json")) == 0)
        let outcome = try t.spool.claim("link.json")
        let (key, _, _) = try expectRejected(t, outcome, kind: .notRegularFile, name: "link.json", bytes: nil)
        #expect(key == "link")
        let mode = try #require(lstatMode(t.path(.failed, "link.original")))
        #expect(mode & S_IFMT == S_IFLNK, "the link itself is kept, not what it points to")
        #expect(readFile(target) == content)
    }

    @Test func directoryIsRejected() throws {
        let t = try TestSpool()
        defer { t.remove() }
        #expect(mkdir(t.path(.new, "dir.json"), 0o755) == 0)
        let (key, _, _) = try expectRejected(t, try t.spool.claim("dir.json"), kind: .notRegularFile, name: "dir.json", bytes: nil)
        #expect(lstatMode(t.path(.failed, key + ".original")).map { $0 & S_IFMT } == S_IFDIR)
    }

    @Test func dotFilesAreIgnored() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop(".partial.json", #"{"prompt":"hi"}"#)
        #expect(try t.spool.claim(".partial.json").isGone)
        #expect(t.names(.new) == [".partial.json"])
        #expect(try t.spool.waiting().isEmpty)
        #expect(try t.spool.status().counts[.new] == 0)
    }

    @Test func rejectionKeyAvoidsAnExistingDeadLetter() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("dup.json", #"{"status":"failed","note":"older"}"#, into: .failed)
        let bytes: [UInt8] = [0x00, 0x01]
        t.drop("dup.json", bytes)
        let (key, _, _) = try expectRejected(t, try t.spool.claim("dup.json"), kind: .invalidJSON, name: "dup.json", bytes: bytes)
        #expect(key != "dup")
        #expect(t.read(.failed, "dup.json") == Array(#"{"status":"failed","note":"older"}"#.utf8))
    }

    @Test func droppingViaTmpAndRenameIsClaimedLikeEnqueue() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("w.job", #"{"jobId":"via-tmp","prompt":"hi"}"#, into: .tmp)
        #expect(rename(t.path(.tmp, "w.job"), t.path(.new, "via-tmp.json")) == 0)
        #expect(try t.spool.claim("via-tmp.json").claim?.id == "via-tmp")
    }
}
