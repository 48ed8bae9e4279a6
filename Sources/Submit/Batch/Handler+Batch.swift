import Basics
import JSON
import Spool

extension Handler {
    /// The Batch API's routes (docs/batch.md): request in, the OpenAI-shaped object out.
    func batchAPI(_ route: Route, _ request: Request, body: Body, store: BatchStore) throws(Problem) -> Response {
        switch route {
        case .uploadFile:
            let bytes = try bodyBytes(body, limit: store.maxFileBytes)
            guard let type = MediaType(request.contentType ?? ""), type.essence == "multipart/form-data", let boundary = type.parameters["boundary"] else {
                throw Problem(
                    .unsupportedMediaType, "unsupported-media-type", "Upload a file as multipart/form-data.",
                    detail: "send the fields purpose and file as multipart/form-data", field: "Content-Type")
            }
            let parts: [FormPart]
            do { parts = try Multipart.parse(bytes, boundary: boundary) } catch {
                throw Problem(.badRequest, "invalid-multipart", "The form is not valid.", detail: error.description)
            }
            guard let file = parts.first(where: { $0.name == "file" }) else {
                throw Problem(.badRequest, "invalid-request", "The form has no file.", detail: "add a part named file", field: "file")
            }
            guard let purpose = parts.first(where: { $0.name == "purpose" }) else {
                throw Problem(.badRequest, "invalid-request", "The form has no purpose.", detail: "add a part named purpose (batch)", field: "purpose")
            }
            let object = try store.createFile(
                Array(file.data), filename: file.filename ?? "upload.jsonl",
                purpose: String(decoding: purpose.data, as: UTF8.self).trimmingSpaces())
            return .json(200, object)
        case .file(let id): return .json(200, try store.fileObject(id))
        case .fileContent(let id):
            return Response(status: 200, headers: [("Content-Type", "application/octet-stream")], body: try store.fileContent(id))
        case .deleteFile(let id): return .json(200, try store.deleteFile(id))
        case .createBatch:
            let bytes = try bodyBytes(body, limit: configuration.maxBodyBytes)
            guard case .object(let params)? = try? JSONParser.parse(bytes) else {
                throw Problem(
                    .badRequest, "invalid-json", "The request body is not a JSON object.",
                    detail: "send {\"input_file_id\", \"endpoint\", \"completion_window\"}")
            }
            return .json(200, try store.createBatch(params))
        case .batch(let id): return .json(200, try store.batch(id))
        case .listBatches:
            var limit = 20
            if let raw = request.queryValue("limit") {
                guard let n = Int(raw), (1...100).contains(n) else {
                    throw Problem(.badRequest, "invalid-query", "The query is not valid.", detail: "limit must be 1 to 100", field: "limit")
                }
                limit = n
            }
            let after = request.queryValue("after")
            if let after, !JobID.isValid(after) {
                throw Problem(.badRequest, "invalid-query", "The query is not valid.", detail: "after must be a batch id", field: "after")
            }
            return .json(200, try store.list(after: after, limit: limit))
        case .cancelBatch(let id): return .json(200, try store.cancel(id))
        default: throw Handler.serverProblem("not a Batch API route: \(route)")
        }
    }
}
