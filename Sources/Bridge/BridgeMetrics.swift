import Metrics

/// The bridge's metrics (swift-metrics; `llmspool bridge --metrics-address` exports them in
/// Prometheus format). Listed in docs/bridge.md.
enum BridgeMetrics {
    /// A message consumed from `topic`, by what became of it: enqueued, duplicate, invalid
    /// (jobs in); settled, duplicate, not-ours, invalid (results in).
    static func consumed(topic: String, outcome: String) {
        Counter(label: "llmspool_bridge_consumed_total", dimensions: [("topic", topic), ("outcome", outcome)]).increment()
    }

    /// A message confirmed by its delivery report: a job, a result or a dead letter.
    static func delivered(topic: String, kind: String, count: Int = 1) {
        guard count > 0 else { return }
        Counter(label: "llmspool_bridge_delivered_total", dimensions: [("topic", topic), ("kind", kind)]).increment(by: count)
    }

    /// A message of `--deltas-out` confirmed by its delivery report, by its type: `delta`,
    /// `restart`, `done`, `failed`.
    static func deltas(topic: String, type: String) {
        Counter(label: "llmspool_bridge_deltas_published_total", dimensions: [("topic", topic), ("type", type)]).increment()
    }

    /// A produce call refused or a delivery report with an error.
    static func deliveryError(topic: String, kind: String) {
        Counter(label: "llmspool_bridge_delivery_errors_total", dimensions: [("topic", topic), ("kind", kind)]).increment()
    }

    /// An error librdkafka reported (a broker down, all brokers down, a fatal error…).
    static func kafkaError(client: String, code: String) {
        Counter(label: "llmspool_bridge_kafka_errors_total", dimensions: [("client", client), ("code", code)]).increment()
    }

    static func rebalance(client: String, kind: String) {
        Counter(label: "llmspool_bridge_rebalances_total", dimensions: [("client", client), ("kind", kind)]).increment()
    }

    /// Messages waiting on `topic` beyond this consumer's position, over its assigned partitions.
    static func lag(topic: String, _ value: Int64) {
        Gauge(label: "llmspool_bridge_consumer_lag", dimensions: [("topic", topic)]).record(value)
    }

    /// The same for one assigned partition (a partition this host no longer holds keeps its last value).
    static func lag(topic: String, partition: Int32, _ value: Int64) {
        Gauge(label: "llmspool_bridge_partition_lag", dimensions: [("topic", topic), ("partition", "\(partition)")]).record(value)
    }

    /// Messages produced and not yet confirmed, by kind.
    static func awaitingDelivery(kind: String, _ value: Int) {
        Gauge(label: "llmspool_bridge_awaiting_delivery", dimensions: [("kind", kind)]).record(value)
    }
}

extension BridgeMetrics {
    /// Jobs-in's back-pressure: 1 while this host has left the group because it holds `--max-queued` jobs.
    static func backPressure(topic: String, left: Bool) {
        Gauge(label: "llmspool_bridge_back_pressure", dimensions: [("topic", topic)]).record(left ? 1 : 0)
    }

    /// Jobs it brought in from `topic` still waiting in `new/` or `cur/` (with `--max-queued` only).
    static func queued(topic: String, _ value: Int) {
        Gauge(label: "llmspool_bridge_queued_jobs", dimensions: [("topic", topic)]).record(value)
    }
}
