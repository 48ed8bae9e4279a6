import CKafka
import Logging

/// The DLQ of jobs-in: invalid messages produced to `error.<topic>.<group>` (or `--dlq`) with
/// their original key, value and headers plus Spring's `x-original-*` and `x-exception-*`
/// headers. A letter is produced at once and, if refused or failed, again a second later, until
/// Kafka confirms it; no loop of its own waits for that (``DeadLetterStateMachine``).
final class DeadLetters {
    let topicName: String
    private(set) var topic: KafkaTopic?
    private let producer: KafkaProducer
    private let logger: Logger
    private var machine = DeadLetterStateMachine()
    /// The letters' messages, by the machine's number, until confirmed.
    private var letters: [DeadLetterStateMachine.Letter: (key: [UInt8], value: [UInt8], headers: [(String, [UInt8])], position: Logger.Metadata)] = [:]

    init(topic: String, producer: KafkaProducer, logger: Logger) throws(KafkaError) {
        topicName = topic
        self.topic = try producer.topic(topic)
        self.producer = producer
        self.logger = logger
    }

    var inFlight: Int { machine.count }
    var nextDue: ContinuousClock.Instant? { machine.nextDue }

    /// Hands in an invalid message; it is produced at once.
    func add(_ message: Consumed, reason: String, now: ContinuousClock.Instant) {
        let headers =
            message.headers + [
                ("x-original-topic", Array(message.topic.utf8)),
                ("x-original-partition", withUnsafeBytes(of: message.partition.bigEndian) { Array($0) }),
                ("x-original-offset", withUnsafeBytes(of: message.offset.bigEndian) { Array($0) }),
                ("x-exception-fqcn", Array("llmspool.InvalidJob".utf8)),
                ("x-exception-message", Array(reason.utf8)),
            ]
        let letter = machine.add(now: now)
        letters[letter] = (message.key ?? [], message.value, headers, message.position)
        produceDue(now: now)
    }

    /// Produces the letters that are due.
    func produceDue(now: ContinuousClock.Instant) {
        guard let topic else { return }
        for letter in machine.due(now: now) {
            guard let l = letters[letter] else { continue }
            let (tag, err) = producer.produce(topic, for: .deadLetters, key: l.key, value: l.value, headers: l.headers)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                machine.produced(letter, seq: tag.seq)
            } else {
                _ = machine.refused(letter, now: now)
                BridgeMetrics.deliveryError(topic: topicName, kind: "dead-letter")
                logger.error("DLQ produce failed, retrying in 1 s: \(Kafka.errorString(err))", metadata: ["dlq": "\(topicName)"])
            }
        }
    }

    /// A delivery report; true if it confirmed a letter.
    func delivered(_ tag: DeliveryTag, code: Int32, now: ContinuousClock.Instant) -> Bool {
        switch machine.delivered(seq: tag.seq, ok: code == 0, now: now) {
        case .confirmed(let letter):
            let position = letters.removeValue(forKey: letter)?.position ?? [:]
            BridgeMetrics.delivered(topic: topicName, kind: "dead-letter")
            logger.notice("sent to the DLQ", metadata: position.merging(["dlq": "\(topicName)"]) { a, _ in a })
            return true
        case .retry:
            BridgeMetrics.deliveryError(topic: topicName, kind: "dead-letter")
            logger.error("DLQ delivery failed, retrying in 1 s: \(Kafka.errorString(rd_kafka_resp_err_t(code)))", metadata: ["dlq": "\(topicName)"])
            return false
        case .unknown:
            return false
        }
    }

    func dropTopic() { topic = nil }
}
