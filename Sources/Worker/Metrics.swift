import Dispatch
import LLM
import Metrics
import Spool

/// The worker's metrics, through swift-metrics (a no-op until a backend is bootstrapped: the
/// `worker` command bootstraps Prometheus when `--metrics-address` is given). Names and labels
/// are listed in docs/worker.md.
public struct WorkerMetrics: Sendable {
    public static let latencyLabel = "llmspool_llm_latency_seconds"

    let claimed = Counter(label: "llmspool_jobs_claimed_total")
    let finished = Counter(label: "llmspool_jobs_finished_total")
    let inFlight = Gauge(label: "llmspool_calls_in_flight")
    let latency = Metrics.Timer(label: WorkerMetrics.latencyLabel)
    let breakerOpen: Gauge
    let breakerOpenSince: Gauge
    let probesFailed: Counter
    let probesSucceeded: Counter
    private let refreshing = Busy()

    /// `endpoint`: the endpoint's description (no key, no query), the breaker metrics' label.
    init(endpoint: String = "") {
        breakerOpen = Gauge(label: "llmspool_circuit_breaker_open", dimensions: [("endpoint", endpoint)])
        breakerOpenSince = Gauge(label: "llmspool_circuit_breaker_open_since_seconds", dimensions: [("endpoint", endpoint)])
        probesFailed = Counter(label: "llmspool_circuit_breaker_probes_total", dimensions: [("endpoint", endpoint), ("result", "failed")])
        probesSucceeded = Counter(label: "llmspool_circuit_breaker_probes_total", dimensions: [("endpoint", endpoint), ("result", "succeeded")])
        claimed.increment(by: 0)
        finished.increment(by: 0)
        inFlight.record(0)
        breakerOpen.record(0)
        breakerOpenSince.record(0)
        probesFailed.increment(by: 0)
        probesSucceeded.increment(by: 0)
    }

    /// The breaker's state: open (or probing) since a wall-clock time, or closed.
    func breaker(open: Bool, sinceWallMs: Int64?) {
        breakerOpen.record(open ? 1 : 0)
        breakerOpenSince.record(open ? Double(sinceWallMs ?? 0) / 1000 : 0)
    }

    func probed(failed: Bool) { (failed ? probesFailed : probesSucceeded).increment() }

    /// A job dead-lettered: after its last attempt (kind of its last error), a bad file
    /// (`rejected`), or a claim abandoned too often (`abandoned`).
    func failed(kind: String) { Counter(label: "llmspool_jobs_failed_total", dimensions: [("kind", kind)]).increment() }

    func retried(kind: String) { Counter(label: "llmspool_llm_retries_total", dimensions: [("kind", kind)]).increment() }

    func tokens(_ n: Int, tenant: String) {
        guard n > 0 else { return }
        Counter(label: "llmspool_tokens_total", dimensions: [("tenant", tenant)]).increment(by: n)
    }

    /// The ending of one call, as the loop learns it.
    func ended(_ r: Worker.CallReport) {
        if let used = r.usedTokens { tokens(used, tenant: r.reservation.tenant) }
        if r.called, r.failure?.kind != .cancelled {
            if r.probe { probed(failed: r.failure?.cause == .transient) }
            Counter(label: "llmspool_llm_calls_total", dimensions: [("outcome", r.failure?.cause.rawValue ?? "ok")]).increment()
        }
        switch r.result {
        case .finished: finished.increment()
        case .failed: failed(kind: r.failure?.kind.rawValue ?? "unknown")
        case .retry: retried(kind: r.failure?.kind.rawValue ?? "unknown")
        case .givenBack, .abandoned: break
        }
    }

    /// Refreshes `llmspool_jobs{state}` from `spool.status()` on a disk thread (it lists every
    /// state, so it runs beside the loop, not on it); skipped while the previous refresh still runs.
    func refreshJobs(_ spool: Spool) {
        guard refreshing.testAndSet() else { return }
        let refreshing = self.refreshing
        Disk.queue.async {
            defer { refreshing.clear() }
            guard let s = try? spool.status() else { return }
            for state in SpoolState.jobStates {
                Gauge(label: "llmspool_jobs", dimensions: [("state", state.rawValue)]).record(s.counts[state] ?? 0)
            }
        }
    }
}

/// A flag taken by one party at a time, from any thread.
private final class Busy: @unchecked Sendable {
    private let lock = DispatchSemaphore(value: 1)
    private var taken = false

    /// Takes the flag; false if it was already taken.
    func testAndSet() -> Bool {
        lock.wait()
        defer { lock.signal() }
        if taken { return false }
        taken = true
        return true
    }

    func clear() { lock.wait(); taken = false; lock.signal() }
}
