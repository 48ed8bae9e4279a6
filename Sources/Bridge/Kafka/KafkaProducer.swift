import CKafka
import Logging

/// The one idempotent producer that jobs-out, results-out and the DLQ share (one connection set
/// and one delivery-report queue for all three): each direction owns its topic handle, and each
/// message's tag (``DeliveryTag``) names the direction its delivery report goes back to.
final class KafkaProducer {
    let client: KafkaClient
    private(set) var queue: KafkaQueue?
    private var sequence = DeliverySequence()

    init(properties: [(String, String)], logger: Logger, eventFD: Int32) throws(KafkaError) {
        let ctx = ClientContext(role: "producer", logger: logger)
        client = try KafkaClient(RD_KAFKA_PRODUCER, properties: properties, context: ctx) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf, ClientContext.deliveryCallback)
        }
        queue = KafkaQueue(client, consumer: false, eventFD: eventFD)
    }

    /// A topic handle, made right after the producer so that its first metadata request names it:
    /// a topic first named later waits for librdkafka's once-a-second topic scan before its first
    /// message can go out.
    func topic(_ name: String) throws(KafkaError) -> KafkaTopic { try KafkaTopic(client, name: name) }

    /// Produces one message; on success its delivery report comes back as a ``KafkaEvent`` with the tag.
    func produce(
        _ topic: KafkaTopic, for owner: DeliveryTag.Owner, key: [UInt8], value: [UInt8],
        headers: [(String, [UInt8])]
    ) -> (tag: DeliveryTag, err: rd_kafka_resp_err_t) {
        let tag = sequence.take(for: owner)
        return (tag, Kafka.produce(client.rk, topic: topic.rkt, key: key, value: value, headers: headers, opaque: tag.raw))
    }

    /// Serves the delivery reports and errors waiting (they become events of the client's context).
    func poll() { _ = rd_kafka_poll(client.rk, 0) }

    /// Stops the eventfd wake-ups (at a stop).
    func quiet() { queue = nil }
}

/// A consumed message, copied out of librdkafka's buffers.
struct Consumed {
    var topic: String
    var partition: Int32
    var offset: Int64
    var key: [UInt8]?
    var value: [UInt8]
    var headers: [(String, [UInt8])]

    init(_ m: UnsafeMutablePointer<rd_kafka_message_t>) {
        let msg = m.pointee
        topic = String(cString: rd_kafka_topic_name(msg.rkt))
        partition = msg.partition
        offset = msg.offset
        key = msg.key.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.key_len)) }
        value = msg.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.len)) } ?? []
        headers = Kafka.headers(of: m)
    }

    var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }

    /// The last value of header `name`, as text.
    func header(_ name: String) -> String? {
        headers.last { $0.0 == name }.map { String(decoding: $0.1, as: UTF8.self) }
    }

    /// Topic, partition and offset, for log metadata.
    var position: Logger.Metadata { ["topic": "\(topic)", "partition": "\(partition)", "offset": "\(offset)"] }
}

/// A consumer: its client, subscribed to one topic, with its queue waking the bridge's eventfd.
final class KafkaConsumer {
    let client: KafkaClient
    let topic: String
    private(set) var queue: KafkaQueue?
    let logger: Logger

    init(properties: [(String, String)], role: String, topic: String, logger: Logger, eventFD: Int32) throws(KafkaError) {
        let ctx = ClientContext(role: role, logger: logger)
        client = try KafkaClient(RD_KAFKA_CONSUMER, properties: properties, context: ctx) { conf in
            rd_kafka_conf_set_rebalance_cb(conf, ClientContext.rebalanceCallback)
        }
        self.topic = topic
        self.logger = logger
        rd_kafka_poll_set_consumer(client.rk)
        queue = KafkaQueue(client, consumer: true, eventFD: eventFD)
        try subscribe()
    }

    func subscribe() throws(KafkaError) { try Kafka.subscribe(client.rk, topic: topic) }

    func unsubscribe() {
        let err = rd_kafka_unsubscribe(client.rk)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { logger.warning("unsubscribe from \(topic): \(Kafka.errorString(err))") }
    }

    /// Takes up to `limit` messages (waiting up to 5 ms for more once one has come, so that a
    /// batch shares one group commit); `more` is true if the queue may not be empty yet (its
    /// eventfd wake fires only on empty → non-empty, so it must be drained). Message errors other
    /// than a partition's end are logged.
    func take(_ limit: Int) -> (batch: [Consumed], more: Bool) {
        var batch: [Consumed] = []
        let started = Bridge.nowMs()
        for _ in 0..<limit {
            var next = rd_kafka_consumer_poll(client.rk, 0)
            if next == nil, !batch.isEmpty, Bridge.nowMs() - started < 5 { next = rd_kafka_consumer_poll(client.rk, 2) }
            guard let m = next else { return (batch, false) }
            defer { rd_kafka_message_destroy(m) }
            if m.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.pointee.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    logger.warning("consumer: \(String(cString: rd_kafka_message_errstr(m)))")
                }
                continue
            }
            batch.append(Consumed(m))
        }
        return (batch, true)
    }

    /// Serves the consumer (rebalances, errors) and drops the messages it returns unstored:
    /// the partition's next owner reads them. Returns how many were dropped.
    func serveDropping() -> Int {
        var dropped = 0
        while let m = rd_kafka_consumer_poll(client.rk, 0) {
            if m.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR { dropped += 1 }
            rd_kafka_message_destroy(m)
        }
        return dropped
    }

    /// Stores the next offsets of partitions (only after the messages' work is durable), then
    /// commits them asynchronously: a member joining the group starts right after them, even when
    /// the commit a revocation attempts is refused because the rebalance has begun.
    func store(_ offsets: [JobsInStateMachine.Offset], commit: Bool) {
        guard !offsets.isEmpty else { return }
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for o in offsets { rd_kafka_topic_partition_list_add(list, o.topic, o.partition).pointee.offset = o.next }
        let err = rd_kafka_offsets_store(client.rk, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // E.g. a partition was revoked by a rebalance: its new owner re-delivers the messages.
            logger.warning("offset store: \(Kafka.errorString(err))", metadata: ["partitions": "\(offsets.count)"])
        }
        if commit { commitAsync() }
    }

    func commitAsync() { _ = rd_kafka_commit(client.rk, nil, 1) }

    /// Stops the eventfd wake-ups (at a stop).
    func quiet() { queue = nil }

    /// The next offset of each partition of a batch.
    static func nextOffsets(_ batch: [Consumed]) -> [JobsInStateMachine.Offset] {
        var next: [String: JobsInStateMachine.Offset] = [:]
        for m in batch {
            let key = "\(m.topic)\u{0}\(m.partition)"
            if (next[key]?.next ?? -1) < m.offset + 1 { next[key] = .init(topic: m.topic, partition: m.partition, next: m.offset + 1) }
        }
        return next.values.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
    }
}
