import Foundation
import JSON
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `llmspool worker --provider-batch` against the Batch API stand-in in Tests/peers/fake_llm.py:
/// distant deadlines go to the provider's batch and land in done/ with a `source` member; near
/// ones go live; failed, expired and badly answered batches send their jobs live; kill -9 at each
/// step submits no second batch and answers every job once.
@Suite("Provider batches", .serialized)
struct ProviderBatchTests {
    /// A spool, the stand-in, and a configuration file with fast scans and polls.
    struct Rig {
        let s: TestSpool
        let llm: LLMStandIn
        let config: String

        init(_ providerBatch: [String: Any] = [:]) throws {
            s = try TestSpool()
            llm = try LLMStandIn()
            var pb: [String: Any] = ["enabled": true, "scanSeconds": 0.2, "pollSeconds": 0.2, "maxPollSeconds": 0.5]
            for (k, v) in providerBatch { pb[k] = v }
            config = s.dir.file("llmspool.json")
            let doc = try JSONSerialization.data(withJSONObject: ["worker": ["providerBatch": pb, "rescanIntervalSeconds": 0.5]])
            try doc.write(to: URL(fileURLWithPath: config))
        }

        func start(_ extra: [String] = []) throws -> Process {
            try IncidentTests.startWorker(s, ["--config", config, "--llm-url", llm.baseURL] + extra)
        }

        func stop(_ w: Process) {
            kill(w.processIdentifier, SIGTERM)
            w.waitUntilExit()
        }

        /// Enqueues jobs with prompts `prompts`, each `deadlineIn` seconds from now (nil: none).
        func enqueue(_ prompts: [String], deadlineIn: Double?) throws -> [String] {
            let spool = try Spool(path: s.path)
            return try prompts.map { p in
                var job = Job(prompt: p)
                if let d = deadlineIn { job.deadline = Timestamp.format(milliseconds: Timestamp.nowMilliseconds() + Int64(d * 1000)) }
                return try spool.enqueue(job)
            }
        }

        func settled(_ n: Int) -> Bool { s.names("done").count + s.names("failed").count >= n }

        func stat(_ key: String) -> Int { (try? llm.get("/stats"))?[key]?.intValue ?? -1 }

        /// Times each prompt was called live, and run in a provider batch.
        func calls(_ prompt: String) -> (live: Int, batch: Int) {
            ((try? llm.get("/prompts"))?[prompt]?.intValue ?? 0, (try? llm.get("/batch-prompts"))?[prompt]?.intValue ?? 0)
        }

        func records() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: s.path + "/.provider-batches")) ?? []).filter { !$0.hasPrefix(".") }
        }

        func record() -> JSONValue? {
            guard let r = records().first, let d = FileManager.default.contents(atPath: s.path + "/.provider-batches/" + r) else { return nil }
            return try? JSONParser.parse([UInt8](d))
        }

        func source(_ id: String) -> JSONValue? { (try? s.json("done", id + ".json"))?["source"] }

        func log() -> String { (try? String(contentsOfFile: s.dir.file("worker.log"), encoding: .utf8)) ?? "" }

        func remove() {
            llm.stop()
            s.remove()
        }
    }

    static let day = 86_400.0

    @Test("distant deadlines go to one provider batch and land in done/ with the provider member; near ones and none go live")
    func routing() throws {
        let rig = try Rig()
        defer { rig.remove() }
        let distant = (0..<5).map { "distant \($0)" }, near = ["near 0", "near 1"], none = ["no deadline"]
        let far = try rig.enqueue(distant, deadlineIn: 2 * Self.day)
        let close = try rig.enqueue(near, deadlineIn: 3600)
        let plain = try rig.enqueue(none, deadlineIn: nil)
        let w = try rig.start(["--provider-batch"])
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(8) }
        rig.stop(w)
        #expect(ok, "\(rig.log())")
        #expect(rig.s.names("done") == (far + close + plain).map { $0 + ".json" }.sorted())
        for (id, p) in zip(far, distant) {
            let src = rig.source(id)
            #expect(src?["kind"]?.stringValue == "provider-batch")
            #expect(src?["batchId"]?.stringValue == "batch_1")
            #expect(try rig.s.json("done", id + ".json")["response"]?.stringValue == "echo: " + p)
            #expect(rig.calls(p) == (0, 1))
        }
        for (id, p) in zip(close + plain, near + none) {
            #expect(rig.source(id) == nil)
            #expect(rig.calls(p) == (1, 0))
        }
        #expect(rig.stat("batches_created") == 1)
        #expect(rig.records().isEmpty)
        #expect(rig.s.names("cur").isEmpty)
    }

    @Test("a provider batch that fails sends its jobs live, marked so, each called once")
    func failedBatch() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?outcome=failed")
        let prompts = (0..<3).map { "failing \($0)" }
        let ids = try rig.enqueue(prompts, deadlineIn: 2 * Self.day)
        let w = try rig.start()
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(3) }
        rig.stop(w)
        #expect(ok, "\(rig.log())")
        #expect(rig.s.names("done") == ids.map { $0 + ".json" }.sorted())
        for (id, p) in zip(ids, prompts) {
            let doc = try rig.s.json("done", id + ".json")
            #expect(doc["source"] == nil)
            let returned = doc["job"]?["history"]?.arrayValue?.first { $0["kind"]?.stringValue == "providerBatchReturned" }
            #expect(returned?["message"]?.stringValue?.contains("batch_1") == true)
            #expect(rig.calls(p) == (1, 0))
        }
        #expect(rig.stat("batches_created") == 1)
        #expect(rig.records().isEmpty)
    }

    @Test("an expired batch: its answered half is settled from the output, the rest (batch_expired) go live")
    func expiredBatch() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?outcome=expired&answer=2")
        let prompts = (0..<4).map { "expiring \($0)" }
        let ids = try rig.enqueue(prompts, deadlineIn: 2 * Self.day)
        let w = try rig.start()
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(4) }
        rig.stop(w)
        #expect(ok, "\(rig.log())")
        #expect(rig.s.names("done").count == 4)
        let fromBatch = ids.filter { rig.source($0) != nil }
        #expect(fromBatch.count == 2)
        for p in prompts { let c = rig.calls(p); #expect(c.live + c.batch == 1) }
    }

    @Test("hostile output: a missing line and a repeated one go live, an unknown custom_id is ignored, a 400 is dead-lettered as live")
    func hostileOutput() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?drop=1&dup=1&unknown=1")
        // Ids sort in enqueue order (UUIDv7), and the input file is in id order: a, b, c, d, then the 400.
        let prompts = ["line a", "line b", "line c", "line d", "fake:status=400"]
        let ids = try rig.enqueue(prompts, deadlineIn: 2 * Self.day)
        let w = try rig.start()
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(5) }
        rig.stop(w)
        #expect(ok, "\(rig.log())")
        #expect(rig.s.names("done") == ids.prefix(4).map { $0 + ".json" }.sorted())
        #expect(rig.source(ids[0]) == nil)  // dropped from the output: live
        #expect(rig.source(ids[1]) == nil)  // answered twice: live
        #expect(rig.source(ids[2])?["kind"]?.stringValue == "provider-batch")
        #expect(rig.source(ids[3])?["kind"]?.stringValue == "provider-batch")
        #expect(rig.calls("line a").live == 1 && rig.calls("line b").live == 1)
        #expect(rig.calls("line c").live == 0 && rig.calls("line d").live == 0)
        let dead = try rig.s.json("failed", ids[4] + ".json")
        #expect(dead["error"]?["httpStatus"]?.intValue == 400)
        #expect(rig.calls("fake:status=400") == (0, 1))
        #expect(rig.log().contains("unknown_custom_ids=1"))
    }

    @Test("two upload 5xx are retried with backoff: one file, one batch, every job done from it")
    func uploadFailures() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?upload500=2")
        let ids = try rig.enqueue((0..<3).map { "upload \($0)" }, deadlineIn: 2 * Self.day)
        let w = try rig.start()
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(3) }
        rig.stop(w)
        #expect(ok, "\(rig.log())")
        #expect(ids.allSatisfy { rig.source($0)?["kind"]?.stringValue == "provider-batch" })
        #expect(rig.stat("files_uploaded") == 1)
        #expect(rig.stat("batches_created") == 1)
    }

    /// Kills the worker with -9 once `reached` holds, then starts another; every job must end in
    /// done/ from the one provider batch, with its first attempt.
    func killAndRestart(_ rig: Rig, jobs: Int, reached: () -> Bool, between: () throws -> Void = {}) throws -> [String] {
        let prompts = (0..<jobs).map { "crash \($0)" }
        let ids = try rig.enqueue(prompts, deadlineIn: 2 * Self.day)
        let w = try rig.start()
        let hit = WorkerProcessTests.waitUntil(30) { reached() }
        kill(w.processIdentifier, SIGKILL)
        w.waitUntilExit()
        #expect(hit, "the crash point was not reached: \(rig.log())")
        // The jobs stay claimed by the batch's record, not given back, whoever recovers.
        #expect(rig.s.names("new").isEmpty)
        _ = try Spool(path: rig.s.path).recover()
        #expect(rig.s.names("new").isEmpty, "recovery gave back jobs a provider batch holds")
        try between()
        let w2 = try rig.start()
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(jobs) }
        rig.stop(w2)
        #expect(ok, "\(rig.log())")
        #expect(rig.s.names("done") == ids.map { $0 + ".json" }.sorted())
        for (id, p) in zip(ids, prompts) {
            #expect(rig.source(id)?["batchId"]?.stringValue == "batch_1")
            #expect(try rig.s.json("done", id + ".json")["attempts"]?.intValue == 1)
            #expect(rig.calls(p) == (0, 1))
        }
        #expect(rig.stat("batches_created") == 1, "a second batch was submitted")
        #expect(rig.records().isEmpty)
        return ids
    }

    @Test("kill -9 while the upload is in flight (record written, file id not): the file is uploaded again, one batch")
    func killDuringUpload() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?hold_upload=1")
        _ = try killAndRestart(
            rig, jobs: 4, reached: { rig.stat("files_uploaded") == 1 },
            between: {
                #expect(rig.record()?["state"]?.stringValue == "claimed")
                _ = try rig.llm.get("/batch-config?hold_upload=0")
                _ = try rig.llm.get("/release/upload")
            })
        #expect(rig.stat("files_uploaded") == 2)  // the first is an orphan at the provider
    }

    @Test("kill -9 after the provider created the batch, before its id was recorded: found by its input file, not submitted again")
    func killDuringSubmission() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?hold_create=1")
        _ = try killAndRestart(
            rig, jobs: 4, reached: { rig.stat("batches_created") == 1 },
            between: {
                #expect(rig.record()?["state"]?.stringValue == "submitting")
                _ = try rig.llm.get("/batch-config?hold_create=0")
                _ = try rig.llm.get("/release/create")
            })
        #expect(rig.stat("files_uploaded") == 1)
        #expect(rig.log().contains("found the provider batch made before a restart"))
    }

    @Test("kill -9 while polling (batch id recorded): the restarted worker re-attaches and settles it")
    func killWhilePolling() throws {
        let rig = try Rig()
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?delay=4")
        _ = try killAndRestart(
            rig, jobs: 4, reached: { rig.record()?["state"]?.stringValue == "submitted" },
            between: {
                #expect(rig.record()?["batchId"]?.stringValue == "batch_1")
            })
        #expect(rig.stat("files_uploaded") == 1)
        #expect(rig.log().contains("re-attached to a provider batch"))
    }

    @Test("a worker killed while gathering leaves a `gathering` record: its held jobs are given back uncounted and batched afresh")
    func killWhileGathering() throws {
        let rig = try Rig()
        defer { rig.remove() }
        let prompts = (0..<3).map { "gathered \($0)" }
        let ids = try rig.enqueue(prompts, deadlineIn: 2 * Self.day)
        // What the batcher leaves when killed between marking the jobs and listing them.
        let spool = try Spool(path: rig.s.path)
        let record = "pb-" + JobID.generate()
        try spool.writeRecord(
            record, in: Spool.providerBatchArea,
            bytes: Array(
                "{\"id\":\"\(record)\",\"model\":\"gpt-4o-mini\",\"state\":\"gathering\",\"createdAt\":\"\(Timestamp.now())\"}".utf8))
        for id in ids {
            guard case .claimed(let c) = try spool.claim(id + ".json", park: false) else { Issue.record("no claim"); continue }
            _ = try spool.holdForProviderBatch(c, record: record)
        }
        #expect(try spool.recover().givenBack.isEmpty)
        let w = try rig.start()
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(3) }
        rig.stop(w)
        #expect(ok, "\(rig.log())")
        for (id, p) in zip(ids, prompts) {
            #expect(rig.source(id)?["batchId"]?.stringValue == "batch_1")
            #expect(try rig.s.json("done", id + ".json")["attempts"]?.intValue == 1)
            #expect(rig.calls(p) == (0, 1))
        }
        #expect(rig.stat("batches_created") == 1)
        #expect(rig.records().isEmpty)
    }

    @Test("a deadline that comes near while the batch waits: the job is called live and the emptied batch is cancelled")
    func deadlineComesNear() throws {
        // Batched when more than 10 s away; called live when less than 6 s away.
        let rig = try Rig(["windowSeconds": 10, "liveMarginSeconds": 6])
        defer { rig.remove() }
        _ = try rig.llm.get("/batch-config?delay=60")
        let ids = try rig.enqueue(["soon"], deadlineIn: 13)
        let w = try rig.start()
        let submitted = WorkerProcessTests.waitUntil(10) { rig.stat("batches_created") == 1 }
        let ok = WorkerProcessTests.waitUntil(30) { rig.settled(1) }
        let cancelled = WorkerProcessTests.waitUntil(10) { rig.stat("batches_cancelled") == 1 && rig.records().isEmpty }
        rig.stop(w)
        #expect(submitted && ok && cancelled, "\(rig.log())")
        #expect(rig.s.names("done") == [ids[0] + ".json"])
        #expect(rig.source(ids[0]) == nil)
        #expect(rig.calls("soon") == (1, 0))
        #expect((try? rig.llm.get("/v1/batches/batch_1"))?["status"]?.stringValue == "cancelled")
    }
}
