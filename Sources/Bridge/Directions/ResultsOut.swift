import CKafka
import JSON
import Logging
import Spool

#if canImport(Glibc)
import Glibc
#endif

/// Results out: each `done/ID.json` and `failed/ID.json` produced to `--results-out`, and
/// recorded in `SPOOL/.published/` once confirmed (``ResultsOutStateMachine``).
final class ResultsOut {
    /// The side-record area of the markers (docs/spool-format.md).
    static let publishedArea = ".published"

    let topicName: String
    private(set) var topic: KafkaTopic?
    private let producer: KafkaProducer
    private let spool: Spool
    private let logger: Logger
    private let scope: ResultScope
    private(set) var machine: ResultsOutStateMachine
    private(set) var retryAt: ContinuousClock.Instant?
    private(set) var published = 0
    private var publishedDir: String { spool.path + "/" + Self.publishedArea }

    init(topic: String, scope: ResultScope, producer: KafkaProducer, spool: Spool, logger: Logger) throws(KafkaError) {
        let dir = spool.path + "/" + Self.publishedArea
        if mkdir(dir, 0o2770) != 0, errno != EEXIST {
            throw KafkaError("mkdir \(dir): \(String(cString: strerror(errno)))")
        }
        let names: [String]
        do { names = try spool.recordNames(in: Self.publishedArea) } catch { throw KafkaError("\(dir): \(error)") }
        machine = ResultsOutStateMachine(published: names)
        topicName = topic
        self.topic = try producer.topic(topic)
        self.producer = producer
        self.spool = spool
        self.logger = logger
        self.scope = scope
        logger.info("producing results", metadata: ["topic": "\(topic)", "of": "\(scope.rawValue)", "published": "\(names.count)"])
    }

    /// Produces every result and dead letter not yet published, in flight or ignored. Returns
    /// false if it stopped early (the producer queue is full, an error) and should run again soon.
    func publish(now: ContinuousClock.Instant) -> Bool {
        guard let topic else { return true }
        if let at = retryAt, now < at { return false }
        retryAt = nil
        for state in [SpoolState.done, .failed] {
            let names: [String]
            do { names = try spool.names(in: state) } catch {
                logger.error("cannot list \(state.rawValue)/: \(error)")
                retryAt = now + .seconds(1)
                return false
            }
            for name in names where name.hasSuffix(".json") {
                let id = String(name.dropLast(5))
                guard machine.wants(id) else { continue }
                let bytes: [UInt8]
                do { bytes = try Spool.readInput(spool.path(of: name, in: state), limit: 8 << 20) } catch {
                    logger.warning("cannot read result: \(error)", metadata: ["jobId": "\(id)"])
                    continue
                }
                let doc = try? JSONParser.parse(bytes)
                guard MessageDecoding.isPublishable(doc, id: id, scope: scope), let doc else {
                    machine.ignore(id)
                    continue
                }
                var headers: [(String, [UInt8])] = [("contentType", Array("application/json".utf8)), ("jobId", Array(id.utf8))]
                if let u = doc["userId"]?.stringValue { headers.append(("userId", Array(u.utf8))) }
                if let t = doc["tenantId"]?.stringValue { headers.append(("tenantId", Array(t.utf8))) }
                let (tag, err) = producer.produce(topic, for: .resultsOut, key: Array(id.utf8), value: bytes, headers: headers)
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { return false }
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    BridgeMetrics.deliveryError(topic: topicName, kind: "result")
                    logger.error("produce failed: \(Kafka.errorString(err))", metadata: ["jobId": "\(id)"])
                    retryAt = now + .seconds(1)
                    return false
                }
                machine.produced(id, done: state == .done, seq: tag.seq)
            }
        }
        return true
    }

    func delivered(_ tag: DeliveryTag, code: Int32, now: ContinuousClock.Instant) {
        switch machine.delivered(seq: tag.seq, ok: code == 0, now: now) {
        case .published(let id, let done):
            markPublished(id)
            published += 1
            BridgeMetrics.delivered(topic: topicName, kind: "result")
            logger.info("published", metadata: ["jobId": "\(id)", "state": "\(done ? "done" : "failed")"])
        case .failed(let id, let at):
            BridgeMetrics.deliveryError(topic: topicName, kind: "result")
            logger.error("result delivery failed, will retry: \(Kafka.errorString(rd_kafka_resp_err_t(code)))", metadata: ["jobId": "\(id)"])
            retryAt = retryAt.map { max($0, at) } ?? at
        case .unknown:
            break
        }
    }

    private func markPublished(_ id: String) {
        // An empty file: creating it is atomic, so no tmp/ step is needed. Not fsynced: losing a
        // marker in a power loss only re-sends the result (at-least-once).
        let fd = open(publishedDir + "/" + id, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        if fd < 0 {
            logger.warning("cannot record \(id) as published: \(String(cString: strerror(errno))); it will be sent again after a restart")
        } else {
            close(fd)
        }
    }

    func dropTopic() { topic = nil }
}
