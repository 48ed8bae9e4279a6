import CKafka
import CKafkaShim
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A librdkafka call failed; the message names the call or the property.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The librdkafka C API, behind one internal namespace.
enum Kafka {
    static func errorString(_ err: rd_kafka_resp_err_t) -> String { String(cString: rd_kafka_err2str(err)) }

    /// A configuration with `properties` applied in order (later ones win), and the callbacks
    /// that route librdkafka's logs, errors and (for consumers) rebalances through `context`.
    static func configuration(_ properties: [(String, String)], context: ClientContext) throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var buf = [CChar](repeating: 0, count: 512)
        for (key, value) in properties {
            let res = rd_kafka_conf_set(conf, key, value, &buf, buf.count)
            if res != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let why = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                throw KafkaError("librdkafka property \(key)=\(value): \(why)")
            }
        }
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_log_cb(conf, ClientContext.logCallback)
        rd_kafka_conf_set_error_cb(conf, ClientContext.errorCallback)
        return conf
    }

    /// Creates a client; `conf` is consumed whether or not this succeeds.
    static func client(_ type: rd_kafka_type_t, _ conf: OpaquePointer) throws(KafkaError) -> OpaquePointer {
        var buf = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &buf, buf.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError("rd_kafka_new: " + buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return rk
    }

    /// Every header of a message, in order.
    static func headers(of m: UnsafeMutablePointer<rd_kafka_message_t>) -> [(String, [UInt8])] {
        var hdrs: OpaquePointer?
        guard rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
        var all: [(String, [UInt8])] = []
        var i = 0
        var name: UnsafePointer<CChar>?
        var v: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(hdrs, i, &name, &v, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            if let name { all.append((String(cString: name), v.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? [])) }
            i += 1
        }
        return all
    }

    /// Produces one message (key and value copied). Returns the error code; on success librdkafka owns the headers.
    static func produce(_ rk: OpaquePointer, topic: OpaquePointer, key: [UInt8], value: [UInt8],
                        headers: [(String, [UInt8])], opaque: Int) -> rd_kafka_resp_err_t {
        let hdrs = rd_kafka_headers_new(headers.count)
        for (name, bytes) in headers {
            _ = bytes.withUnsafeBytes { rd_kafka_header_add(hdrs, name, -1, $0.baseAddress, $0.count) }
        }
        let err = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                ckafka_produce(rk, topic, k.baseAddress, k.count, v.baseAddress, v.count, hdrs,
                               UnsafeMutableRawPointer(bitPattern: opaque))
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { rd_kafka_headers_destroy(hdrs) }
        return err
    }

    /// Subscribes a consumer to one topic, with the rebalance callback already in its configuration.
    static func subscribe(_ c: OpaquePointer, topic: String) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(1)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        let err = rd_kafka_subscribe(c, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("subscribe to \(topic): \(errorString(err))") }
    }

    /// "topic[0,2]" style text for a partition list, for logs.
    static func describe(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> String {
        guard let list else { return "" }
        var byTopic: [(String, [Int32])] = []
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            let topic = String(cString: e.topic)
            if let k = byTopic.firstIndex(where: { $0.0 == topic }) { byTopic[k].1.append(e.partition) } else { byTopic.append((topic, [e.partition])) }
        }
        return byTopic.map { "\($0.0)[\($0.1.sorted().map(String.init).joined(separator: ","))]" }.joined(separator: " ")
    }

    /// Makes `queue` write an 8-byte count to the eventfd `fd` whenever it turns non-empty, so one
    /// `poll(2)` can wait for Kafka and the spool together. The queue must be drained after each wake.
    static func wake(_ queue: OpaquePointer, eventFD fd: Int32) {
        var one: UInt64 = 1
        withUnsafeBytes(of: &one) { rd_kafka_queue_io_event_enable(queue, fd, $0.baseAddress, $0.count) }
    }
}

/// What librdkafka's callbacks of one client need: its logger, and the delivery reports.
///
/// librdkafka calls the log and error callbacks on its own threads; they use only `logger`
/// (Sendable) and atomics. Delivery reports and rebalances are served inside `rd_kafka_poll` /
/// `rd_kafka_consumer_poll` on the bridge's thread, the only one touching `reports`.
final class ClientContext: @unchecked Sendable {
    let logger: Logger
    let role: String
    /// Delivery reports since the last ``takeReports()``: the message's sequence number and outcome.
    private var reports: [(seq: Int, err: rd_kafka_resp_err_t)] = []
    /// Set by a fatal error (e.g. the idempotent producer's sequence broke): the client is unusable.
    let fatal = Atomic<Bool>(false)

    init(role: String, logger: Logger) {
        self.role = role
        var l = logger
        l[metadataKey: "kafka.client"] = "\(role)"
        self.logger = l
    }

    func takeReports() -> [(seq: Int, err: rd_kafka_resp_err_t)] {
        defer { reports.removeAll(keepingCapacity: true) }
        return reports
    }

    private static func context(_ opaque: UnsafeMutableRawPointer?) -> ClientContext? {
        opaque.map { Unmanaged<ClientContext>.fromOpaque($0).takeUnretainedValue() }
    }

    static let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, msg, opaque in
        guard let msg, let ctx = context(opaque) else { return }
        ctx.reports.append((Int(bitPattern: msg.pointee._private), msg.pointee.err))
    }

    /// librdkafka's syslog levels onto swift-log's.
    static let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
        rk, level, facility, text in
        guard let rk, let ctx = context(rd_kafka_opaque(rk)), let text else { return }
        let lvl: Logger.Level = switch level {
        case ...2: .critical
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
        ctx.logger.log(level: lvl, "librdkafka: \(String(cString: text))",
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
            let hint = orig == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID
                ? "; another consumer joined the group with this bridge's group.instance.id (give each bridge its own --instance-id)" : ""
            ctx.logger.critical("fatal Kafka error: \(buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }) (\(Kafka.errorString(orig)))\(hint)")
            ctx.fatal.store(true, ordering: .releasing)
        } else if err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN {
            ctx.logger.warning("all Kafka brokers are down; waiting for one to come back: \(why)")
        } else {
            ctx.logger.warning("Kafka: \(why)")
        }
    }

    /// Assigns and revokes partitions; before giving partitions up it commits the offsets already
    /// stored (only those of messages whose job is durable), so the next owner starts right after them.
    static let rebalanceCallback: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = {
        rk, err, partitions, opaque in
        guard let rk, let ctx = context(opaque) else { return }
        let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            ctx.logger.notice("partitions assigned", metadata: ["partitions": "\(Kafka.describe(partitions))"])
            BridgeMetrics.rebalance(client: ctx.role, kind: "assign")
            if cooperative {
                if let e = rd_kafka_incremental_assign(rk, partitions) { rd_kafka_error_destroy(e) }
            } else {
                _ = rd_kafka_assign(rk, partitions)
            }
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            ctx.logger.notice("partitions revoked", metadata: ["partitions": "\(Kafka.describe(partitions))"])
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
        default:
            ctx.logger.error("rebalance: \(Kafka.errorString(err))")
            _ = rd_kafka_assign(rk, nil)
        }
    }
}

extension Kafka {
    /// The error's symbolic name (e.g. `_ALL_BROKERS_DOWN`), for metric labels.
    static func name(_ err: rd_kafka_resp_err_t) -> String { String(cString: rd_kafka_err2name(err)) }
}
