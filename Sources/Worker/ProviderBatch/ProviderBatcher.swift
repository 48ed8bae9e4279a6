import Basics
import JSON
public import LLM
public import Logging
public import ServiceLifecycle
import Spool

/// Sends jobs whose deadline is further away than the provider's window to the provider's Batch
/// API, and settles them from its output as a live call would (docs/batch.md, "Provider batches").
///
/// A `Service` beside the ``Worker`` in the daemon's group. It looks through `new/` every
/// `scan` for jobs that ``ProviderBatchRouting/batches(_:_:nowMs:)`` gives it (the live loop
/// leaves those alone), claims them per model into a durable record, uploads their requests as a
/// JSONL file, creates the batch, polls it with backoff, and writes `done/` and `failed/` from the
/// output and error files. A job whose deadline comes within `liveMargin`, and every job of a
/// batch that fails, expires or answers it badly, goes back to `new/` for the live path.
///
/// With `gather` false (batching turned off) it only finishes the batches recorded earlier.
public final class ProviderBatcher: Service {
    let configuration: WorkerConfiguration
    let client: ProviderBatchClient
    let logger: Logger
    let gather: Bool

    public init(configuration: WorkerConfiguration, client: ProviderBatchClient, logger: Logger, gather: Bool = true) {
        self.configuration = configuration
        self.client = client
        self.logger = logger
        self.gather = gather
    }

    /// Whether the spool holds provider batch records (a worker must re-attach to them).
    public static func hasRecords(spoolPath: String) -> Bool {
        guard let spool = try? Spool(path: spoolPath) else { return false }
        return !((try? spool.recordNames(in: ProviderBatchRecord.area)) ?? []).isEmpty
    }

    public func run() async throws {
        let spool = try Spool(path: configuration.spoolPath)
        let loop = Loop(batcher: self, spool: spool)
        let task = Task { await loop.run() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await task.value
            } onGracefulShutdown: {
                task.cancel()
            }
        } onCancel: {
            task.cancel()
        }
        client.engine.shutdown()
    }
}

extension ProviderBatcher {
    /// One provider batch in this process: its record and the claims it holds.
    struct Active {
        var record: ProviderBatchRecord
        var claims: [String: Claim]
        /// When to act next (upload, submit, poll), wall-clock milliseconds.
        var dueMs: Int64
        /// The last wait between polls or retries, for the backoff.
        var lastWaitMs: Int64?
    }

    /// The batcher's state; used by one task only.
    final class Loop {
        let batcher: ProviderBatcher
        let spool: Spool
        let settings: ProviderBatchSettings
        var logger: Logger { batcher.logger }
        var client: ProviderBatchClient { batcher.client }
        var active: [String: Active] = [:]
        /// Names in `new/` judged live (a deadline only comes closer: they stay live).
        var live: Set<String> = []
        var nextScanMs: Int64 = 0

        init(batcher: ProviderBatcher, spool: Spool) {
            self.batcher = batcher
            self.spool = spool
            settings = batcher.configuration.providerBatch
        }

        var now: Int64 { Timestamp.nowMilliseconds() }

        func run() async {
            // One batcher per spool: the others stand by until the lock is free.
            var lock: ProviderBatchLock?
            var said = false
            while !Task.isCancelled {
                do { lock = try spool.takeProviderBatchLock() } catch {
                    logger.error("could not take the provider-batch lock", metadata: ["error": "\(error)"])
                }
                if lock != nil { break }
                if !said {
                    logger.notice("another worker's batcher holds this spool's provider batches: standing by")
                    said = true
                }
                do { try await Task.sleep(for: settings.scan) } catch { return }
            }
            guard lock != nil else { return }
            reattach()
            logger.info(
                "provider batches ready",
                metadata: [
                    "batches": "\(active.count)", "gather": "\(batcher.gather)", "window_s": "\(settings.window.wholeMilliseconds / 1000)",
                ])
            while !Task.isCancelled {
                if batcher.gather, now >= nextScanMs {
                    await scan()
                    nextScanMs = now + settings.scan.wholeMilliseconds
                }
                for id in active.keys.sorted() where !Task.isCancelled {
                    await advance(id)
                }
                if !batcher.gather && active.isEmpty {
                    // Batching is off and the recorded batches are finished: let another worker's
                    // batcher have the spool, and wait for the stop (a Service that returns would
                    // stop the whole group).
                    lock = nil
                    logger.notice("provider batches recorded earlier are finished")
                    while !Task.isCancelled { do { try await Task.sleep(for: .seconds(3600)) } catch { break } }
                    break
                }
                var wake = batcher.gather ? nextScanMs : now + 60_000
                for a in active.values {
                    wake = min(wake, a.dueMs)
                    for c in a.claims.values {
                        if let d = ProviderBatchRouting.deadlineMs(c.job) { wake = min(wake, d - settings.liveMargin.wholeMilliseconds) }
                    }
                }
                let ms = max(10, wake - now)
                do { try await Task.sleep(for: .milliseconds(ms)) } catch { break }
            }
            withExtendedLifetime(lock) {}  // held to here, not to its last use
            logger.info("provider batches stopped", metadata: ["batches": "\(active.count)"])
        }

        // MARK: Re-attaching

        /// Reads every record and takes back the claims its markers hold.
        func reattach() {
            let names: [String]
            do { names = try spool.recordNames(in: ProviderBatchRecord.area) } catch {
                logger.error("could not list provider batch records", metadata: ["error": "\(error)"])
                return
            }
            for name in names.sorted() {
                guard let bytes = try? spool.readRecord(name, in: ProviderBatchRecord.area, limit: ProviderBatchRecord.maxBytes)?.bytes,
                    let record = ProviderBatchRecord.parse(bytes), record.id == name
                else {
                    logger.error("a provider batch record cannot be read; its jobs stay held", metadata: ["record": "\(name)"])
                    continue
                }
                let held: [Claim]
                do {
                    let found = try spool.providerBatchClaims(record: record.id)
                    held = found.claims
                    for bad in found.invalid {
                        logger.error("a job held by a provider batch is no longer a valid job; left in cur/", metadata: ["file": "\(bad)"])
                    }
                } catch {
                    logger.error("could not read a provider batch's claims", metadata: ["record": "\(name)", "error": "\(error)"])
                    continue
                }
                var a = Active(record: record, claims: Dictionary(held.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }), dueMs: now)
                if record.state == .gathering {
                    // It died while taking jobs: nothing went to the provider. Give them back as they were.
                    for c in a.claims.values { giveBack(c, reason: "the worker stopped while gathering a provider batch", live: false) }
                    a.claims = [:]
                }
                logger.notice(
                    "re-attached to a provider batch",
                    metadata: [
                        "record": "\(record.id)", "state": "\(record.state.rawValue)", "jobs": "\(a.claims.count)",
                        "batch": "\(record.batchID ?? "-")",
                    ])
                active[record.id] = a
            }
        }

        // MARK: Gathering

        /// Looks through `new/` for jobs to batch, and claims them in groups per model.
        func scan() async {
            guard let names = try? spool.waiting() else { return }
            live.formIntersection(names)
            let t = now
            var byModel: [String: [(name: String, job: Job, size: Int)]] = [:]
            var models: [String] = []
            for name in names where !live.contains(name) {
                guard let peeked = spool.peek(name), case .success(let job) = peeked.job else { continue }
                guard ProviderBatchRouting.batches(job, settings, nowMs: t) else {
                    live.insert(name)
                    continue
                }
                let model = job.model ?? batcher.configuration.defaultModel
                if byModel[model] == nil { models.append(model) }
                let id = job.jobId ?? Job.id(fromFileName: name)
                byModel[model, default: []].append((name, job, line(job, id: id).count))
            }
            for model in models {
                let candidates = byModel[model] ?? []
                let (groups, tooLarge) = ProviderBatchRouting.groups(
                    sizes: candidates.map(\.size), maxRequests: settings.maxRequests, maxBytes: settings.maxBytes)
                if !tooLarge.isEmpty {
                    let names = tooLarge.map { candidates[$0].name }
                    let spool = self.spool
                    _ = try? await Disk.run {
                        for name in names {
                            guard case .claimed(let c) = try spool.claim(name) else { continue }
                            try spool.giveBack(
                                c, reason: "its request is larger than a provider batch file may be", countAttempt: false,
                                event: ProviderBatchRouting.returnedEvent)
                        }
                    }
                }
                for g in groups where !Task.isCancelled {
                    await take(model: model, names: g.map { candidates[$0].name })
                }
            }
        }

        /// Claims `names` for a new provider batch of `model`: the record first (`gathering`), then
        /// each claim is held by it, then the markers are synced and the record lists the jobs (`claimed`).
        func take(model: String, names: [String]) async {
            let record = ProviderBatchRecord(
                id: "pb-" + JobID.generate(), model: model, state: .gathering, createdAt: Timestamp.now(),
                completionWindow: settings.completionWindow)
            let spool = self.spool, settings = self.settings
            let result: Result<[Claim], any Error>
            do {
                result = .success(
                    try await Disk.run { () throws -> [Claim] in
                        try record.save(spool)
                        var held: [Claim] = []
                        for name in names {
                            guard case .claimed(let c) = try spool.claim(name, park: false) else { continue }
                            guard ProviderBatchRouting.batches(c.job, settings, nowMs: Timestamp.nowMilliseconds()),
                                let h = try spool.holdForProviderBatch(c, record: record.id)
                            else {
                                try spool.giveBack(c, reason: "not taken into a provider batch after all", countAttempt: false)
                                continue
                            }
                            held.append(h)
                        }
                        if held.isEmpty {
                            try spool.removeRecord(record.id, in: ProviderBatchRecord.area)
                            return []
                        }
                        try spool.syncClaims()
                        var r = record
                        r.state = .claimed
                        r.jobs = held.map(\.id)
                        try r.save(spool)
                        return held
                    })
            } catch {
                result = .failure(error)
            }
            switch result {
            case .success(let held):
                guard !held.isEmpty else { return }
                var r = record
                r.state = .claimed
                r.jobs = held.map(\.id)
                active[r.id] = Active(record: r, claims: Dictionary(held.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }), dueMs: now)
                logger.info("provider batch gathered", metadata: ["record": "\(r.id)", "model": "\(model)", "jobs": "\(held.count)"])
            case .failure(let error):
                // Claims made so far stay in cur/: held ones by the record (re-attached at the next
                // start, as `gathering`: given back), the others by nothing (recovery gives them back).
                logger.error("could not gather a provider batch", metadata: ["record": "\(record.id)", "error": "\(error)"])
            }
        }

        /// A job's line of the input file: the request a live call would send.
        func line(_ job: Job, id: String) -> [UInt8] {
            let model = job.model ?? batcher.configuration.defaultModel
            let request = ChatRequest(
                model: model, messages: Prompt.messages(job).map { ChatMessage(role: $0.role, content: $0.content) },
                maxTokens: job.maxTokens, temperature: job.temperature, extra: ChatResponder.requestOptions(job))
            return JSONValue.object([
                "custom_id": .string(id), "method": .string("POST"), "url": .string("/v1/chat/completions"), "body": request.json,
            ]).serialized()
        }

        // MARK: Advancing one batch

        func advance(_ id: String) async {
            guard var a = active[id] else { return }
            // Jobs whose deadline is near go live, whatever the batch is doing.
            let t = now
            for c in a.claims.values.sorted(by: { $0.id < $1.id }) where ProviderBatchRouting.mustGoLive(c.job, settings, nowMs: t) {
                if giveBack(c, reason: "its deadline \(c.job.deadline ?? "?") is near: called live instead", live: true) {
                    a.claims[c.id] = nil
                }
            }
            active[id] = a
            if a.claims.isEmpty {
                await close(id, reason: "no job left in it")
                return
            }
            guard a.dueMs <= now else { return }
            do {
                switch a.record.state {
                case .gathering:
                    break  // handled at re-attach
                case .claimed:
                    try await upload(id)
                    try await submit(id)
                case .uploaded, .submitting:
                    try await submit(id)
                case .submitted:
                    try await poll(id)
                }
            } catch is CancellationError {
                return
            } catch let e as LLMError
                where e.cause == .permanent && e.httpStatus != nil
                && [.claimed, .uploaded].contains(active[id]?.record.state)
            {
                // (In `submitting` a batch may exist whatever the provider says now: keep trying; the
                // jobs' deadlines still send them live in time.)
                // The provider refused the file or the batch: no batch runs; the jobs go live.
                logger.error("the provider refused a batch; its jobs go live", metadata: ["record": "\(id)", "error": "\(e)"])
                backToLive(id, reason: "the provider refused the batch: \(e.message)")
                await close(id, reason: "refused")
            } catch {
                guard var a = active[id] else { return }
                let wait = ProviderBatchRouting.nextPoll(after: a.lastWaitMs, settings)
                a.lastWaitMs = wait
                a.dueMs = now + wait
                active[id] = a
                logger.warning(
                    "provider batch step failed; will try again",
                    metadata: [
                        "record": "\(id)", "state": "\(a.record.state.rawValue)", "error": "\(error)", "retry_in_ms": "\(wait)",
                    ])
            }
        }

        func save(_ a: Active) async throws {
            let spool = self.spool, r = a.record
            try await Disk.run { try r.save(spool) }
            active[a.record.id] = a
        }

        /// Uploads the input file and records its id (`uploaded`). A worker that dies after the
        /// provider took the file and before its id is recorded uploads again at restart: the first
        /// file stays at the provider unused (no batch names it); no batch is ever made from it.
        func upload(_ id: String) async throws {
            guard var a = active[id] else { return }
            var content: [UInt8] = []
            for c in a.claims.values.sorted(by: { $0.id < $1.id }) {
                content += line(c.job, id: c.id)
                content.append(UInt8(ascii: "\n"))
            }
            let file = try await client.uploadFile(named: a.record.fileName, content: content)
            a.record.inputFileID = file
            a.record.state = .uploaded
            a.record.jobs = a.claims.keys.sorted()
            try await save(a)
            logger.info("provider batch file uploaded", metadata: ["record": "\(id)", "file": "\(file)", "bytes": "\(content.count)"])
        }

        /// Creates the batch, recording `submitting` first: after a crash or an unclear failure the
        /// provider's batches are searched for one made from this input file before another is asked for.
        func submit(_ id: String) async throws {
            guard var a = active[id], let file = a.record.inputFileID else { return }
            if a.record.state == .submitting, let found = try await lookUp(inputFile: file) {
                a.record.batchID = found.id
                a.record.state = .submitted
                a.dueMs = now + settings.poll.wholeMilliseconds
                a.lastWaitMs = nil
                try await save(a)
                logger.notice("found the provider batch made before a restart", metadata: ["record": "\(id)", "batch": "\(found.id)"])
                return
            }
            if a.record.state != .submitting {
                a.record.state = .submitting
                try await save(a)
            }
            let batch = try await client.createBatch(
                inputFileID: file, completionWindow: a.record.completionWindow,
                metadata: ["llmspool_record": id])
            a.record.batchID = batch.id
            a.record.state = .submitted
            a.dueMs = now + settings.poll.wholeMilliseconds
            a.lastWaitMs = nil
            try await save(a)
            logger.info("provider batch submitted", metadata: ["record": "\(id)", "batch": "\(batch.id)", "jobs": "\(a.claims.count)"])
        }

        /// The provider's batch made from `inputFile`, searched newest first (at most 20 pages of 100).
        func lookUp(inputFile: String) async throws -> ProviderBatch? {
            var after: String?
            for _ in 0..<20 {
                let page = try await client.listBatches(after: after, limit: 100)
                if let b = page.batches.first(where: { $0.inputFileID == inputFile }) { return b }
                guard page.hasMore, let last = page.batches.last?.id else { return nil }
                after = last
            }
            return nil
        }

        func poll(_ id: String) async throws {
            guard var a = active[id], let batchID = a.record.batchID else { return }
            let batch: ProviderBatch
            do { batch = try await client.retrieveBatch(batchID) } catch let e as LLMError where e.httpStatus == 404 {
                logger.error("the provider knows the batch no more; its jobs go live", metadata: ["record": "\(id)", "batch": "\(batchID)"])
                backToLive(id, reason: "the provider's batch \(batchID) is gone (HTTP 404)")
                await close(id, reason: "gone at the provider", cancel: false)
                return
            }
            guard batch.isFinal else {
                let wait = ProviderBatchRouting.nextPoll(after: a.lastWaitMs, settings)
                a.lastWaitMs = wait
                a.dueMs = now + wait
                active[id] = a
                logger.debug("provider batch polled", metadata: ["record": "\(id)", "status": "\(batch.status)", "next_in_ms": "\(wait)"])
                return
            }
            try await settle(id, batch)
        }

        // MARK: Settling

        /// Writes every job's outcome from the batch's output and error files: answers to `done/`,
        /// permanent errors to `failed/` (as a live call would), everything else back to the live path.
        func settle(_ id: String, _ batch: ProviderBatch) async throws {
            guard let a = active[id] else { return }
            var files: [[UInt8]] = []
            var unreadable: String?
            for file in [batch.outputFileID, batch.errorFileID].compactMap({ $0 }) {
                do { files.append(try await client.fileContent(file, maxBytes: settings.maxOutputBytes)) } catch let e as LLMError
                    where
                    e.kind == .responseTooLarge || e.httpStatus == 404
                {
                    unreadable = "the provider's file \(file) could not be read: \(e.message)"
                }
            }
            var lines: [String: ProviderBatchLine] = [:], twice: Set<String> = [], unknown = 0, bad = 0
            for bytes in files {
                for raw in ProviderBatchLine.lines(bytes) {
                    guard case .success(let l) = ProviderBatchLine.parse(raw) else { bad += 1; continue }
                    guard a.claims[l.customID] != nil else { unknown += 1; continue }
                    if lines[l.customID] != nil { twice.insert(l.customID) } else { lines[l.customID] = l }
                }
            }
            if unknown + bad > 0 {
                logger.warning(
                    "the provider's output holds lines for no job of the batch, or unreadable lines; ignored",
                    metadata: [
                        "record": "\(id)", "batch": "\(batch.id)", "unknown_custom_ids": "\(unknown)", "unreadable": "\(bad)",
                    ])
            }
            let source = { (l: ProviderBatchLine) -> JSONValue in
                var o: JSONObject = ["kind": .string("provider-batch"), "batchId": .string(batch.id), "customId": .string(l.customID)]
                if let f = batch.inputFileID ?? a.record.inputFileID { o["inputFileId"] = .string(f) }
                if let r = l.requestID { o["requestId"] = .string(r) }
                return .object(o)
            }
            var answers: [(Claim, Answer)] = [], failures: [(Claim, CallFailure)] = [], toLive: [(Claim, String)] = []
            for c in a.claims.values.sorted(by: { $0.id < $1.id }) {
                if twice.contains(c.id) { toLive.append((c, "the provider's output answered it more than once")); continue }
                guard let l = lines[c.id] else {
                    toLive.append(
                        (
                            c,
                            unreadable ?? "no answer in the provider's batch \(batch.id) (status \(batch.status))"
                                + (batch.errors.isEmpty ? "" : ": " + batch.errors.joined(separator: "; "))
                        ))
                    continue
                }
                guard let status = l.statusCode, let body = l.body else {
                    toLive.append((c, "the provider's batch could not run it: \(l.error ?? "no response")"))
                    continue
                }
                let model = c.job.model ?? batcher.configuration.defaultModel
                let parsed = Result { () throws(LLMError) in try client.completion(status: status, body: body) }.mapError { $0 as any Error }
                switch ChatResponder.outcome(parsed, model: model, startedAt: c.claimedAt).0 {
                case .answer(var answer):
                    answer.source = source(l)
                    answers.append((c, answer))
                case .failure(let f) where f.cause == FailureCause.permanent:
                    failures.append((c, f))
                case .failure(let f):
                    toLive.append((c, "the provider's batch answered it with \(f.kind): \(f.message)"))
                }
            }
            let spool = self.spool, answered = answers, failed = failures
            let attemptAt = Timestamp.now()
            let refused = try await Disk.run { () throws -> [Claim] in
                var refused = try spool.finish(batch: answered)
                for (c, f) in failed {
                    let record: JSONValue = .object([
                        "at": .string(attemptAt), "kind": .string("attempt"), "attempt": .integer(1), "cause": .string(f.cause.rawValue),
                        "error": f.failure.json(), "providerBatch": .string(batch.id),
                    ])
                    do { try spool.fail(c, f.failure, attempts: [record]) } catch SpoolError.system(let e) where e.errno == .fileExists {
                        refused.append(c)
                    }
                }
                for c in refused { _ = try spool.retireIfSettled(c) }
                return refused
            }
            for (c, why) in toLive { giveBack(c, reason: "provider batch \(batch.id): " + why, live: true) }
            logger.notice(
                "provider batch settled",
                metadata: [
                    "record": "\(id)", "batch": "\(batch.id)", "status": "\(batch.status)", "done": "\(answers.count - refused.count)",
                    "failed": "\(failures.count)", "live": "\(toLive.count)", "already_settled": "\(refused.count)",
                ])
            active[id]?.claims = [:]
            await close(id, reason: "settled", cancel: false)
        }

        // MARK: Giving back and closing

        /// Gives a held job back to `new/`; with `live`, marked so that it is called live, never
        /// batched again. False when it could not be written (it stays held; tried again later).
        @discardableResult
        func giveBack(_ c: Claim, reason: String, live: Bool) -> Bool {
            do {
                try spool.giveBack(c, reason: reason, countAttempt: false, event: live ? ProviderBatchRouting.returnedEvent : nil)
                if live { logger.notice("job goes live", metadata: ["job.id": "\(c.id)", "reason": "\(reason)"]) }
                return true
            } catch {
                logger.error("could not give a job back from a provider batch", metadata: ["job.id": "\(c.id)", "error": "\(error)"])
                return false
            }
        }

        func backToLive(_ id: String, reason: String) {
            guard var a = active[id] else { return }
            for c in a.claims.values.sorted(by: { $0.id < $1.id }) where giveBack(c, reason: reason, live: true) {
                a.claims[c.id] = nil
            }
            active[id] = a
        }

        /// Ends a batch that holds no job any more: cancels it at the provider (when it may still
        /// run: its later answers would be ignored anyway) and removes its record.
        func close(_ id: String, reason: String, cancel: Bool = true) async {
            guard let a = active[id], a.claims.isEmpty else { return }
            if cancel, let b = a.record.batchID {
                do {
                    let c = try await client.cancelBatch(b)
                    logger.notice("provider batch cancelled", metadata: ["record": "\(id)", "batch": "\(b)", "status": "\(c.status)"])
                } catch {
                    logger.warning(
                        "could not cancel a provider batch; its answers will be ignored",
                        metadata: [
                            "record": "\(id)", "batch": "\(b)", "error": "\(error)",
                        ])
                }
            }
            do {
                try spool.removeRecord(id, in: ProviderBatchRecord.area)
                active[id] = nil
                logger.info("provider batch closed", metadata: ["record": "\(id)", "reason": "\(reason)"])
            } catch {
                logger.error("could not remove a provider batch record", metadata: ["record": "\(id)", "error": "\(error)"])
            }
        }
    }
}
