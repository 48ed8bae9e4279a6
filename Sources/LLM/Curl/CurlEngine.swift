import CCurl
import CCurlShim
import Glibc
import Synchronization

/// HTTP over libcurl's multi interface: one thread per engine drives every transfer
/// (thousands at once, each costing a socket and a few kilobytes, not a thread).
///
/// The thread waits in `epoll_wait` on the sockets libcurl asks for (`curl_multi_socket_action`)
/// and on an eventfd that ``perform(_:)`` and task cancellation signal from any thread. With no
/// transfer in flight it waits without a timeout: an idle engine uses no CPU. A streamed
/// transfer's idle timeout (``HTTPRequest/idleTimeout``) is kept by the thread too: its wait ends
/// at the earliest one as well, and only a stream whose body has begun has one. Connections are
/// kept alive and reused between transfers; HTTP/2 is used over TLS where the server offers it,
/// with transfers to one host multiplexed on one connection. TLS certificates are always verified.
///
/// Call ``shutdown()`` (or drop the last reference) to stop the thread; transfers still in
/// flight then fail with ``LLMError/Kind/shutdown``.
public final class CurlEngine: Sendable {
    public struct Configuration: Sendable {
        /// Connections to one host at most (0: no limit). Transfers beyond it wait for a free one.
        public var maxConnectionsPerHost: Int
        /// Connections at most, all hosts together (0: no limit).
        public var maxTotalConnections: Int
        /// Connections kept open at most, busy and idle together; past it, the longest idle one is
        /// closed when a transfer ends. There are never more connections than the peak of transfers
        /// at once, so the default only bounds a pathological peak. (libcurl's own default,
        /// 4 × the transfers in flight *at that moment*, closed connections after every lull:
        /// 58 connections for 2,000 calls at 8 at once against nginx, measured here.)
        public var maxCachedConnections: Int
        /// HTTP/2 streams per connection at most.
        public var maxConcurrentStreams: Int
        /// A PEM bundle of CA certificates to verify servers with, instead of the system's.
        public var caFile: String?
        public var userAgent: String
        /// libcurl's receive buffer per transfer (`CURLOPT_BUFFERSIZE`, 1 KiB to 512 KiB), allocated
        /// when the transfer starts and held while it waits. libcurl's default, 16 KiB, is most of a
        /// transfer's memory: 10,000 calls in flight held ~160 MB; 4 KiB still held 40 MB of them.
        /// Answers larger than the buffer are simply read in several pieces (one more `recv` and
        /// write callback per KiB: nothing next to an LLM's latency).
        public var receiveBufferSize: Int
        /// libcurl's own trace on stderr (`CURLOPT_VERBOSE`). It shows request headers: never
        /// enable it with a real API key.
        public var verbose: Bool

        public init(
            maxConnectionsPerHost: Int = 0,
            maxTotalConnections: Int = 0,
            maxCachedConnections: Int = 10_000,
            maxConcurrentStreams: Int = 100,
            caFile: String? = nil,
            userAgent: String = "llmspool",
            receiveBufferSize: Int = 1024,
            verbose: Bool = false
        ) {
            self.maxConnectionsPerHost = maxConnectionsPerHost
            self.maxTotalConnections = maxTotalConnections
            self.maxCachedConnections = maxCachedConnections
            self.maxConcurrentStreams = maxConcurrentStreams
            self.caFile = caFile
            self.userAgent = userAgent
            self.receiveBufferSize = min(max(receiveBufferSize, 1024), 512 * 1024)
            self.verbose = verbose
        }
    }

    /// Counters since the engine started.
    public struct Statistics: Sendable, Equatable {
        /// Transfers handed to libcurl.
        public var started: Int
        /// Transfers that ended, in any way.
        public var finished: Int
        /// Connections opened (a transfer that reused one opened none).
        public var connectionsOpened: Int
        public var inFlight: Int { started - finished }
    }

    public let configuration: Configuration
    let shared: EngineShared
    private let thread: Mutex<pthread_t?>

    /// Starts the engine's thread.
    /// - Throws: ``LLMError`` (``LLMError/Kind/configuration``) if libcurl or the poller cannot start.
    public init(configuration: Configuration = Configuration()) throws(LLMError) {
        guard llmspool_curl_global_init() == 0 else {
            throw LLMError(.configuration, "curl_global_init failed")
        }
        self.configuration = configuration
        let wake = llmspool_curl_eventfd()
        guard wake >= 0 else {
            throw LLMError(.configuration, "eventfd failed: errno \(llmspool_curl_errno())")
        }
        shared = EngineShared(wakeFD: wake)
        let loop = try CurlLoop(shared: shared, configuration: configuration)
        var tid = pthread_t()
        let arg = Unmanaged.passRetained(loop).toOpaque()
        let rc = pthread_create(
            &tid, nil,
            { arg in
                let loop = Unmanaged<CurlLoop>.fromOpaque(arg!).takeRetainedValue()
                llmspool_curl_name_thread("llmspool-curl")
                loop.run()
                return nil
            }, arg)
        guard rc == 0 else {
            Unmanaged<CurlLoop>.fromOpaque(arg).release()
            throw LLMError(.configuration, "pthread_create failed: errno \(rc)")
        }
        thread = Mutex(tid)
    }

    deinit { shutdown() }

    /// Sends `request` and returns the server's response, whatever its status.
    ///
    /// Cancelling the calling task aborts the transfer and throws `CancellationError`.
    /// - Throws: ``LLMError`` when no complete response arrived (timeout, connection, TLS,
    ///   response too large, invalid request, engine shut down), or `CancellationError`.
    public func perform(_ request: consuming HTTPRequest) async throws -> HTTPResponse {
        try request.validate()
        let transfer = Transfer(id: shared.nextID(), request: request)  // the transfer takes the body over
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                if transfer.attach(continuation) {
                    shared.submit(transfer)
                } else {
                    continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            if transfer.requestCancel() { shared.cancel(transfer.id) }
        }
    }

    public var statistics: Statistics {
        Statistics(
            started: shared.started.load(ordering: .relaxed),
            finished: shared.finished.load(ordering: .relaxed),
            connectionsOpened: shared.connections.load(ordering: .relaxed)
        )
    }

    /// Stops the thread and waits for it: transfers in flight or queued fail with
    /// ``LLMError/Kind/shutdown``, later ``perform(_:)`` calls too. Closes every connection.
    /// Safe to call more than once and from any thread but the engine's own.
    public func shutdown() {
        let tid: pthread_t? = thread.withLock { t in
            defer { t = nil }
            return t
        }
        guard let tid else { return }
        shared.requestStop()
        pthread_join(tid, nil)
    }
}

/// What the engine's callers and its loop thread share: the command queue and counters.
final class EngineShared: Sendable {
    struct Commands {
        var adds: [Transfer] = []
        var cancels: [UInt64] = []
        var stop = false
        /// A wake-up is signalled and the loop has not yet taken the commands.
        var wakePending = false
    }

    let wakeFD: Int32
    private let commands = Mutex(Commands())
    private let ids = Atomic<UInt64>(0)
    let started = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
    let connections = Atomic<Int>(0)
    /// Turns of the loop (epoll wake-ups), and the loop thread's kernel id: for tests of idleness.
    let iterations = Atomic<Int>(0)
    let loopThreadID = Atomic<Int32>(0)
    /// Streamed transfers whose idle timeout is running, as the loop last went to sleep (for tests).
    let idleTimed = Atomic<Int>(0)

    init(wakeFD: Int32) { self.wakeFD = wakeFD }

    // Closed only when neither the engine nor its loop can signal it any more.
    deinit { close(wakeFD) }

    func nextID() -> UInt64 { ids.add(1, ordering: .relaxed).newValue }

    func submit(_ transfer: Transfer) {
        enum Outcome { case queued(wake: Bool), stopped }
        let outcome: Outcome = commands.withLock { c in
            if c.stop { return .stopped }
            c.adds.append(transfer)
            defer { c.wakePending = true }
            return .queued(wake: !c.wakePending)
        }
        switch outcome {
        case .stopped: transfer.finish(.failure(LLMError(.shutdown, "the HTTP engine is shut down")))
        case .queued(let wake): if wake { llmspool_eventfd_signal(wakeFD) }
        }
    }

    func cancel(_ id: UInt64) {
        let wake: Bool = commands.withLock { c in
            if c.stop { return false }
            c.cancels.append(id)
            defer { c.wakePending = true }
            return !c.wakePending
        }
        if wake { llmspool_eventfd_signal(wakeFD) }
    }

    func requestStop() {
        commands.withLock { $0.stop = true }
        llmspool_eventfd_signal(wakeFD)
    }

    /// The loop takes every queued command at once.
    func take() -> Commands {
        commands.withLock { c in
            let taken = c
            c.adds = []
            c.cancels = []
            c.wakePending = false
            return taken
        }
    }
}
