public import JSON
public import Spool

/// Turns a POST body into a job for the caller: pure, so it is unit-tested and fuzzed.
public enum Submission {
    /// Fields a client may not set: the server assigns them.
    static let serverFields = ["jobId", "submittedAt", "attempts", "history"]

    /// Parses `body` by its media type (`application/json`: a job document; `text/plain`: the
    /// prompt), stamps the caller's identity, and validates the job as the spool will.
    public static func job(body: [UInt8], contentType: String?, identity: Identity, limits: Limits = .default) throws(Problem) -> Job {
        guard let raw = contentType else {
            throw Problem(
                .unsupportedMediaType, "unsupported-media-type", "Unsupported media type.",
                detail: "send Content-Type: application/json (a job document) or text/plain (the prompt)",
                field: "Content-Type", headers: ["Accept-Post": "application/json, text/plain"])
        }
        guard let type = MediaType(raw) else {
            throw Problem(
                .unsupportedMediaType, "unsupported-media-type", "Unsupported media type.",
                detail: "Content-Type \"\(raw.prefix(100))\" is not a media type", field: "Content-Type",
                headers: ["Accept-Post": "application/json, text/plain"])
        }
        if let charset = type.parameters["charset"]?.lowercased(), charset != "utf-8", charset != "utf8", charset != "us-ascii" {
            throw Problem(
                .unsupportedMediaType, "unsupported-media-type", "Unsupported character set.",
                detail: "only UTF-8 is accepted, not \(charset.prefix(40))", field: "Content-Type",
                headers: ["Accept-Post": "application/json, text/plain"])
        }
        var job: Job
        switch type.essence {
        case "application/json":
            let value: JSONValue
            do { value = try JSONParser.parse(body) } catch {
                throw Problem(
                    .badRequest, "invalid-json", "The body is not valid JSON.",
                    detail: body.isEmpty ? "the body is empty" : error.description, field: "")
            }
            guard case .object(let object) = value else {
                throw Problem(
                    .badRequest, "invalid-job", "The job is not valid.",
                    detail: "a job must be a JSON object, found \(value.typeName)", field: "")
            }
            for field in serverFields where object[field] != nil {
                throw Problem(
                    .badRequest, "invalid-job", "The job is not valid.",
                    detail: "\(field) is assigned by the server and may not be sent", field: field)
            }
            for (field, mine) in [("userId", identity.userId as String?), ("tenantId", identity.tenantId)] {
                guard let given = object[field] else { continue }
                if case .null = given { continue }
                if given.stringValue != mine {
                    throw Problem(
                        .badRequest, "invalid-job", "The job is not valid.",
                        detail: "\(field) comes from your credentials; leave it out", field: field)
                }
            }
            do { job = try Job(json: value, limits: limits) } catch {
                throw Problem(.badRequest, "invalid-job", "The job is not valid.", detail: error.description, field: error.field)
            }
        case "text/plain":
            guard let prompt = String(validating: body, as: UTF8.self) else {
                throw Problem(.badRequest, "invalid-job", "The prompt is not valid UTF-8.", detail: "the text/plain body must be UTF-8", field: "prompt")
            }
            do { job = try Job(json: .object(["prompt": .string(prompt)]), limits: limits) } catch {
                throw Problem(.badRequest, "invalid-job", "The job is not valid.", detail: error.description, field: error.field)
            }
        default:
            throw Problem(
                .unsupportedMediaType, "unsupported-media-type", "Unsupported media type.",
                detail: "\(type.essence.prefix(100)) is not accepted; send application/json or text/plain",
                field: "Content-Type", headers: ["Accept-Post": "application/json, text/plain"])
        }
        job.userId = identity.userId
        job.tenantId = identity.tenantId
        return job
    }
}

/// The public view of a job: what GET and the event stream show its owner.
public enum JobView {
    /// The status a client sees for a job in `state` with stored `document`.
    public static func status(state: SpoolState, document: JSONValue?) -> String {
        switch state {
        case .tmp, .new: "queued"
        case .cur: "running"
        case .forwarded: "forwarded"
        case .done: "done"
        case .failed: document?["error"]?["kind"]?.stringValue == "cancelled" ? "cancelled" : "failed"
        }
    }

    /// `{jobId, status, submittedAt, …}`; a finished job adds its `result` (`done/` document)
    /// or `error`.
    public static func json(id: String, state: SpoolState, document: JSONValue, base: String) -> JSONValue {
        let status = status(state: state, document: document)
        var o: JSONObject = ["jobId": .string(id), "status": .string(status)]
        let job = (state == .done || state == .failed) ? document["job"] : document
        for key in ["userId", "tenantId", "submittedAt"] {
            if let v = document[key] ?? job?[key] { o[key] = v }
        }
        if let attempts = job?["attempts"] { o["attempts"] = attempts }
        switch state {
        case .done:
            for key in ["response", "model", "finishReason", "usage", "startedAt", "finishedAt"] {
                if let v = document[key] { o[key] = v }
            }
            o["result"] = document
        case .failed:
            if let e = document["error"] { o["error"] = e }
            if let at = document["failedAt"] { o["finishedAt"] = at }
        default:
            break
        }
        o["links"] = .object(["self": .string(base + "/" + id), "events": .string(base + "/" + id + "/events")])
        return .object(o)
    }
}
