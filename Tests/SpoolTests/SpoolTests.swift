import JSON
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

@Suite("Spool: create and open")
struct SpoolOpenTests {
    @Test func createMakesEveryStateDirectoryWithTheContractMode() throws {
        let t = try TestSpool()
        defer { t.remove() }
        for state in SpoolState.allCases {
            let mode = try #require(lstatMode(t.root + "/" + state.rawValue), "\(state.rawValue)/ missing")
            #expect(mode & S_IFMT == S_IFDIR)
            #expect(mode & 0o7777 == 0o2770, "\(state.rawValue)/ has mode \(String(mode & 0o7777, radix: 8))")
        }
        #expect(t.spool.path == t.root)
    }

    @Test func createIsIdempotentAndKeepsJobs() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let id = try t.spool.enqueue(Job(prompt: "keep me"))
        let again = try Spool.create(at: t.root)
        #expect(try again.state(of: id) == .new)
        #expect(t.exists(.new, id + ".json"))
    }

    @Test func openingAMissingDirectoryListsEverything() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let error = #expect(throws: SpoolError.self) { try Spool(path: t.scratch + "/nope") }
        #expect(error?.missing == ["the directory itself"])
        #expect(error?.description.contains("llmspool init") == true)
    }

    @Test func createMakesMissingParents() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let path = t.scratch + "/a/b/spool"
        let spool = try Spool.create(at: path)
        #expect(spool.path == path)
        #expect(lstatMode(path + "/new").map { $0 & 0o7777 } == 0o2770)
        #expect(lstatMode(t.scratch + "/a").map { $0 & S_IFMT } == S_IFDIR)
    }

    @Test func openingAFileIsNotASpool() throws {
        let t = try TestSpool()
        defer { t.remove() }
        writeFile(t.scratch + "/file", [])
        let error = #expect(throws: SpoolError.self) { try Spool(path: t.scratch + "/file") }
        #expect(error?.missing == ["the directory itself"])
    }

    @Test("a partial spool names what is missing", arguments: [["cur"], ["tmp", "failed"], ["new", "cur", "done"]])
    func partialSpool(_ removed: [String]) throws {
        let t = try TestSpool()
        defer { t.remove() }
        for name in removed { #expect(rmdir(t.root + "/" + name) == 0) }
        let error = #expect(throws: SpoolError.self) { try Spool(path: t.root) }
        #expect(error?.missing == removed.map { $0 + "/" })
        #expect(error?.description.contains(t.root + " is not a spool") == true)
    }

    @Test func aStateThatIsAFileIsMissing() throws {
        let t = try TestSpool()
        defer { t.remove() }
        #expect(rmdir(t.root + "/done") == 0)
        writeFile(t.root + "/done", [])
        let error = #expect(throws: SpoolError.self) { try Spool(path: t.root) }
        #expect(error?.missing == ["done/"])
    }
}

@Suite("Spool: reading input files")
struct SpoolInputTests {
    @Test func readsAFileUpToTheLimit() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let path = t.scratch + "/job.json"
        let bytes = Array(#"{"prompt":"from a file"}"#.utf8)
        writeFile(path, bytes)
        #expect(try Spool.readInput(path, limit: 1000) == bytes)
        // Over the limit: limit + 1 bytes, so the caller can tell.
        #expect(try Spool.readInput(path, limit: 5).count == 6)
    }

    @Test func missingFileIsASystemErrorNamingThePath() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let error = #expect(throws: SpoolError.self) { try Spool.readInput(t.scratch + "/absent.json", limit: 10) }
        #expect(error?.systemError?.errno == .noSuchFileOrDirectory)
        #expect(error?.systemError?.path == t.scratch + "/absent.json")
    }
}

@Suite("Spool: enqueue")
struct SpoolEnqueueTests {
    @Test(arguments: [Durability.durable, .volatile])
    func enqueueWritesOneFileIntoNew(_ durability: Durability) throws {
        let t = try TestSpool()
        defer { t.remove() }
        let before = Timestamp.nowMilliseconds()
        let id = try t.spool.enqueue(Job(prompt: "hello"), durability: durability)
        #expect(JobID.isValid(id))
        #expect(Array(id)[14] == "7", "a generated id is a UUIDv7")
        #expect(t.visible(.new) == [id + ".json"])
        #expect(t.names(.tmp).isEmpty, "nothing is left in tmp/")
        #expect(t.visible(.cur).isEmpty && t.visible(.done).isEmpty && t.visible(.failed).isEmpty)
        let job = try Job(json: t.document(.new, id + ".json"))
        #expect(job.jobId == id)
        #expect(job.prompt == "hello")
        let submitted = try #require(job.submittedAt.flatMap(Timestamp.parse))
        #expect(submitted >= before - 1 && submitted <= Timestamp.nowMilliseconds())
        #expect(try t.spool.state(of: id) == .new)
        #expect(try t.spool.waiting() == [id + ".json"])
    }

    @Test func enqueueKeepsTheGivenIdAndFields() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var job = Job(prompt: "p")
        job.jobId = "order-42"
        job.userId = "alice"
        job.tenantId = "acme"
        job.submittedAt = "2026-11-26T10:00:00Z"
        job.metadata = ["k": .integer(1)]
        job.extra = [JSONObject.Member("traceId", .string("t"))]
        #expect(try t.spool.enqueue(job) == "order-42")
        #expect(try Job(json: t.document(.new, "order-42.json")) == job)
    }

    @Test(
        "an invalid job is refused and nothing is written",
        arguments: [
            (Job(prompt: ""), "prompt"), (Job(), "prompt"), (Job(messages: []), "messages"),
        ])
    func enqueueRefusesInvalidJobs(_ job: Job, _ field: String) throws {
        let t = try TestSpool()
        defer { t.remove() }
        let error = #expect(throws: SpoolError.self) { try t.spool.enqueue(job) }
        #expect(error?.intake?.kind == .invalidJob)
        #expect(error?.intake?.field == field)
        #expect(t.names(.new).isEmpty && t.names(.tmp).isEmpty)
    }

    @Test("an id that could escape the spool is refused", arguments: ["../escape", "a/b", ".hidden", ""])
    func enqueueRefusesBadIds(_ id: String) throws {
        let t = try TestSpool()
        defer { t.remove() }
        var job = Job(prompt: "p")
        job.jobId = id
        let error = #expect(throws: SpoolError.self) { try t.spool.enqueue(job) }
        #expect(error?.intake?.field == "jobId")
        #expect(t.names(.new).isEmpty && t.names(.tmp).isEmpty)
        #expect(lstatMode(t.scratch + "/escape") == nil && lstatMode(t.root + "/escape") == nil)
    }

    @Test("an id already in the spool is refused", arguments: [SpoolState.new, .cur, .done, .failed])
    func enqueueRefusesAnExistingId(_ state: SpoolState) throws {
        let t = try TestSpool()
        defer { t.remove() }
        let existing = Array(#"{"jobId":"taken","prompt":"first"}"#.utf8)
        t.drop("taken.json", existing, into: state)
        var job = Job(prompt: "second")
        job.jobId = "taken"
        let error = #expect(throws: SpoolError.self) { try t.spool.enqueue(job) }
        #expect(error?.existing?.id == "taken")
        #expect(error?.existing?.state == state)
        #expect(error?.description.contains("already exists") == true)
        #expect(t.read(state, "taken.json") == existing, "the existing file is untouched")
        #expect(t.names(.tmp).isEmpty)
    }

    @Test func largeJobRoundTripsThroughTheDisk() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let prompt = String(repeating: "0123456789abcdé☃", count: 20_000)  // 380,000 bytes: several reads
        let id = try t.spool.enqueue(Job(prompt: prompt), durability: .volatile)
        let bytes = try #require(t.read(.new, id + ".json"))
        let claim = try t.claim(id: id)
        #expect(claim.job.prompt == prompt)
        #expect(claim.bytes == bytes)
    }
}

@Suite("Spool: batch enqueue")
struct SpoolBatchTests {
    @Test(arguments: [Durability.durable, .volatile])
    func batchEnqueuesAllInOrder(_ durability: Durability) throws {
        let t = try TestSpool()
        defer { t.remove() }
        var named = Job(prompt: "named")
        named.jobId = "named-1"
        let jobs = [Job(prompt: "a"), named, Job(prompt: "c"), Job(messages: [Job.Message(role: "user", content: "d")])]
        let ids = try t.spool.enqueue(batch: jobs, durability: durability)
        #expect(ids.count == 4)
        #expect(ids[1] == "named-1")
        #expect(Set(ids).count == 4)
        #expect(t.visible(.new) == ids.map { $0 + ".json" }.sorted())
        #expect(t.names(.tmp).isEmpty)
        for (id, job) in zip(ids, jobs) {
            let stored = try Job(json: t.document(.new, id + ".json"))
            #expect(stored.jobId == id)
            #expect(stored.prompt == job.prompt && stored.messages == job.messages)
        }
    }

    @Test func emptyBatch() throws {
        let t = try TestSpool()
        defer { t.remove() }
        #expect(try t.spool.enqueue(batch: []) == [])
    }

    @Test func duplicateIdInsideTheBatchEnqueuesNothing() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var a = Job(prompt: "a")
        a.jobId = "dup"
        var b = Job(prompt: "b")
        b.jobId = "other"
        var c = Job(prompt: "c")
        c.jobId = "dup"
        let error = #expect(throws: BatchEnqueueError.self) { try t.spool.enqueue(batch: [a, b, c]) }
        #expect(error?.index == 2)
        #expect(error?.accepted == [])
        #expect(error?.error.existing?.id == "dup")
        #expect(error?.description.hasPrefix("job 3 of the batch") == true)
        #expect(t.names(.new).isEmpty)
        #expect(t.names(.tmp).isEmpty, "temporaries of the prepared jobs are removed")
    }

    @Test func invalidJobInsideTheBatchEnqueuesNothing() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let error = #expect(throws: BatchEnqueueError.self) {
            try t.spool.enqueue(batch: [Job(prompt: "ok"), Job(prompt: "also ok"), Job(prompt: "")])
        }
        #expect(error?.index == 2)
        #expect(error?.accepted == [])
        #expect(error?.error.intake?.field == "prompt")
        #expect(t.names(.new).isEmpty && t.names(.tmp).isEmpty)
    }

    @Test func idAlreadyDoneRefusesTheBatch() throws {
        let t = try TestSpool()
        defer { t.remove() }
        t.drop("old.json", "{}", into: .done)
        var old = Job(prompt: "again")
        old.jobId = "old"
        let error = #expect(throws: BatchEnqueueError.self) { try t.spool.enqueue(batch: [Job(prompt: "x"), old]) }
        #expect(error?.index == 1)
        #expect(error?.error.existing?.state == .done)
        #expect(t.names(.new).isEmpty && t.names(.tmp).isEmpty)
        #expect(t.read(.done, "old.json") == Array("{}".utf8))
    }

    @Test func clashWithAWaitingJobKeepsWhatWasRenamed() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var waiting = Job(prompt: "already waiting")
        waiting.jobId = "b"
        try t.spool.enqueue(waiting)
        let before = t.read(.new, "b.json")
        let jobs = ["a", "b", "c"].map { id -> Job in
            var j = Job(prompt: "batch " + id)
            j.jobId = id
            return j
        }
        let error = #expect(throws: BatchEnqueueError.self) { try t.spool.enqueue(batch: jobs) }
        #expect(error?.index == 1)
        #expect(error?.accepted == ["a"])
        #expect(error?.error.existing?.id == "b")
        #expect(error?.error.existing?.state == .new)
        #expect(t.visible(.new) == ["a.json", "b.json"])
        #expect(t.read(.new, "b.json") == before, "the waiting job is not replaced")
        #expect(t.names(.tmp).isEmpty)
    }
}
