import Basics
import JSON
import Spool

/// What came of reading the request body.
public enum Body: Sendable, Equatable {
    case bytes([UInt8])
    /// Over the limit: nothing was kept.
    case tooLarge(declared: Int?)
    /// The input ended before `CONTENT_LENGTH` bytes: the client went away mid-body.
    case truncated(received: Int, expected: Int)
}

/// Answers requests against one spool. Everything but the event stream is request in,
/// response out; the stream writes through a closure so it can be tested without a server.
public struct Handler: Sendable {
    public let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Answers one request (all routes except `…/events`, see ``streamEvents(_:id:base:write:)``).
    public func respond(_ request: Request, body: Body) -> Response {
        do {
            let (route, base) = try Route.resolve(method: request.method, path: request.path)
            let identity = try identify(request)
            let spool = try openSpool()
            switch route {
            case .submit: return try submit(request, body: body, identity: identity, spool: spool, base: base)
            case .show(let id): return try show(id, identity: identity, spool: spool, base: base)
            case .cancel(let id): return try cancel(id, identity: identity, spool: spool, base: base)
            case .list: return try list(request, identity: identity, spool: spool, base: base)
            case .events: return Problem(.internalError, "internal", "Internal error.", detail: "events are streamed").response
            default: return try batchAPI(route, request, body: body, store: BatchStore(spool: spool, owner: identity, maxFileBytes: configuration.maxFileBytes))
            }
        } catch {
            return error.response
        }
    }

    func identify(_ request: Request) throws(Problem) -> Identity {
        try Authenticator.identify(request, defaultTenant: configuration.defaultTenant) { () throws(Problem) -> TokenFile? in
            guard let path = configuration.tokensPath else { return nil }
            do {
                let bytes = try Spool.readFile(path, limit: 4 << 20)  // never standard input: that is the request body
                return try TokenFile.parse(String(decoding: bytes, as: UTF8.self))
            } catch let e as SpoolError {
                throw Handler.serverProblem("cannot read the token file: \(e)")
            } catch {
                throw Handler.serverProblem("\(path): \(error)")
            }
        }
    }

    func openSpool() throws(Problem) -> Spool {
        do { return try Spool(path: configuration.spoolPath) } catch {
            throw Problem(
                .unavailable, "spool-unavailable", "The job spool is unavailable.",
                detail: "the server cannot open its spool; try again later",
                headers: ["Retry-After": String(configuration.retryAfterSeconds)]
            ).logged("\(error)")
        }
    }

    /// The body as read, or the problem of one over `limit` (413) or cut short by the client (400).
    func bodyBytes(_ body: Body, limit: Int) throws(Problem) -> [UInt8] {
        switch body {
        case .tooLarge(let declared):
            throw Problem(
                .contentTooLarge, "body-too-large", "The request body is too large.",
                detail: "the body is \(declared.map { "\($0) bytes" } ?? "larger than the limit"); the limit is \(limit) bytes")
        case .truncated(let got, let expected):
            throw Problem(.badRequest, "incomplete-body", "The request body ended early.", detail: "received \(got) of \(expected) bytes; nothing was stored")
        case .bytes(let b):
            return b
        }
    }

    static func serverProblem(_ log: String) -> Problem {
        Problem(.internalError, "internal", "Internal error.", detail: "the server is misconfigured; see its error log").logged(log)
    }

    func unavailable(_ error: SpoolError) -> Problem {
        Problem(
            .unavailable, "spool-unwritable", "The job could not be stored.",
            detail: "the spool cannot take the job now (disk full or not writable); nothing was stored; try again later",
            headers: ["Retry-After": String(configuration.retryAfterSeconds)]
        ).logged("\(error)")
    }

    /// An event stream that cannot wait: each open stream is a CGI process holding one inotify
    /// instance, and the kernel allows `fs.inotify.max_user_instances` (128 by default) per user.
    func cannotWatch(_ error: SystemCallError) -> Problem {
        Problem(
            .unavailable, "events-unavailable", "The event stream cannot be opened now.",
            detail: "the server is following as many jobs as it can (\(error.call) failed: \(error.errno.description)); try again later",
            headers: ["Retry-After": String(configuration.retryAfterSeconds)]
        )
        .logged("\(error) — each open event stream holds one inotify instance; raise fs.inotify.max_user_instances (default 128 per user)")
    }

    // MARK: POST …/jobs

    func submit(_ request: Request, body: Body, identity: Identity, spool: Spool, base: String) throws(Problem) -> Response {
        let bytes = try bodyBytes(body, limit: configuration.maxBodyBytes)
        var job = try Submission.job(body: bytes, contentType: request.contentType, identity: identity, limits: spool.limits)

        var replayKey: (record: String, fingerprint: String)?
        if let key = request.idempotencyKey {
            guard key.utf8.count <= 255, key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                throw Problem(
                    .badRequest, "invalid-idempotency-key", "The Idempotency-Key is not valid.",
                    detail: "use 1 to 255 visible ASCII characters, such as a UUID", field: "Idempotency-Key")
            }
            let record = SHA256.hex(Array("llmspool-idempotency-v1\u{0}\(identity.userId)\u{0}\(identity.tenantId ?? "")\u{0}\(key)".utf8))
            let essence = MediaType(request.contentType ?? "")?.essence ?? ""
            let fingerprint = SHA256.hex(Array(essence.utf8) + [0] + bytes)
            replayKey = (record, fingerprint)
            if let earlier = try idempotentJob(record: record, fingerprint: fingerprint, spool: spool) {
                if let loc = try find(earlier, spool: spool) {
                    return accepted(id: earlier, state: loc.state, document: try? JSONParser.parse(loc.bytes), base: base, replayed: true)
                }
                job.jobId = earlier  // recorded, but the job never made it to new/: enqueue it now
            }
        }
        try checkQuota(identity, spool: spool)
        let id: String
        if let assigned = job.jobId {
            id = assigned
        } else {
            id = JobID.generate(tag: identity.quotaTag)
            job.jobId = id
            if let (record, fingerprint) = replayKey {
                let doc: JSONValue = .object([
                    "jobId": .string(id), "request": .string(fingerprint),
                    "userId": .string(identity.userId), "createdAt": .string(Timestamp.now()),
                ])
                let won: Bool
                do {
                    // A stale record (older than the window) is replaced; a fresh one written meanwhile wins.
                    let stale = try spool.readRecord(record, in: Spool.idempotencyArea) != nil
                    won = try spool.writeRecord(record, in: Spool.idempotencyArea, bytes: doc.serialized(), replacing: stale)
                } catch {
                    throw unavailable(error)
                }
                if !won { return try submit(request, body: body, identity: identity, spool: spool, base: base) }  // lost a race: replay the winner
            }
        }
        if job.submittedAt == nil { job.submittedAt = Timestamp.now() }  // set here so that the 202 can say it
        do {
            try spool.enqueue(job)
        } catch {
            switch error {
            case .idExists where replayKey != nil:
                // A concurrent retry with the same key enqueued it first: the same job.
                if let loc = try find(id, spool: spool) {
                    return accepted(id: id, state: loc.state, document: try? JSONParser.parse(loc.bytes), base: base, replayed: true)
                }
                throw Handler.serverProblem("\(error)")
            case .invalidJob(let e):
                throw Problem(.badRequest, "invalid-job", "The job is not valid.", detail: e.message, field: e.field)
            default:
                throw unavailable(error)
            }
        }
        countAccepted(identity, spool: spool)
        var view = job.json()
        if case .object(var o) = view { o["jobId"] = .string(id); view = .object(o) }
        return accepted(id: id, state: .new, document: view, base: base, replayed: false)
    }

    func accepted(id: String, state: SpoolState, document: JSONValue?, base: String, replayed: Bool) -> Response {
        var o: JSONObject = ["jobId": .string(id), "status": .string(JobView.status(state: state, document: document))]
        if let at = document?["submittedAt"] ?? document?["job"]?["submittedAt"] { o["submittedAt"] = at }
        o["links"] = .object(["self": .string(base + "/" + id), "events": .string(base + "/" + id + "/events")])
        var headers = [("Location", base + "/" + id)]
        if replayed { headers.append(("Idempotent-Replayed", "true")) }
        return .json(202, .object(o), headers: headers)
    }

    /// The job an `Idempotency-Key` record names, if the record is fresh; 422 if it was made for another body.
    func idempotentJob(record: String, fingerprint: String, spool: Spool) throws(Problem) -> String? {
        let found: (bytes: [UInt8], modifiedMilliseconds: Int64)?
        do { found = try spool.readRecord(record, in: Spool.idempotencyArea) } catch { throw unavailable(error) }
        guard let found, Timestamp.nowMilliseconds() - found.modifiedMilliseconds < configuration.idempotencyMilliseconds,
            let doc = try? JSONParser.parse(found.bytes), let id = doc["jobId"]?.stringValue, JobID.isValid(id)
        else { return nil }
        guard doc["request"]?.stringValue == fingerprint else {
            throw Problem(
                .unprocessable, "idempotency-key-reused", "The Idempotency-Key was used for another request.",
                detail: "this key already submitted job \(id) with a different body; use a new key", field: "Idempotency-Key")
        }
        return id
    }

    /// 429 when the caller's tenant already has `maxWaitingPerTenant` jobs in `new/`. The ids this
    /// endpoint mints carry the tenant's tag (``Identity/quotaTag``), so counting is one listing
    /// of `new/` that opens no file; jobs enqueued by other means (CLI, bridge, hand-dropped)
    /// have other ids and are not counted. A count younger than `waitingCountMaxAge`,
    /// plus the jobs accepted since, is reused while it is under the limit (``WaitingCount``);
    /// at the limit, or when it is old, missing or unreadable, `new/` is counted again
    /// (docs/cgi.md).
    func checkQuota(_ identity: Identity, spool: Spool) throws(Problem) {
        let limit = configuration.maxWaitingPerTenant
        let tag = identity.quotaTag
        let record = WaitingCount.recordName(tag)
        let maxAge = configuration.waitingCountMaxAge.wholeMilliseconds
        let now = Timestamp.nowMilliseconds()
        if maxAge > 0, let found = try? spool.readRecord(record, in: Spool.waitingCountArea),
            let cached = WaitingCount.parse(found.bytes), (0..<maxAge).contains(now - cached.countedAtMilliseconds),
            cached.estimate < limit
        {
            return
        }
        let mine: Int
        do { mine = try spool.countWaiting(tag: tag, upTo: limit) } catch { throw unavailable(error) }
        guard mine < limit else {
            throw Problem(
                .tooManyRequests, "too-many-waiting-jobs", "Too many jobs are waiting.",
                detail: "\(identity.tenantId.map { "tenant \($0)" } ?? "you") already have \(limit) jobs waiting; retry later",
                headers: ["Retry-After": String(configuration.retryAfterSeconds)])
        }
        if maxAge > 0 {
            // A cache: written without fsync, and a failure only means counting again next time.
            let count = WaitingCount(counted: mine, countedAtMilliseconds: now)
            _ = try? spool.writeRecord(record, in: Spool.waitingCountArea, bytes: count.record, replacing: true, durability: .volatile)
        }
    }

    /// Adds an accepted job to its tenant's cached count, if there is one.
    func countAccepted(_ identity: Identity, spool: Spool) {
        guard configuration.waitingCountMaxAge > .zero else { return }
        _ = try? spool.appendRecord(WaitingCount.recordName(identity.quotaTag), in: Spool.waitingCountArea, bytes: WaitingCount.acceptedMark)
    }

    // MARK: GET …/jobs/ID

    func find(_ id: String, spool: Spool) throws(Problem) -> JobLocation? {
        do { return try spool.find(id) } catch { throw unavailable(error) }
    }

    /// The job, its state and its document, if `identity` owns it; else 404 (an id of someone
    /// else's job and an unknown id look the same).
    func owned(_ id: String, identity: Identity, spool: Spool) throws(Problem) -> (JobLocation, JSONValue) {
        guard let loc = try find(id, spool: spool), let doc = try? JSONParser.parse(loc.bytes), identity.owns(doc) else {
            throw Problem.notFound(id)
        }
        return (loc, doc)
    }

    func show(_ id: String, identity: Identity, spool: Spool, base: String) throws(Problem) -> Response {
        let (loc, doc) = try owned(id, identity: identity, spool: spool)
        return .json(200, JobView.json(id: id, state: loc.state, document: doc, base: base))
    }

    // MARK: DELETE …/jobs/ID

    func cancel(_ id: String, identity: Identity, spool: Spool, base: String) throws(Problem) -> Response {
        for _ in 0..<3 {
            let (loc, doc) = try owned(id, identity: identity, spool: spool)
            switch loc.state {
            case .new, .tmp:
                // Not through cur/: the web server's user may not write there (two-user layout).
                let outcome: CancelOutcome
                do {
                    outcome = try spool.cancelWaiting(loc.name, Failure(kind: "cancelled", message: "cancelled by \(identity.userId) with DELETE"))
                } catch {
                    throw unavailable(error)
                }
                guard outcome == .cancelled else { continue }  // taken meanwhile: look again
                let (after, afterDoc) = try owned(id, identity: identity, spool: spool)
                return .json(200, JobView.json(id: id, state: after.state, document: afterDoc, base: base))
            case .cur:
                throw Problem(
                    .conflict, "job-running", "The job is already running.",
                    detail: "job \(id) was claimed by a worker; only waiting jobs can be cancelled")
            case .forwarded:
                throw Problem(
                    .conflict, "job-forwarded", "The job was handed to another host.",
                    detail: "job \(id) was forwarded over Kafka; only waiting jobs can be cancelled")
            case .done, .failed:
                if JobView.status(state: loc.state, document: doc) == "cancelled" {
                    return .json(200, JobView.json(id: id, state: loc.state, document: doc, base: base))
                }
                throw Problem(
                    .conflict, "job-finished", "The job has already finished.",
                    detail: "job \(id) is \(JobView.status(state: loc.state, document: doc))")
            }
        }
        throw Problem(.conflict, "job-running", "The job is already running.", detail: "job \(id) was claimed while cancelling it")
    }

    // MARK: GET …/jobs

    func list(_ request: Request, identity: Identity, spool: Spool, base: String) throws(Problem) -> Response {
        var limit = 20
        if let raw = request.queryValue("limit") {
            guard let n = Int(raw), (1...100).contains(n) else {
                throw Problem(.badRequest, "invalid-query", "The query is not valid.", detail: "limit must be 1 to 100", field: "limit")
            }
            limit = n
        }
        let entries: [JobEntry]
        do { entries = try spool.list() } catch { throw unavailable(error) }
        var jobs: [JSONValue] = []
        let newest = entries.sorted { ($0.modifiedMilliseconds, $0.id) > ($1.modifiedMilliseconds, $1.id) }
        for entry in newest.prefix(configuration.listScanLimit) where jobs.count < limit {
            guard let loc = try? spool.find(entry.id), let doc = try? JSONParser.parse(loc.bytes), identity.owns(doc) else { continue }
            var o: JSONObject = ["jobId": .string(entry.id), "status": .string(JobView.status(state: loc.state, document: doc))]
            if let at = doc["submittedAt"] ?? doc["job"]?["submittedAt"] { o["submittedAt"] = at }
            o["updatedAt"] = .string(Timestamp.format(milliseconds: loc.modifiedMilliseconds))
            o["links"] = .object(["self": .string(base + "/" + entry.id)])
            jobs.append(.object(o))
        }
        return .json(200, .object(["jobs": .array(jobs)]))
    }

    // MARK: GET …/jobs/ID/events

    /// Streams a job's state changes as Server-Sent Events until it finishes, the client goes
    /// away (`write` returns false) or `maxStream` pass. Sleeps on inotify between
    /// changes; sends a heartbeat comment when nothing was written for `heartbeat`.
    /// Returns a response instead when the stream cannot start (401, 404, 204 after the end).
    public func streamEvents(_ request: Request, write: ([UInt8]) -> Bool) -> Response? {
        let id: String, base: String, identity: Identity, spool: Spool
        do {
            let (route, b) = try Route.resolve(method: request.method, path: request.path)
            guard case .events(let i) = route else { return respond(request, body: .bytes([])) }
            id = i
            base = b
            identity = try identify(request)
            spool = try openSpool()
        } catch {
            return error.response
        }
        let resume = EventStream.resumePoint(request.lastEventID)
        var sent = resume.stage
        var partialOffset = resume.offset
        let watcher: SpoolWatcher
        let allStates: [SpoolState] = [.new, .cur, .done, .failed]
        do {
            // Watch before the first look, so no change between the two is missed. `.stream`: the
            // creation of the job's partial file wakes us too.
            watcher = try SpoolWatcher(spool, states: allStates, events: .stream)
            let (loc, _) = try owned(id, identity: identity, spool: spool)
            if sent >= EventStream.finalStage, EventStream.stage(of: loc.state) == EventStream.finalStage {
                return Response(status: 204)
            }
        } catch let p as Problem {
            return p.response
        } catch SpoolError.system(let e) where e.call.hasPrefix("inotify") {
            return cannotWatch(e).response
        } catch {
            return unavailable(error as? SpoolError ?? .notFound(id: id)).response
        }
        let pad =
            configuration.eventPaddingBytes > 0
            ? Array((": " + String(repeating: " ", count: configuration.eventPaddingBytes) + "\n\n").utf8) : []
        guard write(EventStream.headers + EventStream.preamble + pad) else { return nil }
        let name = id + ".json"
        let partialName = Partial.fileName(id)
        let start = Timestamp.nowMilliseconds()
        var lastWrite = start
        var missing = 0
        var look = true
        var lookPartial = false
        var streaming = false
        var watchingPartial = false
        func send(_ bytes: [UInt8]) -> Bool { write(bytes + pad) }
        // The text sent since the last restart, while this stream has sent all of it (it began at
        // offset 0, or has sent a restart since): what the final event's response is checked against.
        var text: String? = partialOffset == 0 ? "" : nil
        // What wakes the stream. The spool's directories bring every job's claims, lease markers,
        // partial files and results: with N streams started together, every stream woke for
        // every other job's changes, N² wake-ups that held the first tokens back by tens of
        // milliseconds at 200 streams (bench/stream/run.sh). So once a look has found the job,
        // the stream waits on the job's own files alone when they tell it all it needs:
        // - the job's file where the job is (renamed, removed or replaced: each brings a look,
        //   which watches the file where the job is then), while it waits in new/, or is claimed
        //   and does not stream;
        // - a streamed job's partial file (every write; the worker makes it as it claims the job,
        //   Spool.preparePartial), and its job file beside it. Until that file is there the
        //   directories stay watched, to see it come. A give-back keeps the file (the next
        //   attempt's restart record wakes the stream), and the file goes only once the result
        //   is durable (or by hand, or with a dead claim), which brings a look (`partialGone`).
        // Watches are removed from and added to the one inotify instance, never by opening
        // another: closing an instance stalls for a kernel grace period (8–24 ms measured here;
        // see SpoolWatcher.unwatchDirectories), which every stream paid before its first delta.
        var narrowed = false
        var partialGone = false
        var jobWatch: Int32?
        /// Watches the directories or not; true when that changed.
        func narrow(_ on: Bool) -> Bool {
            guard on != narrowed else { return false }
            if on { watcher.unwatchDirectories() } else { try? watcher.watchDirectories() }  // failing that, heartbeat timeouts bring looks
            narrowed = on
            return true
        }
        /// After a look that found the job at `loc`: watches its file there, and the directories
        /// only when the job's own files do not tell all. True when that changed what is watched:
        /// a change between the look and the new watches may have gone unseen, so the caller
        /// looks again.
        func arrange(_ loc: JobLocation?) -> Bool {
            var own = false
            if let loc, loc.state == .new || loc.state == .cur,
                let wd = watcher.watchFile(spool.path(of: loc.name, in: loc.state), reportedAs: name)
            {
                if let old = jobWatch, old != wd { watcher.unwatchFile(old) }
                jobWatch = wd
                own = loc.state == .new || !streaming
            }
            return narrow(own || watchingPartial)
        }
        // The job's partial answer from partialOffset on, as delta/restart events (a job that asked to stream).
        func sendPartial() -> Bool {
            partialGone = false
            if !watchingPartial {
                watchingPartial = watcher.watchPartial(of: id)
                if watchingPartial { _ = narrow(true) }  // the read below comes after the watch: nothing is missed
            }
            while true {
                guard let read = try? spool.readPartial(id, from: partialOffset) else {
                    partialGone = true
                    break
                }
                guard read.reset || !read.records.isEmpty else { break }
                guard send(EventStream.events(read)) else { return false }
                if read.reset { text = "" }
                for (record, _) in read.records {
                    switch record {
                    case .delta(let t): text? += t
                    case .restart: text = ""
                    }
                }
                partialOffset = read.end
                lastWrite = Timestamp.nowMilliseconds()
                if !read.more { break }  // one read per wake-up: the next write wakes us again
            }
            return true
        }
        while true {
            if look {
                let found = try? spool.find(id)
                if let loc = found, let doc = try? JSONParser.parse(loc.bytes) {
                    missing = 0
                    // A finishing worker writes done/ID.json before it retires cur/ID.json, and find()
                    // looks in cur/ first: the retire (named, below) brings the next look.
                    streaming = streaming || doc["stream"]?.boolValue == true || doc["job"]?["stream"]?.boolValue == true
                    let stage = EventStream.stage(of: loc.state)
                    // The text written so far goes before the final event (the result holds it all anyway).
                    if streaming, stage >= 2 || watchingPartial { guard sendPartial() else { return nil } }
                    // The partial file is removed once the result is durable: a stream that was
                    // behind then sends the rest of the answer from the result (the text since the
                    // last restart is always exactly a prefix of it, unless a restart went unseen).
                    if streaming, stage == EventStream.finalStage, loc.state == .done, let sentText = text,
                        let response = doc["response"]?.stringValue, response != sentText
                    {
                        guard send(EventStream.tail(of: response, after: sentText)) else { return nil }
                    }
                    if stage > sent {
                        let view = JobView.json(id: id, state: loc.state, document: doc, base: base)
                        let status = JobView.status(state: loc.state, document: doc)
                        guard send(EventStream.event(stage: stage, name: status, data: view)) else { return nil }
                        sent = stage
                        lastWrite = Timestamp.nowMilliseconds()
                    }
                    if stage == EventStream.finalStage { return nil }
                } else {
                    missing += 1
                    if missing > 3 { return nil }  // purged meanwhile
                }
                if partialGone { watchingPartial = false }
                if arrange(missing == 0 ? found : nil) { continue }  // look again under the new watches
            } else if lookPartial, streaming {
                guard sendPartial() else { return nil }
            }
            if partialGone, watchingPartial {
                // The file is gone: look where the job is now (which watches the directories again if need be).
                watchingPartial = false
                partialGone = false
                look = true
                continue
            }
            let now = Timestamp.nowMilliseconds()
            if now - start >= configuration.maxStream.wholeMilliseconds { return nil }
            if now - lastWrite >= configuration.heartbeat.wholeMilliseconds {
                guard send(EventStream.heartbeat) else { return nil }
                lastWrite = now
            }
            let wait = min(configuration.heartbeat.wholeMilliseconds - (now - lastWrite), configuration.maxStream.wholeMilliseconds - (now - start))
            switch watcher.wait(timeoutMilliseconds: Int32(clamping: max(1, missing > 0 ? min(wait, 200) : wait))) {
            case .changed(let arrived, let overflow):
                // A write to the partial file alone (the usual wake-up of a streamed job) reads just that file.
                // The watcher names files that left as well as those that came (`.stream`), so the
                // retire of cur/ID.json after done/ID.json is seen by name, and other jobs' claims,
                // lease markers, partial files and results — every follower wakes for them — cost
                // no look: with N streams at once, looking on each made N² spool reads (measured
                // with bench/stream/run.sh).
                let names = arrived.values.joined()
                lookPartial = names.contains(partialName)
                look = overflow || missing > 0 || names.contains(name)
            case .timeout, .woken:
                look = true
            }
        }
    }
}

extension Problem {
    /// Writes `message` to standard error (the web server's error log) and returns self.
    func logged(_ message: String) -> Problem {
        StandardIO.log("llmspool-cgi: \(status) \(slug): \(message)")
        return self
    }
}
