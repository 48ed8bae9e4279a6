import Dispatch
public import Logging
public import ServiceLifecycle
import Synchronization

/// The bridge as a swift-service-lifecycle `Service`: ``run()`` runs the bridge's loop on a thread
/// of its own (it sleeps in `poll(2)`, not on the cooperative pool) until the group's graceful
/// shutdown (SIGTERM, SIGINT) or a cancellation stops it; the stop is then bounded by
/// ``BridgeConfiguration/stopTimeout``. A stop that left work returns normally and says so in
/// ``leftWork`` (the bridge has logged it), so that the command can exit 75.
public final class BridgeService: Service, Sendable {
    /// Stops the bridge from any thread; says what it is doing (for a watchdog).
    public let stopper: BridgeStopper
    private let bridge: Mutex<Bridge?>
    private let left = Mutex<[String]>([])

    /// Opens the spool and its watcher (no Kafka client yet: those are made by ``run()``).
    /// `onReady` is called once the Kafka clients exist; `onTick` on every turn of the loop, which
    /// turns at least every `tickMilliseconds` (systemd's watchdog).
    public init(
        configuration: BridgeConfiguration, logger: Logger, onReady: (@Sendable () -> Void)? = nil,
        onTick: (@Sendable () -> Void)? = nil, tickMilliseconds: Int64? = nil
    ) throws {
        let b = try Bridge(configuration: configuration, logger: logger)
        b.onReady = onReady
        b.onTick = onTick
        if let t = tickMilliseconds { b.tickMilliseconds = t }
        stopper = b.stopper
        bridge = Mutex(b)
    }

    /// What the stop left undone (empty after a clean stop).
    public var leftWork: [String] { left.withLock { $0 } }

    public func run() async throws {
        guard
            let b = bridge.withLock({ b -> sending Bridge? in
                let taken = b
                b = nil
                return taken
            })
        else { return }
        let owned = Owned(b)
        let stopper = self.stopper
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
                // The loop's own thread: it blocks in poll(2) between turns.
                let thread = DispatchQueue(label: "llmspool.bridge")
                thread.async {
                    do {
                        try owned.value.run()
                        done.resume()
                    } catch let e as BridgeStopIncomplete {
                        self.left.withLock { $0 = e.left }
                        done.resume()
                    } catch {
                        done.resume(throwing: error)
                    }
                }
            }
        } onCancelOrGracefulShutdown: {
            stopper.stop()
        }
    }
}

/// The bridge handed from the service to the thread that runs it: only that thread touches it
/// from then on.
private final class Owned: @unchecked Sendable {
    let value: Bridge
    init(_ value: Bridge) { self.value = value }
}
