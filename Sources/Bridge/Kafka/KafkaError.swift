import CKafka

/// A librdkafka call failed: librdkafka's error code (`rd_kafka_resp_err_t`) and its symbolic name
/// (e.g. `_QUEUE_FULL`, `UNKNOWN_TOPIC_OR_PART`), and a message naming the call, the property
/// or the topic. Errors that do not come from librdkafka (a directory that cannot be made) have
/// code 0 (`NO_ERROR`) and name `none`.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// The `rd_kafka_resp_err_t` value, 0 when the error is not librdkafka's.
    public var code: Int32
    /// librdkafka's name of `code` (`rd_kafka_err2name`).
    public var name: String
    public var message: String

    /// An error of the bridge's own (no librdkafka code).
    init(_ message: String) {
        code = 0
        name = "none"
        self.message = message
    }

    /// `what` failed with librdkafka's `err`; the message adds librdkafka's text for it.
    init(_ what: String, _ err: rd_kafka_resp_err_t, detail: String? = nil) {
        code = Int32(err.rawValue)
        name = Kafka.name(err)
        message = "\(what): \(detail ?? Kafka.errorString(err)) (\(name))"
    }

    var err: rd_kafka_resp_err_t { rd_kafka_resp_err_t(code) }

    public var description: String { message }
}
