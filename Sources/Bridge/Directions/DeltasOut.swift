import CKafka
import JSON
import Logging
import Spool

/// Deltas out: the partial answers of streamed jobs (`cur/.ID.json.partial`, docs/spool-format.md)
/// produced to `--deltas-out` as they are written, key jobId, one small JSON message per delta,
/// restart and end (``DeltasOutStateMachine``).
///
/// It never polls: inotify reports a partial file created in `cur/`, each write to a followed
/// file, and results arriving in `done/` and `failed/`; the bridge's 5 s rescan is the safety
/// net. A followed file is held open, so the last lines stay readable after the worker removes
/// it; it is read in chunks of ``Partial/maxReadBytes``, one chunk per job in turn.
final class DeltasOut {
    /// A line longer than this is passed over (its text is missing on the topic; the result has it).
    static let maxLineBytes = 16 << 20
    /// Reads per turn of the bridge's loop, at most (the loop turns again at once while there is more).
    static let readsPerTurn = 64

    let topicName: String
    private(set) var topic: KafkaTopic?
    private let producer: KafkaProducer
    private let spool: Spool
    private let watcher: SpoolWatcher
    private let logger: Logger
    private let scope: ResultScope
    private(set) var machine = DeltasOutStateMachine()
    private var files: [String: Followed] = [:]
    private(set) var retryAt: ContinuousClock.Instant?
    /// Messages confirmed by the broker.
    private(set) var published = 0

    /// A followed job: its open partial file and the headers of its messages.
    final class Followed {
        let file: PartialFile
        let headers: [(String, [UInt8])]
        /// Set while the line at the stream's position is too long for one read: how far it has
        /// been searched for its end, so that each byte is searched once.
        var searched: Int?

        init(file: PartialFile, headers: [(String, [UInt8])]) {
            self.file = file
            self.headers = headers
        }
    }

    init(
        topic: String, scope: ResultScope, producer: KafkaProducer, spool: Spool, watcher: SpoolWatcher, logger: Logger
    ) throws(KafkaError) {
        topicName = topic
        self.topic = try producer.topic(topic)
        self.producer = producer
        self.spool = spool
        self.watcher = watcher
        self.logger = logger
        self.scope = scope
        logger.info("producing deltas of streamed jobs", metadata: ["topic": "\(topic)", "of": "\(scope.rawValue)"])
    }

    // MARK: finding streams

    /// At the start and at every rescan: partial files not followed yet (a job still running is
    /// followed from its first line; one whose result is already durable is left to results-out),
    /// and followed jobs whose events were missed.
    func rescan() {
        let ids: [String]
        do { ids = try spool.partialIDs() } catch {
            logger.error("cannot list the partial files in cur/: \(error)")
            return
        }
        for id in ids where !machine.isFollowing(id) && !machine.isSettled(id) {
            if (try? spool.outcome(of: id)) != nil {
                machine.settle(id)
                continue
            }
            start(id, noticed: false)
        }
        for id in machine.followed {
            guard let f = files[id] else { continue }
            // Removed first, outcome second: the worker removes the file after the result is durable.
            let removed = (try? f.file.isRemoved()) ?? true
            if let state = try? spool.outcome(of: id) {
                machine.ended(id, state == .done ? .done : .failed)
            } else if removed {
                logger.info("partial file removed with no result (an orphan, or by hand): not followed any more", metadata: ["jobId": "\(id)"])
                stop(id)
            } else {
                machine.changed(id)
            }
        }
    }

    /// What inotify reported: partial files created or written in `cur/`, results in `done/` and `failed/`.
    func spoolChanged(_ arrived: [SpoolState: [String]], overflow: Bool) {
        for name in arrived[.cur] ?? [] {
            guard let id = Partial.id(ofFileName: name) else { continue }
            if machine.isFollowing(id) {
                machine.changed(id)
            } else if !machine.isSettled(id) {
                start(id, noticed: true)
            }
        }
        for (state, ending) in [(SpoolState.done, DeltasOutStateMachine.Ending.done), (.failed, .failed)] {
            for name in arrived[state] ?? [] where name.hasSuffix(".json") {
                machine.ended(String(name.dropLast(5)), ending)
            }
        }
        if overflow { rescan() }
    }

    /// Starts following `id`. `noticed`: its partial file was seen created while the bridge ran
    /// (so a job that has already ended is this bridge's to report).
    private func start(_ id: String, noticed: Bool) {
        guard JobID.isValid(id) else {
            machine.settle(id)
            return
        }
        let owner = Self.owner(try? spool.find(id), id: id)
        guard scope == .all || owner.fromKafka else {
            machine.settle(id)
            return
        }
        let file: PartialFile?
        do { file = try spool.openPartial(id) } catch {
            if case .system(let e) = error, e.isTemporary {
                // Out of descriptors: the next rescan tries again.
                logger.warning("cannot open a partial file, will try again: \(error)", metadata: ["jobId": "\(id)"])
            } else {
                logger.warning("cannot follow a partial file: \(error)", metadata: ["jobId": "\(id)"])
                machine.settle(id)
            }
            return
        }
        guard let file else {
            // Gone already: the job ran from start to end between two looks.
            if noticed { publishWhole(id) }
            machine.settle(id)
            return
        }
        _ = watcher.watchPartial(of: id)
        files[id] = Followed(file: file, headers: Self.headers(id, owner))
        machine.follow(id)
        if let state = try? spool.outcome(of: id) { machine.ended(id, state == .done ? .done : .failed) }
        logger.debug("following a streamed job", metadata: ["jobId": "\(id)"])
    }

    /// A job whose partial file was gone before it could be opened: its answer from the result.
    private func publishWhole(_ id: String) {
        guard let topic, let loc = try? spool.find(id), loc.state == .done || loc.state == .failed,
            let doc = try? JSONParser.parse(loc.bytes), MessageDecoding.isPublishable(doc, id: id, scope: scope),
            doc["job"]?["stream"]?.boolValue == true
        else { return }
        let owner = Self.owner(loc, id: id)
        let messages: [DeltasOutStateMachine.Message]
        if loc.state == .done, let text = doc["response"]?.stringValue {
            messages = machine.whole(text)
        } else {
            messages = [.end(.failed, textBytes: 0)]
        }
        let headers = Self.headers(id, owner)
        for m in messages {
            guard produce(id, m, topic: topic, headers: headers, after: nil) else {
                retryAt = .now + .milliseconds(100)
                logger.warning("the producer's queue is full: the deltas of a job that ended at once were not all sent", metadata: ["jobId": "\(id)"])
                return
            }
        }
    }

    private func stop(_ id: String) {
        files[id] = nil  // closes the file
        machine.settle(id)
    }

    // MARK: reading and producing

    /// Reads and produces for the jobs waiting their turn, while the in-flight bounds allow.
    /// Returns true if there is more to do at once.
    func serve(now: ContinuousClock.Instant) -> Bool {
        guard let topic else { return false }
        if let at = retryAt {
            if now < at { return false }
            retryAt = nil
        }
        var reads = 0
        while reads < Self.readsPerTurn, machine.hasRoom, let id = machine.next() {
            reads += 1
            if !step(id, topic: topic, now: now) { return false }
        }
        return machine.hasQueued && machine.hasRoom
    }

    /// What the next look at a followed file found.
    private enum Look {
        case records(Partial.Read)
        /// A line longer than ``maxLineBytes`` ends here: pass over it.
        case skip(to: Int)
        /// The line at the position is not complete yet.
        case wait
    }

    /// One read of job `id`'s file and its messages; false when the producer's queue is full.
    private func step(_ id: String, topic: KafkaTopic, now: ContinuousClock.Instant) -> Bool {
        guard let f = files[id], let position = machine.position(id) else { return true }
        let look: Look
        do { look = try self.look(f, from: position.offset) } catch {
            logger.error("cannot read a partial file; not following it any more: \(error)", metadata: ["jobId": "\(id)"])
            stop(id)
            return true
        }
        switch look {
        case .wait:
            break
        case .skip(let end):
            logger.warning(
                "a line of the partial file is longer than \(Self.maxLineBytes) bytes: passed over (its text is not on the topic; the result has it)",
                metadata: ["jobId": "\(id)", "offset": "\(position.offset)", "end": "\(end)"])
            machine.skip(id, to: end)
            machine.requeue(id)
            return true
        case .records(let read):
            if read.reset {
                logger.warning("the partial file is shorter than what was read: read again from its start", metadata: ["jobId": "\(id)"])
            }
            let (planned, after) = machine.plan(id, read)
            for p in planned {
                guard produce(id, p.message, topic: topic, headers: f.headers, after: p) else {
                    // The producer's queue is full: this job reads again from its last whole record.
                    machine.requeue(id)
                    retryAt = now + .milliseconds(100)
                    return false
                }
            }
            machine.advance(id, to: after)
            if read.more {
                machine.requeue(id)
                return true
            }
        }
        // Caught up: a job that has ended gets its last message.
        guard let end = machine.endMessage(id) else { return true }
        guard produce(id, end, topic: topic, headers: f.headers, after: nil) else {
            machine.requeue(id)
            retryAt = now + .milliseconds(100)
            return false
        }
        logger.debug("stream ended", metadata: ["jobId": "\(id)", "type": "\(end.type)"])
        stop(id)
        return true
    }

    /// Reads from `offset`: a chunk of records; or, when the line there is longer than a chunk,
    /// that line whole (up to ``maxLineBytes``) once its end is found, searching each byte once.
    private func look(_ f: Followed, from offset: Int) throws(SpoolError) -> Look {
        if f.searched == nil {
            let read = try f.file.read(from: offset)
            // Records, the end of what is there, or lines skipped before a long one: as they are.
            guard read.records.isEmpty, read.more, read.end == offset, !read.reset else { return .records(read) }
            f.searched = offset + Partial.maxReadBytes
        }
        let (found, searched) = try f.file.lineEnd(from: f.searched ?? offset)
        guard let end = found else {
            f.searched = searched
            return .wait
        }
        f.searched = nil
        if end - offset > Self.maxLineBytes { return .skip(to: end) }
        let line = try f.file.read(from: offset, limit: end - offset)
        return .records(line)
    }

    /// Produces one message; false when the producer's queue is full (nothing was produced).
    /// Another refusal is logged and counted, and the message dropped.
    private func produce(
        _ id: String, _ message: DeltasOutStateMachine.Message, topic: KafkaTopic, headers: [(String, [UInt8])],
        after planned: DeltasOutStateMachine.Planned?
    ) -> Bool {
        let value = message.value(jobId: id)
        let (tag, err) = producer.produce(topic, for: .deltasOut, key: Array(id.utf8), value: value, headers: headers)
        if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { return false }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            BridgeMetrics.deliveryError(topic: topicName, kind: "delta")
            logger.error("produce failed, message dropped: \(Kafka.errorString(err))", metadata: ["jobId": "\(id)", "type": "\(message.type)"])
            if let planned, let after = planned.after { machine.advance(id, to: after) }
            return true
        }
        if let planned {
            machine.produced(id, planned, seq: tag.seq, bytes: value.count)
        } else {
            machine.sent(id, message, seq: tag.seq, bytes: value.count)
        }
        return true
    }

    func delivered(_ tag: DeliveryTag, code: Int32) {
        switch machine.delivered(seq: tag.seq, ok: code == 0) {
        case .confirmed(_, let type):
            published += 1
            BridgeMetrics.deltas(topic: topicName, type: type)
        case .failed(let id, let type):
            BridgeMetrics.deliveryError(topic: topicName, kind: "delta")
            logger.error(
                "delta message not delivered (not sent again; the result has the answer): \(Kafka.errorString(rd_kafka_resp_err_t(code)))",
                metadata: ["jobId": "\(id)", "type": "\(type)"])
        case .unknown:
            break
        }
    }

    func dropTopic() { topic = nil }

    // MARK: owners

    /// The owner of a job (from its file, or from its result's), and whether it came from Kafka.
    static func owner(_ loc: JobLocation?, id: String) -> (userId: String?, tenantId: String?, fromKafka: Bool) {
        guard let loc, let doc = try? JSONParser.parse(loc.bytes) else { return (nil, nil, false) }
        let job = loc.state == .done || loc.state == .failed ? doc["job"] : doc
        return (
            doc["userId"]?.stringValue ?? job?["userId"]?.stringValue, doc["tenantId"]?.stringValue ?? job?["tenantId"]?.stringValue,
            job?["origin"]?["kafka"] != nil
        )
    }

    /// The headers of a job's messages, as results-out's: `contentType`, `jobId`, `userId`, `tenantId`.
    static func headers(_ id: String, _ owner: (userId: String?, tenantId: String?, fromKafka: Bool)) -> [(String, [UInt8])] {
        var headers: [(String, [UInt8])] = [("contentType", Array("application/json".utf8)), ("jobId", Array(id.utf8))]
        if let u = owner.userId { headers.append(("userId", Array(u.utf8))) }
        if let t = owner.tenantId { headers.append(("tenantId", Array(t.utf8))) }
        return headers
    }
}
