import CCurl
import CCurlShim
import Glibc

/// The engine's thread: a libcurl multi handle driven by `curl_multi_socket_action` over epoll.
///
/// Everything here runs on that one thread, except `init`. Costs grow with the sockets that are
/// ready, not with the transfers in flight (unlike `curl_multi_perform`/`curl_multi_poll`,
/// which visit every transfer on every wake-up: ~0.6 µs each, measured here, so ~6 ms per
/// wake-up at 10,000 transfers).
final class CurlLoop {
    private let shared: EngineShared
    private let configuration: CurlEngine.Configuration
    private let multi: MultiHandle
    private let epfd: Int32
    /// When libcurl wants `CURL_SOCKET_TIMEOUT` next (monotonic nanoseconds), if it does.
    private var timerDeadline: UInt64?
    private var active: [UInt64: Transfer] = [:]
    /// The idle timeouts of streamed transfers: the loop also wakes for the earliest.
    let idle = IdleTimers()

    init(shared: EngineShared, configuration: CurlEngine.Configuration) throws(LLMError) {
        self.shared = shared
        self.configuration = configuration
        guard let multi = curl_multi_init() else { throw LLMError(.configuration, "curl_multi_init failed") }
        let epfd = llmspool_epoll_create()
        guard epfd >= 0 else {
            curl_multi_cleanup(multi)
            throw LLMError(.configuration, "epoll_create1 failed: errno \(llmspool_curl_errno())")
        }
        guard llmspool_epoll_watch(epfd, shared.wakeFD, 1, 0) == 0 else {
            let e = llmspool_curl_errno()
            close(epfd)
            curl_multi_cleanup(multi)
            throw LLMError(.configuration, "epoll_ctl on the wake-up eventfd failed: errno \(e)")
        }
        self.multi = multi
        self.epfd = epfd

        // The loop outlives the multi handle's callbacks: it cleans the handle up before it goes.
        let me = UnsafeMutableRawPointer(Unmanaged.passUnretained(self).toOpaque())
        llmspool_curl_multi_setopt_socket_callback(multi, loopSocketCallback)
        Multi.set(multi, CURLMOPT_SOCKETDATA, pointer: me)
        llmspool_curl_multi_setopt_timer_callback(multi, loopTimerCallback)
        Multi.set(multi, CURLMOPT_TIMERDATA, pointer: me)
        Multi.set(multi, CURLMOPT_PIPELINING, Int(CURLPIPE_MULTIPLEX))
        Multi.set(multi, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost)
        Multi.set(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, configuration.maxTotalConnections)
        Multi.set(multi, CURLMOPT_MAX_CONCURRENT_STREAMS, configuration.maxConcurrentStreams)
        Multi.set(multi, CURLMOPT_MAXCONNECTS, max(1, configuration.maxCachedConnections))
    }

    func run() {
        let capacity = 256
        var fds = [Int32](repeating: 0, count: capacity)
        var flags = [Int32](repeating: 0, count: capacity)
        shared.loopThreadID.store(llmspool_curl_gettid(), ordering: .relaxed)
        while true {
            shared.idleTimed.store(idle.count, ordering: .relaxed)
            let n = llmspool_epoll_wait(epfd, &fds, &flags, Int32(capacity), waitMilliseconds())
            shared.iterations.add(1, ordering: .relaxed)
            var woken = false
            if n > 0 {
                for i in 0..<Int(n) {
                    if fds[i] == shared.wakeFD {
                        woken = true
                    } else {
                        // The flag bits are CURL_CSELECT_IN / _OUT / _ERR.
                        socketAction(fds[i], flags[i])
                    }
                }
            }
            if let deadline = timerDeadline, monotonicNanoseconds() >= deadline {
                timerDeadline = nil
                socketAction(Int32(llmspool_curl_socket_timeout), 0)
            }
            // Not after a full batch of events: a stream's bytes may be waiting in a socket this
            // turn did not reach (the next turn comes at once, the deadline having passed).
            if n < capacity { expireIdle() }
            if woken {
                llmspool_eventfd_drain(shared.wakeFD)
                let commands = shared.take()
                if commands.stop {
                    for transfer in commands.adds { transfer.finish(.failure(shutdownError)) }
                    break
                }
                for transfer in commands.adds { start(transfer) }
                for id in commands.cancels { cancel(id) }
            }
            collectFinished()
        }
        tearDown()
    }

    private var shutdownError: LLMError { LLMError(.shutdown, "the HTTP engine was shut down during the transfer") }

    private func waitMilliseconds() -> Int32 {
        let deadline: UInt64
        switch (timerDeadline, idle.nextDeadline) {
        case (nil, nil): return -1
        case (let a?, nil): deadline = a
        case (nil, let b?): deadline = b
        case (let a?, let b?): deadline = min(a, b)
        }
        let now = monotonicNanoseconds()
        guard deadline > now else { return 0 }
        return Int32(min((deadline - now + 999_999) / 1_000_000, 3_600_000))
    }

    private func socketAction(_ fd: Int32, _ flags: Int32) {
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, fd, flags, &running)
    }

    private func start(_ transfer: Transfer) {
        if transfer.isCancelRequested {
            transfer.finish(.failure(CancellationError()))
            return
        }
        if transfer.idleNanoseconds != nil { transfer.idleTimers = idle }
        do {
            let easy = try transfer.makeHandle(configuration: configuration)
            let rc = curl_multi_add_handle(multi, easy)
            guard rc == CURLM_OK else {
                throw LLMError(.connection, "curl_multi_add_handle failed: \(String(cString: curl_multi_strerror(rc)))")
            }
        } catch {
            transfer.release(from: multi)
            transfer.finish(.failure(error))
            return
        }
        active[transfer.id] = transfer
        shared.started.add(1, ordering: .relaxed)
    }

    /// Ends the streamed transfers whose last body byte is older than their idle timeout.
    private func expireIdle() {
        for transfer in idle.expire(now: monotonicNanoseconds()) {
            guard active.removeValue(forKey: transfer.id) != nil else { continue }
            if let easy = transfer.easy { shared.connections.add(Easy.long(easy, CURLINFO_NUM_CONNECTS), ordering: .relaxed) }
            let error = LLMError.idle(transfer.request)
            transfer.release(from: multi)
            shared.finished.add(1, ordering: .relaxed)
            transfer.finish(.failure(error))
        }
    }

    private func cancel(_ id: UInt64) {
        guard let transfer = active.removeValue(forKey: id) else { return }
        transfer.release(from: multi)
        shared.finished.add(1, ordering: .relaxed)
        transfer.finish(.failure(CancellationError()))
    }

    private func collectFinished() {
        var left: Int32 = 0
        while let message = curl_multi_info_read(multi, &left) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let me = Easy.pointer(easy, CURLINFO_PRIVATE) else { continue }
            let transfer = Unmanaged<Transfer>.fromOpaque(me).takeUnretainedValue()
            guard active.removeValue(forKey: transfer.id) != nil else { continue }
            let outcome = transfer.outcome(code)
            shared.connections.add(Easy.long(easy, CURLINFO_NUM_CONNECTS), ordering: .relaxed)
            transfer.release(from: multi)
            shared.finished.add(1, ordering: .relaxed)
            transfer.finish(outcome)
        }
    }

    private func tearDown() {
        for transfer in active.values {
            transfer.release(from: multi)
            shared.finished.add(1, ordering: .relaxed)
            transfer.finish(.failure(shutdownError))
        }
        active = [:]
        curl_multi_cleanup(multi)
        close(epfd)
    }

    // Called by libcurl from inside socket_action / add / remove: only record, never call back.

    fileprivate func watch(_ fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            _ = llmspool_epoll_unwatch(epfd, fd)
        } else {
            _ = llmspool_epoll_watch(epfd, fd, what & CURL_POLL_IN, what & CURL_POLL_OUT)
        }
    }

    fileprivate func setTimer(milliseconds: Int) {
        timerDeadline = milliseconds < 0 ? nil : monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
    }
}

private func loopSocketCallback(
    _ easy: UnsafeMutableRawPointer?, _ fd: Int32, _ what: Int32, _ user: UnsafeMutableRawPointer?,
    _ socketUser: UnsafeMutableRawPointer?
) -> Int32 {
    guard let user else { return -1 }
    Unmanaged<CurlLoop>.fromOpaque(user).takeUnretainedValue().watch(fd, what: what)
    return 0
}

private func loopTimerCallback(_ multi: UnsafeMutableRawPointer?, _ milliseconds: Int, _ user: UnsafeMutableRawPointer?) -> Int32 {
    guard let user else { return -1 }
    Unmanaged<CurlLoop>.fromOpaque(user).takeUnretainedValue().setTimer(milliseconds: milliseconds)
    return 0
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
