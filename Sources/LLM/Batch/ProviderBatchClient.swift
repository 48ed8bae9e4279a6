public import JSON

/// A provider batch as `GET {base}/batches/{id}` describes it (the fields llmspool reads).
public struct ProviderBatch: Sendable, Equatable {
    public var id: String
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`, `cancelling`, `cancelled`.
    public var status: String
    public var inputFileID: String?
    public var outputFileID: String?
    public var errorFileID: String?
    /// The batch's own `errors.data[].message`, for a failed batch.
    public var errors: [String]

    public init(
        id: String, status: String, inputFileID: String? = nil, outputFileID: String? = nil, errorFileID: String? = nil,
        errors: [String] = []
    ) {
        self.id = id
        self.status = status
        self.inputFileID = inputFileID
        self.outputFileID = outputFileID
        self.errorFileID = errorFileID
        self.errors = errors
    }

    /// Whether the provider will change the batch no more.
    public var isFinal: Bool { ["completed", "failed", "expired", "cancelled"].contains(status) }

    /// Reads a batch object; nil when it is not one (no string `id` or `status`).
    public static func parse(_ v: JSONValue) -> ProviderBatch? {
        guard let id = v["id"]?.stringValue, !id.isEmpty, id.utf8.count <= 256, let status = v["status"]?.stringValue else { return nil }
        let errors = (v["errors"]?["data"]?.arrayValue ?? []).prefix(10).compactMap { $0["message"]?.stringValue }.map { String($0.prefix(300)) }
        return ProviderBatch(
            id: id, status: status, inputFileID: v["input_file_id"]?.stringValue, outputFileID: v["output_file_id"]?.stringValue,
            errorFileID: v["error_file_id"]?.stringValue, errors: errors)
    }
}

/// A client of an OpenAI-compatible Batch API: `POST {base}/files` (multipart, `purpose=batch`),
/// `POST {base}/batches`, `GET {base}/batches/{id}`, `GET {base}/batches`,
/// `POST {base}/batches/{id}/cancel` and `GET {base}/files/{id}/content`, over the same libcurl
/// engine as ``ChatClient``. One attempt per call: the caller decides when to try again.
public struct ProviderBatchClient: Sendable {
    public let configuration: ChatClient.Configuration
    public let engine: CurlEngine

    public init(configuration: ChatClient.Configuration, engine: CurlEngine) {
        self.configuration = configuration
        self.engine = engine
    }

    var base: String {
        var b = configuration.baseURL
        while b.hasSuffix("/") { b.removeLast() }
        return b
    }

    var secrets: [String] { configuration.apiKey.map { [$0.value] } ?? [] }

    func request(
        _ method: String, _ path: String, body: [UInt8] = [], contentType: String? = "application/json",
        maxResponseBytes: Int = 1 << 20
    ) -> HTTPRequest {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if let contentType, !body.isEmpty || method == "POST" { headers.add("Content-Type", contentType) }
        if let key = configuration.apiKey { headers.add("Authorization", "Bearer \(key.value)") }
        for field in configuration.headers { headers.set(field.name, field.value) }
        return HTTPRequest(
            method: method, url: base + path, headers: headers, body: body, connectTimeout: configuration.connectTimeout,
            timeout: configuration.timeout, maxResponseBytes: maxResponseBytes)
    }

    /// Sends one request; a non-2xx answer is an ``LLMError/Kind/http`` error with the server's message.
    func send(_ r: HTTPRequest) async throws -> HTTPResponse {
        let response = try await engine.perform(r)
        guard response.isSuccess else {
            let doc = try? JSONParser.parse(response.body)
            let message = ChatCompletion.errorMessage(doc, body: response.body, secrets: secrets)
            throw LLMError(
                .http, "\(r.method) \(redactedURL(r.url)): HTTP \(response.status)" + (message.map { ": \($0)" } ?? ""),
                httpStatus: response.status, retryAfter: RetryAfter.parse(response.headers), requestID: response.headers["x-request-id"])
        }
        return response
    }

    func object(_ r: HTTPRequest) async throws -> JSONValue {
        let response = try await send(r)
        do { return try JSONParser.parse(response.body) } catch {
            throw LLMError(.malformedResponse, "\(r.method) \(redactedURL(r.url)): the answer is not JSON: \(error)", httpStatus: response.status)
        }
    }

    func batch(_ r: HTTPRequest) async throws -> ProviderBatch {
        let doc = try await object(r)
        guard let b = ProviderBatch.parse(doc) else {
            throw LLMError(.malformedResponse, "\(r.method) \(redactedURL(r.url)): the answer is not a batch object")
        }
        return b
    }

    /// Uploads a batch input file (`purpose=batch`) named `filename`; returns the file's id.
    /// - Throws: ``LLMError``, or `CancellationError`.
    public func uploadFile(named filename: String, content: [UInt8]) async throws -> String {
        let boundary = "llmspool-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        var body: [UInt8] = []
        body.reserveCapacity(content.count + 512)
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n".utf8)
        body += Array(
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\nContent-Type: application/jsonl\r\n\r\n".utf8)
        body += content
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        let r = request("POST", "/files", body: body, contentType: "multipart/form-data; boundary=\(boundary)")
        let doc = try await object(r)
        guard let id = doc["id"]?.stringValue, !id.isEmpty, id.utf8.count <= 256 else {
            throw LLMError(.malformedResponse, "POST \(redactedURL(r.url)): the answer has no file id")
        }
        return id
    }

    /// Creates a batch of `/v1/chat/completions` requests from an uploaded file.
    public func createBatch(inputFileID: String, completionWindow: String, metadata: [String: String]) async throws -> ProviderBatch {
        var meta = JSONObject()
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { meta[k] = .string(v) }
        let doc: JSONValue = .object([
            "input_file_id": .string(inputFileID), "endpoint": .string("/v1/chat/completions"),
            "completion_window": .string(completionWindow), "metadata": .object(meta),
        ])
        return try await batch(request("POST", "/batches", body: doc.serialized()))
    }

    public func retrieveBatch(_ id: String) async throws -> ProviderBatch {
        try await batch(request("GET", "/batches/" + Self.pathSegment(id)))
    }

    public func cancelBatch(_ id: String) async throws -> ProviderBatch {
        try await batch(request("POST", "/batches/" + Self.pathSegment(id) + "/cancel"))
    }

    /// One page of `GET {base}/batches` (newest first): the batches and whether there are more after them.
    public func listBatches(after: String? = nil, limit: Int = 100) async throws -> (batches: [ProviderBatch], hasMore: Bool) {
        var path = "/batches?limit=\(limit)"
        if let after { path += "&after=" + Self.pathSegment(after) }
        let doc = try await object(request("GET", path, maxResponseBytes: 8 << 20))
        let data = doc["data"]?.arrayValue ?? []
        return (data.compactMap(ProviderBatch.parse), doc["has_more"]?.boolValue ?? false)
    }

    /// The content of a file (an output or error file), refused above `maxBytes`.
    public func fileContent(_ id: String, maxBytes: Int) async throws -> [UInt8] {
        let r = request("GET", "/files/" + Self.pathSegment(id) + "/content", maxResponseBytes: maxBytes)
        return try await send(r).body
    }

    /// Reads one output line's `response` as a chat completion, as ``ChatClient`` reads a live
    /// answer: a non-2xx `status` is an ``LLMError/Kind/http`` error with the body's message.
    public func completion(status: Int, body: JSONValue) throws(LLMError) -> ChatCompletion {
        try ChatCompletion.parse(HTTPResponse(status: status, body: body.serialized()), secrets: secrets)
    }

    /// An id as one path segment: bytes outside `[A-Za-z0-9._-]` percent-encoded (an id comes from the provider).
    static func pathSegment(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        return out
    }
}

/// One line of a provider batch's output or error file.
public struct ProviderBatchLine: Sendable, Equatable {
    public var customID: String
    /// `response.status_code` and `response.body`, when the request got an answer.
    public var statusCode: Int?
    public var body: JSONValue?
    public var requestID: String?
    /// `error.message` (or `error.code`), when the request got none.
    public var error: String?

    /// Reads one line; nil with the reason when it is not an output line.
    public static func parse(_ line: ArraySlice<UInt8>) -> Result<ProviderBatchLine, LineError> {
        let doc: JSONValue
        do { doc = try JSONParser.parse(Array(line)) } catch { return .failure(LineError(message: "not JSON: \(error)")) }
        guard let custom = doc["custom_id"]?.stringValue else { return .failure(LineError(message: "no string custom_id")) }
        var l = ProviderBatchLine(customID: custom)
        if let r = doc["response"], case .object = r {
            l.statusCode = r["status_code"]?.intValue
            l.body = r["body"]
            l.requestID = r["request_id"]?.stringValue
        }
        if let e = doc["error"], e != .null {
            l.error = String((e["message"]?.stringValue ?? e["code"]?.stringValue ?? e.stringValue ?? "an error").prefix(300))
        }
        return .success(l)
    }

    public struct LineError: Error, Sendable, Equatable { public var message: String }

    /// Splits JSONL into lines (LF or CRLF), skipping blank ones.
    public static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).map { l in
            l.last == UInt8(ascii: "\r") ? l.dropLast() : l
        }.filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x09 } }
    }

    init(customID: String) { self.customID = customID }
}
