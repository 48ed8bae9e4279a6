import Basics
import CCurl
import CCurlShim
import Synchronization

/// One request's life inside a ``CurlEngine``.
///
/// Two parts: the completion state, shared by the awaiting task, its cancellation handler and
/// the loop thread (under a mutex); and the libcurl side (handle, buffers), which only the loop
/// thread touches once the transfer has been handed to it.
final class Transfer: @unchecked Sendable {
    let id: UInt64
    /// The request; its body is dropped once libcurl's copy of it is made (``makeHandle(configuration:)``).
    private(set) var request: HTTPRequest

    private enum Completion {
        case waiting
        case attached(CheckedContinuation<HTTPResponse, any Error>)
        case cancelRequested(CheckedContinuation<HTTPResponse, any Error>)
        case cancelledBeforeAttach
        case finished
    }

    private let completion = Mutex(Completion.waiting)

    // ---- Loop thread only ----
    private(set) var easy: EasyHandle?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var requestBody: UnsafeMutableRawBufferPointer?
    private var errorBuffer: UnsafeMutablePointer<CChar>?
    private var responseHeaders = HTTPHeaders()
    private var responseBody: [UInt8] = []
    private var tooLarge = false
    /// Whether ``HTTPRequest/bodyStream`` took this response's body (nil: not asked yet).
    private var streaming: Bool?

    // ---- Idle timeout (loop thread only; see IdleTimers) ----
    /// ``HTTPRequest/idleTimeout`` in nanoseconds (nil: none).
    let idleNanoseconds: UInt64?
    /// The loop's timers, which this transfer's body bytes reset (set when it starts, if it has an idle timeout).
    var idleTimers: IdleTimers?
    /// The list this transfer is timed in, from its first body byte until it ends.
    var idleList: IdleTimers.List?
    /// Its neighbours in ``idleList``: less and more recently active.
    var idleOlder: Transfer?
    var idleNewer: Transfer?
    /// Monotonic nanoseconds of the last body byte.
    var lastActivity: UInt64 = 0

    init(id: UInt64, request: consuming HTTPRequest) {
        self.id = id
        idleNanoseconds = request.idleTimeout.map { UInt64(max(1, $0.nanoseconds)) }
        self.request = request
    }

    deinit { releaseBuffers() }

    // MARK: Completion (any thread)

    /// Stores the continuation. False if the task was cancelled first (the caller then resumes it).
    func attach(_ continuation: CheckedContinuation<HTTPResponse, any Error>) -> Bool {
        completion.withLock { state in
            if case .waiting = state {
                state = .attached(continuation)
                return true
            }
            return false
        }
    }

    /// Marks the transfer cancelled. True if the loop thread must be told (it may be running).
    func requestCancel() -> Bool {
        completion.withLock { state in
            switch state {
            case .waiting:
                state = .cancelledBeforeAttach
                return false
            case .attached(let c):
                state = .cancelRequested(c)
                return true
            case .cancelRequested, .cancelledBeforeAttach, .finished:
                return false
            }
        }
    }

    var isCancelRequested: Bool {
        completion.withLock { if case .cancelRequested = $0 { true } else { false } }
    }

    /// Resumes the awaiting task, once; later calls do nothing.
    func finish(_ result: Result<HTTPResponse, any Error>) {
        let continuation: CheckedContinuation<HTTPResponse, any Error>? = completion.withLock { state in
            switch state {
            case .attached(let c), .cancelRequested(let c):
                state = .finished
                return c
            case .waiting, .cancelledBeforeAttach, .finished:
                state = .finished
                return nil
            }
        }
        continuation?.resume(with: result)
    }

    // MARK: libcurl side (loop thread)

    /// Creates and configures the easy handle. Throws if libcurl refuses the request.
    func makeHandle(configuration: CurlEngine.Configuration) throws(LLMError) -> EasyHandle {
        guard let easy = curl_easy_init() else {
            throw LLMError(.connection, "curl_easy_init failed (out of memory?)")
        }
        self.easy = easy
        let me = UnsafeMutableRawPointer(Unmanaged.passUnretained(self).toOpaque())
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(llmspool_curl_error_size))
        errorBuffer.initialize(to: 0)
        self.errorBuffer = errorBuffer

        Easy.set(easy, CURLOPT_PRIVATE, pointer: me)
        Easy.set(easy, CURLOPT_ERRORBUFFER, pointer: errorBuffer)
        Easy.set(easy, CURLOPT_NOSIGNAL, true)
        guard Easy.set(easy, CURLOPT_URL, request.url) == 0 else {
            throw LLMError(.invalidRequest, "libcurl refused the URL \(redactedURL(request.url))")
        }
        // http and https only, also after a redirect (which is not followed anyway).
        Easy.set(easy, CURLOPT_PROTOCOLS_STR, "http,https")
        Easy.set(easy, CURLOPT_FOLLOWLOCATION, false)
        Easy.set(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        // Over TLS, wait for a connection being set up to learn whether it multiplexes (HTTP/2)
        // rather than opening another. Not over plain HTTP: that answer would only come with the
        // first response, which from an LLM may take minutes.
        if request.url.lowercased().hasPrefix("https://") { Easy.set(easy, CURLOPT_PIPEWAIT, true) }
        Easy.set(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout.roundedUpMilliseconds))
        Easy.set(easy, CURLOPT_TIMEOUT_MS, Int(request.timeout.roundedUpMilliseconds))
        // No CURLOPT_LOW_SPEED_*: the idle timeout is the loop's (IdleTimers), to the millisecond.
        Easy.set(easy, CURLOPT_SSL_VERIFYPEER, true)
        Easy.set(easy, CURLOPT_SSL_VERIFYHOST, 2)
        if let ca = configuration.caFile { Easy.set(easy, CURLOPT_CAINFO, ca) }
        Easy.set(easy, CURLOPT_TCP_KEEPALIVE, true)
        Easy.set(easy, CURLOPT_BUFFERSIZE, configuration.receiveBufferSize)
        Easy.set(easy, CURLOPT_USERAGENT, configuration.userAgent)
        if configuration.verbose { Easy.set(easy, CURLOPT_VERBOSE, true) }

        Easy.set(easy, CURLOPT_WRITEFUNCTION, callback: transferWrite)
        Easy.set(easy, CURLOPT_WRITEDATA, pointer: me)
        Easy.set(easy, CURLOPT_HEADERFUNCTION, callback: transferHeader)
        Easy.set(easy, CURLOPT_HEADERDATA, pointer: me)

        let method = request.method
        if method != "GET" || !request.body.isEmpty {
            let body = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, request.body.count), alignment: 1)
            body.copyBytes(from: request.body)
            requestBody = body
            Easy.set(easy, CURLOPT_POST, true)
            Easy.set(easy, CURLOPT_POSTFIELDSIZE_LARGE, offset: Int64(request.body.count))
            Easy.set(easy, CURLOPT_POSTFIELDS, pointer: body.baseAddress)
            if method != "POST" { Easy.set(easy, CURLOPT_CUSTOMREQUEST, method) }
            // One copy of the body per call in flight, not two (prompts can be long).
            request.body = []
        }

        var list: UnsafeMutablePointer<curl_slist>?
        for field in request.headers {
            let line = field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)"
            list = curl_slist_append(list, line)
        }
        // No `Expect: 100-continue` round trip for large bodies.
        list = curl_slist_append(list, "Expect:")
        headerList = list
        Easy.set(easy, CURLOPT_HTTPHEADER, pointer: list)
        return easy
    }

    /// The outcome of a finished transfer, read from the handle before it is released.
    func outcome(_ code: CURLcode) -> Result<HTTPResponse, any Error> {
        guard let easy else { return .failure(LLMError(.connection, "transfer without a handle")) }
        guard code == CURLE_OK else {
            let detail = errorBuffer.map { String(cString: $0) } ?? ""
            return .failure(LLMError.transport(code, detail: detail, request: request, tooLarge: tooLarge))
        }
        let version: Int
        switch Easy.long(easy, CURLINFO_HTTP_VERSION) {
        case Int(CURL_HTTP_VERSION_1_0), Int(CURL_HTTP_VERSION_1_1): version = 1
        case Int(CURL_HTTP_VERSION_2_0): version = 2
        case Int(CURL_HTTP_VERSION_3): version = 3
        default: version = 0
        }
        let response = HTTPResponse(
            status: Easy.long(easy, CURLINFO_RESPONSE_CODE),
            headers: responseHeaders,
            body: responseBody,
            httpVersion: version,
            newConnections: Easy.long(easy, CURLINFO_NUM_CONNECTS),
            totalTime: .microseconds(Easy.offset(easy, CURLINFO_TOTAL_TIME_T))
        )
        responseBody = []
        return .success(response)
    }

    /// Takes the handle out of `multi` and frees everything libcurl held for this transfer; stops
    /// its idle timer.
    func release(from multi: MultiHandle) {
        idleTimers?.remove(self)
        idleTimers = nil
        if let easy {
            curl_multi_remove_handle(multi, easy)
            curl_easy_cleanup(easy)
            self.easy = nil
        }
        releaseBuffers()
    }

    private func releaseBuffers() {
        if let easy {
            // Only reached from deinit when a handle was never added to a multi handle.
            curl_easy_cleanup(easy)
            self.easy = nil
        }
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        requestBody?.deallocate()
        requestBody = nil
        errorBuffer?.deallocate()
        errorBuffer = nil
    }

    fileprivate func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // The idle clock restarts once the bytes are handed over, so that whoever saw them
        // (the stream's deltas) saw them before the time their idle timeout counts from.
        defer { if let idleTimers { idleTimers.touch(self, now: monotonicNanoseconds()) } }
        if let stream = request.bodyStream {
            if streaming == nil, let easy {
                streaming = stream.accept(status: Easy.long(easy, CURLINFO_RESPONSE_CODE), headers: responseHeaders)
            }
            if streaming == true { return stream.receive(bytes) }
        }
        guard responseBody.count + bytes.count <= request.maxResponseBytes else {
            tooLarge = true
            return false
        }
        responseBody.append(contentsOf: bytes)
        return true
    }

    fileprivate func receiveHeaderLine(_ line: UnsafeRawBufferPointer) {
        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D { end -= 1 }
        let bytes = UnsafeRawBufferPointer(rebasing: line[0..<end])
        if bytes.starts(with: "HTTP/".utf8) {
            // A new response block (after a 1xx): only the final one's fields count.
            responseHeaders = HTTPHeaders()
            return
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = String(decoding: bytes[..<colon], as: UTF8.self).lowercased()
        let value = String(decoding: bytes[(colon + 1)...], as: UTF8.self).trimmingSpaces()
        responseHeaders.add(name, value)
    }
}

private func transferWrite(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?
) -> Int {
    guard let user else { return 0 }
    let n = size * count
    let transfer = Unmanaged<Transfer>.fromOpaque(user).takeUnretainedValue()
    guard n > 0, let data else { return n }
    return transfer.receiveBody(UnsafeRawBufferPointer(start: data, count: n)) ? n : 0
}

private func transferHeader(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?
) -> Int {
    guard let user else { return 0 }
    let n = size * count
    let transfer = Unmanaged<Transfer>.fromOpaque(user).takeUnretainedValue()
    guard n > 0, let data else { return n }
    transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: data, count: n))
    return n
}
