import CKafka
import Logging
import Synchronization

/// What librdkafka's callbacks report, turned into values: the context of each client queues
/// them, and ``Bridge`` takes them after each poll and hands each to the direction that owns it,
/// in one place (``Bridge/handle(_:)``).
enum KafkaEvent: Sendable {
    /// A delivery report: the message's opaque tag (``Deliveries``) and librdkafka's outcome.
    case delivered(tag: Int, code: Int32)
    /// The consumer `role` was given, or lost, `partitions` ("topic[0,2]").
    case assigned(role: String, partitions: String)
    case revoked(role: String, partitions: String)
    /// The client hit a fatal error (e.g. the idempotent producer's sequence broke, or another
    /// consumer took this one's `group.instance.id`): it is unusable.
    case fatal(role: String, KafkaError)
}

/// The context of one librdkafka client: its logger, and the events its callbacks produced since
/// the last ``takeEvents()``.
///
/// librdkafka calls the log callback on its own threads (it uses only `logger`, which is
/// Sendable); delivery reports, errors and rebalances are served inside `rd_kafka_poll` /
/// `rd_kafka_consumer_poll` on the bridge's thread. The event list is behind a lock all the same.
final class ClientContext: Sendable {
    let logger: Logger
    let role: String
    private let events = Mutex<[KafkaEvent]>([])

    init(role: String, logger: Logger) {
        self.role = role
        var l = logger
        l[metadataKey: "kafka.client"] = "\(role)"
        self.logger = l
    }

    func post(_ event: KafkaEvent) { events.withLock { $0.append(event) } }

    func takeEvents() -> [KafkaEvent] {
        events.withLock { e in
            defer { e.removeAll(keepingCapacity: true) }
            return e
        }
    }

    private static func context(_ opaque: UnsafeMutableRawPointer?) -> ClientContext? {
        opaque.map { Unmanaged<ClientContext>.fromOpaque($0).takeUnretainedValue() }
    }

    static let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, msg, opaque in
        guard let msg, let ctx = context(opaque) else { return }
        ctx.post(.delivered(tag: Int(bitPattern: msg.pointee._private), code: Int32(msg.pointee.err.rawValue)))
    }

    /// librdkafka's syslog levels onto swift-log's.
    static let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
        rk, level, facility, text in
        guard let rk, let ctx = context(rd_kafka_opaque(rk)), let text else { return }
        let lvl: Logger.Level =
            switch level {
            case ...2: .critical
            case 3: .error
            case 4: .warning
            case 5: .notice
            case 6: .info
            default: .debug
            }
        ctx.logger.log(
            level: lvl, "librdkafka: \(String(cString: text))",
            metadata: ["kafka.facility": "\(facility.map { String(cString: $0) } ?? "")"])
    }

    static let errorCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
        rk, code, reason, opaque in
        guard let ctx = context(opaque) else { return }
        let err = rd_kafka_resp_err_t(code)
        let why = reason.map { String(cString: $0) } ?? Kafka.errorString(err)
        BridgeMetrics.kafkaError(client: ctx.role, code: Kafka.name(err))
        if err == RD_KAFKA_RESP_ERR__FATAL, let rk {
            var buf = [CChar](repeating: 0, count: 512)
            let orig = rd_kafka_fatal_error(rk, &buf, buf.count)
            let text = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let hint =
                orig == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                ? "; another consumer joined the group with this bridge's group.instance.id (give each bridge its own --instance-id)" : ""
            ctx.logger.critical("fatal Kafka error: \(text) (\(Kafka.errorString(orig)))\(hint)")
            ctx.post(.fatal(role: ctx.role, KafkaError("the Kafka \(ctx.role) client", orig, detail: text)))
        } else if err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN {
            ctx.logger.warning("all Kafka brokers are down; waiting for one to come back: \(why)")
        } else {
            ctx.logger.warning("Kafka: \(why)")
        }
    }

    /// Assigns and revokes partitions (librdkafka wants that done inside the callback); before
    /// giving partitions up it commits the offsets already stored (only those of messages whose
    /// job is durable), so the next owner starts right after them. The change is posted as an
    /// event for the direction that owns the consumer.
    static let rebalanceCallback:
        @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = {
            rk, err, partitions, opaque in
            guard let rk, let ctx = context(opaque) else { return }
            let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
            let described = Kafka.describe(partitions)
            switch err {
            case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                ctx.logger.notice("partitions assigned", metadata: ["partitions": "\(described)"])
                BridgeMetrics.rebalance(client: ctx.role, kind: "assign")
                if cooperative {
                    if let e = rd_kafka_incremental_assign(rk, partitions) { rd_kafka_error_destroy(e) }
                } else {
                    _ = rd_kafka_assign(rk, partitions)
                }
                ctx.post(.assigned(role: ctx.role, partitions: described))
            case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                ctx.logger.notice("partitions revoked", metadata: ["partitions": "\(described)"])
                BridgeMetrics.rebalance(client: ctx.role, kind: "revoke")
                let c = rd_kafka_commit(rk, nil, 0)
                if c != RD_KAFKA_RESP_ERR_NO_ERROR, c != RD_KAFKA_RESP_ERR__NO_OFFSET {
                    ctx.logger.warning("commit before revoke: \(Kafka.errorString(c)); the next owner may see some messages again")
                }
                if cooperative {
                    if let e = rd_kafka_incremental_unassign(rk, partitions) { rd_kafka_error_destroy(e) }
                } else {
                    _ = rd_kafka_assign(rk, nil)
                }
                ctx.post(.revoked(role: ctx.role, partitions: described))
            default:
                ctx.logger.error("rebalance: \(Kafka.errorString(err))")
                _ = rd_kafka_assign(rk, nil)
                ctx.post(.revoked(role: ctx.role, partitions: described))
            }
        }
}
