import JSON
import Spool

/// The durable record of one provider batch: `SPOOL/.provider-batches/ID`, rewritten whole
/// (tmp, fsync, rename, fsync of the directory) at each step, so that a worker that dies at any
/// point finds what it had done and what the provider knows. See docs/batch.md, "Provider batches".
struct ProviderBatchRecord: Sendable, Equatable {
    /// How far the batch got. Each state is written before the step that depends on it.
    enum State: String, Sendable {
        /// Written before any job is claimed for it: jobs whose markers name it are being taken.
        case gathering
        /// Its jobs are held (listed in `jobs`); the input file is not uploaded (or its id is not known).
        case claimed
        /// The provider has the input file (`inputFileId`); no batch was asked for yet.
        case uploaded
        /// A batch was asked for and its id may not be known: look it up by input file before asking again.
        case submitting
        /// The provider's batch id is known (`batchId`): poll it.
        case submitted
    }

    var id: String
    var model: String
    var state: State
    var createdAt: String
    var jobs: [String] = []
    var inputFileID: String?
    var batchID: String?
    var completionWindow: String

    static let area = Spool.providerBatchArea
    /// Largest record read back (64 MiB: 50,000 ids and then some).
    static let maxBytes = 64 << 20

    /// The name uploaded for the input file (findable at the provider by it).
    var fileName: String { "llmspool-\(id).jsonl" }

    func json() -> JSONValue {
        var o: JSONObject = [
            "id": .string(id), "model": .string(model), "state": .string(state.rawValue), "createdAt": .string(createdAt),
            "completionWindow": .string(completionWindow), "updatedAt": .string(Timestamp.now()),
        ]
        o["inputFileId"] = inputFileID.map(JSONValue.string) ?? .null
        o["batchId"] = batchID.map(JSONValue.string) ?? .null
        o["jobs"] = .array(jobs.map(JSONValue.string))
        return .object(o)
    }

    static func parse(_ bytes: [UInt8]) -> ProviderBatchRecord? {
        guard let v = try? JSONParser.parse(bytes, limits: .init(maxDepth: 8, maxMembers: 100, maxValues: 10_000_000)),
            let id = v["id"]?.stringValue, let model = v["model"]?.stringValue,
            let state = v["state"]?.stringValue.flatMap(State.init(rawValue:)), let created = v["createdAt"]?.stringValue
        else { return nil }
        var r = ProviderBatchRecord(
            id: id, model: model, state: state, createdAt: created,
            completionWindow: v["completionWindow"]?.stringValue ?? "24h")
        r.jobs = (v["jobs"]?.arrayValue ?? []).compactMap(\.stringValue)
        r.inputFileID = v["inputFileId"]?.stringValue
        r.batchID = v["batchId"]?.stringValue
        return r
    }

    /// Writes the record durably (replacing the last version).
    func save(_ spool: Spool) throws(SpoolError) {
        try spool.writeRecord(id, in: Self.area, bytes: json().serialized(), replacing: true)
    }
}
