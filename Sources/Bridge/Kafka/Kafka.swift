import CKafka
import CKafkaShim
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

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
    static func produce(
        _ rk: OpaquePointer, topic: OpaquePointer, key: [UInt8], value: [UInt8],
        headers: [(String, [UInt8])], opaque: Int
    ) -> rd_kafka_resp_err_t {
        let hdrs = rd_kafka_headers_new(headers.count)
        for (name, bytes) in headers {
            _ = bytes.withUnsafeBytes { rd_kafka_header_add(hdrs, name, -1, $0.baseAddress, $0.count) }
        }
        let err = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                ckafka_produce(
                    rk, topic, k.baseAddress, k.count, v.baseAddress, v.count, hdrs,
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
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError("subscribe to \(topic)", err) }
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

extension Kafka {
    /// The error's symbolic name (e.g. `_ALL_BROKERS_DOWN`), for metric labels.
    static func name(_ err: rd_kafka_resp_err_t) -> String { String(cString: rd_kafka_err2name(err)) }
}
