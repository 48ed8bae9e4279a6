/// The states a job moves through; each is a directory of the spool.
public enum SpoolState: String, CaseIterable, Sendable, Comparable {
    case tmp, new, cur, forwarded, done, failed

    /// The states a job can be found in (`tmp/` holds files still being written).
    public static let jobStates: [SpoolState] = [.new, .cur, .forwarded, .done, .failed]

    /// The directories every spool has. `forwarded/` is optional: the Kafka bridge creates it
    /// (`--jobs-out`), and a spool without it simply has no forwarded jobs.
    public static let required: [SpoolState] = [.tmp, .new, .cur, .done, .failed]

    public static func < (a: SpoolState, b: SpoolState) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Errors of spool operations, each with a message that says what to do.
public enum SpoolError: Error, Sendable, CustomStringConvertible {
    /// The directory is not a spool: it lacks some of `tmp new cur done failed`.
    case notASpool(path: String, missing: [String])
    /// A system call failed.
    case system(SystemCallError)
    /// A document is not a valid job.
    case invalidJob(IntakeError)
    /// A job with this id is already in the spool.
    case idExists(id: String, state: SpoolState)
    /// No job with this id.
    case notFound(id: String)
    /// A job cannot be requeued from where it is.
    case cannotRequeue(id: String, reason: String)

    public var description: String {
        switch self {
        case .notASpool(let path, let missing):
            "\(path) is not a spool: missing \(missing.joined(separator: ", ")) (create it with `llmspool init \(path)`)"
        case .system(let e): e.description
        case .invalidJob(let e): "invalid job: \(e.fieldAndMessage)"
        case .idExists(let id, let state): "a job with id \(id) already exists (in \(state.rawValue)/)"
        case .notFound(let id): "no job with id \(id)"
        case .cannotRequeue(let id, let reason): "cannot requeue \(id): \(reason)"
        }
    }
}
