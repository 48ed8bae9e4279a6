import Basics
import Daemon
import Dispatch
import JSON
import LLM
public import Logging
public import ServiceLifecycle
import Spool

/// The worker daemon: claims jobs from a spool, calls the LLM, writes results.
///
/// Two halves. ``WorkerStateMachine`` decides everything — which job runs next, fairly across
/// tenants within their budgets, when a retry is due, when the circuit breaker lets a call
/// through, when to rescan, when to stop — from events and instants, and returns actions. The
/// runner (`Worker.Runner`) is the I/O around it: one loop, on a thread of its own, that takes
/// the watcher's and the calls' events in batches, feeds them to the machine and carries out its
/// actions. Its blocking file-system calls (listing `new/`, reading and claiming files, recovery,
/// give back) therefore never hold a thread of the cooperative pool. Each call is a task of its
/// own that talks to the LLM and then settles its job: the decision is pure (``Settlement``), its
/// writing runs on the disk threads (``Disk``, group commit for answers), and the task reports the
/// ending back to the loop. A job waiting for a retry stays claimed but holds no slot. On graceful
/// shutdown the machine stops claiming, lets calls finish within the grace period, cancels the
/// rest and gives every unfinished job back to `new/`.
public final class Worker: Service {
    public let configuration: WorkerConfiguration
    let responder: any Responder
    let logger: Logger
    let metrics: WorkerMetrics

    public init(configuration: WorkerConfiguration, responder: any Responder, logger: Logger) {
        self.configuration = configuration
        self.responder = responder
        self.logger = logger
        metrics = WorkerMetrics(endpoint: responder.description)
    }

    public func run() async throws {
        let spool = try Spool(path: configuration.spoolPath)
        var configuration = self.configuration
        let fds = DescriptorLimit.raise()
        if fds.after != fds.before {
            logger.info("raised the open-file limit", metadata: ["from": "\(fds.before)", "to": "\(fds.after)"])
        }
        // One lease for all claims: each call in flight then holds only its connection.
        var perCall = 1
        do { try spool.takeLease() } catch {
            perCall = 2
            logger.warning("no lease: each claim keeps its file's descriptor", metadata: ["error": "\(error)"])
        }
        let allowed = DescriptorLimit.maxInFlight(forLimit: fds.after, perCall: perCall)
        if configuration.maxInFlight > allowed {
            logger.warning(
                perCall == 1
                    ? "fewer calls in flight than asked: each holds a connection"
                    : "fewer calls in flight than asked: each holds a claim lock and a connection",
                metadata: [
                    "asked": "\(configuration.maxInFlight)", "allowed": "\(allowed)", "open_file_limit": "\(fds.after)",
                ])
            configuration.maxInFlight = allowed
        }
        let events = EventQueue<Event>()
        let watcher = try SpoolWatcher(spool, states: [.new])
        let notifier = SystemdNotifier()
        let watchdog = notifier?.watchdogIntervalMs.map { Duration.milliseconds($0) }
        let runner = Runner(
            worker: self, configuration: configuration, spool: spool, events: events, notifier: notifier,
            committer: ResultCommitter(spool: spool),
            machine: Machine(settings: .init(configuration, watchdogInterval: watchdog), now: .now))

        let stopWatching = Flag()
        let tick = min(configuration.rescanInterval.wholeMilliseconds, notifier?.watchdogIntervalMs ?? Int64.max)
        DispatchQueue(label: "llmspool.watcher").async {
            while !stopWatching.isSet {
                let wake = watcher.wait(timeoutMilliseconds: Int32(clamping: tick))
                if stopWatching.isSet { break }
                events.yield(.watch(wake))
            }
        }
        defer {
            stopWatching.set()
            watcher.wake()
        }

        // The loop blocks in file-system calls and in its wait for events: a thread of its own, not
        // one of the cooperative pool's (which the call tasks and the LLM engine share).
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    DispatchQueue(label: "llmspool.worker.loop").async {
                        var loop = runner
                        loop.run()
                        done.resume()
                    }
                }
            } onCancel: {
                events.finish()
            }
        } onGracefulShutdown: {
            events.yield(.shutdown)
        }
        await responder.shutdown()
    }

    typealias Machine = WorkerStateMachine<Claim>
    typealias CallReport = Machine.Report

    enum Event: Sendable {
        case watch(SpoolWatcher.Wake)
        case callEnded(CallReport)
        case shutdown
    }
}

/// A flag set once, read from any thread.
final class Flag: @unchecked Sendable {
    private let lock = DispatchSemaphore(value: 1)
    private var value = false
    var isSet: Bool { lock.wait(); defer { lock.signal() }; return value }
    func set() { lock.wait(); value = true; lock.signal() }
}

extension Worker {
    /// Writes the worker's published state in order, off the loop.
    static let stateQueue = DispatchQueue(label: "llmspool.state")
}
