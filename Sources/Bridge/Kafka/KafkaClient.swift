import CKafka
import Dispatch
import Logging

/// One librdkafka client (`rd_kafka_t`) and the context its callbacks report to. Destroyed in
/// `deinit` unless ``close(untilMs:)`` handed it to a closing thread first. Its topics and queues
/// (``KafkaTopic``, ``KafkaQueue``) keep it alive, so they are always destroyed before it.
final class KafkaClient {
    let rk: OpaquePointer
    let context: ClientContext
    var role: String { context.role }
    /// True once ``close(untilMs:)`` took the handle: `deinit` leaves it alone.
    private var handedOff = false

    /// Creates a client of `type` with `properties` (later ones win); `configure` may set more
    /// callbacks on the configuration before the client takes it.
    init(
        _ type: rd_kafka_type_t, properties: [(String, String)], context: ClientContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        let conf = try Kafka.configuration(properties, context: context)
        configure(conf)
        rk = try Kafka.client(type, conf)
        self.context = context
    }

    deinit {
        if !handedOff { rd_kafka_destroy(rk) }
    }

    /// Starts closing the client on a thread of its own (a consumer: `rd_kafka_consumer_close`,
    /// which commits the stored offsets and leaves the group; then `rd_kafka_destroy`, which for
    /// a producer waits for what is still queued). The semaphore is signalled when it is done.
    /// Its topics and queues must be gone first.
    func beginClose(consumer: Bool, logger: Logger) -> DispatchSemaphore {
        precondition(!handedOff, "\(role) closed twice")
        handedOff = true
        let handle = KafkaHandle(rk), role = self.role
        return Bridge.onThread {
            if consumer {
                let err = rd_kafka_consumer_close(handle.rk)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { logger.warning("\(role) close: \(Kafka.errorString(err))") }
            }
            rd_kafka_destroy(handle.rk)
        }
    }

    /// A client still closing when its time was up is left to it: its context stays alive for
    /// good, since the client may still call back into it.
    func abandon() { _ = Unmanaged.passRetained(context) }
}

/// A producer's topic handle (`rd_kafka_topic_t`), destroyed in `deinit` (before its client,
/// which it keeps alive).
final class KafkaTopic {
    let client: KafkaClient
    let rkt: OpaquePointer
    let name: String

    init(_ client: KafkaClient, name: String) throws(KafkaError) {
        guard let rkt = rd_kafka_topic_new(client.rk, name, nil) else {
            throw KafkaError("topic \(name)", rd_kafka_last_error())
        }
        self.client = client
        self.rkt = rkt
        self.name = name
    }

    deinit { rd_kafka_topic_destroy(rkt) }
}

/// A client's queue (`rd_kafka_queue_t`) set to write to an eventfd whenever it turns non-empty
/// (``Kafka/wake(_:eventFD:)``); destroyed in `deinit`, before its client.
final class KafkaQueue {
    let client: KafkaClient
    let queue: OpaquePointer

    /// The consumer's queue (`consumer`) or the client's main queue (delivery reports, errors).
    init?(_ client: KafkaClient, consumer: Bool, eventFD: Int32) {
        guard let q = consumer ? rd_kafka_queue_get_consumer(client.rk) : rd_kafka_queue_get_main(client.rk) else { return nil }
        self.client = client
        queue = q
        Kafka.wake(q, eventFD: eventFD)
    }

    deinit { rd_kafka_queue_destroy(queue) }
}

/// A librdkafka client handle passed to the thread that closes it (librdkafka's calls are thread-safe).
struct KafkaHandle: @unchecked Sendable {
    let rk: OpaquePointer
    init(_ rk: OpaquePointer) { self.rk = rk }
}
