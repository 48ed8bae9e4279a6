import CKafka
import CKafkaShim
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

    /// A configuration with `properties` applied in order (later ones win).
    static func configuration(_ properties: [(String, String)]) throws(KafkaError) -> OpaquePointer {
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

    /// The last value of header `name`, if any.
    static func header(_ headers: OpaquePointer?, _ name: String) -> [UInt8]? {
        guard let headers else { return nil }
        var value: UnsafeRawPointer?
        var size = 0
        guard rd_kafka_header_get_last(headers, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        guard let value else { return [] }
        return Array(UnsafeRawBufferPointer(start: value, count: size))
    }

    /// Produces one message (value copied). Returns the error code; on success librdkafka owns the headers.
    static func produce(_ rk: OpaquePointer, topic: String, key: [UInt8], value: [UInt8],
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
}

/// Delivery reports collected by the producer's callback (served by `rd_kafka_poll` on the bridge's thread).
final class Deliveries {
    var reports: [(seq: Int, err: rd_kafka_resp_err_t)] = []

    static let callback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, msg, opaque in
        guard let msg, let opaque else { return }
        let box = Unmanaged<Deliveries>.fromOpaque(opaque).takeUnretainedValue()
        let seq = Int(bitPattern: msg.pointee._private)
        box.reports.append((seq, msg.pointee.err))
    }
}
