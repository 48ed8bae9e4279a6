import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// A job this process owns: its file is in `cur/ID.json`.
///
/// A claim is alive while its owner is: recovery gives back only claims whose owner is gone.
/// A claim proves its owner alive in one of two ways:
/// - **parked** (the usual): the marker `cur/.ID.json.lease` names the claiming `Spool`'s lease,
///   whose `flock` that object holds for its whole life. The claim holds no descriptor, so a
///   process can keep as many claims as it likes with one descriptor between them.
/// - **held**: the claim keeps the job file's descriptor, locked with `flock` (when it could not
///   park, and for claims recovery makes to dead-letter a job).
///
/// Either way the kernel drops the lock when the process dies, however it dies. Releasing a
/// `Claim` without finishing it (or the process dying) leaves the job in `cur/` for recovery.
public final class Claim: Sendable {
    public let id: String
    public let job: Job
    /// The job file's bytes as claimed.
    public let bytes: [UInt8]
    /// When the claim was made (RFC 3339).
    public let claimedAt: String
    let hold: Hold
    private let released = Atomic<Bool>(false)

    enum Hold: Sendable {
        /// The job file's descriptor, locked.
        case descriptor(FileDescriptor)
        /// Parked under the spool's lease: the marker `cur/.ID.json.lease` names it.
        case lease(Lease, Spool)
        /// Held by a provider batch's durable record: the marker `cur/.ID.json.lease` names
        /// `provider-batch:RECORD` (see Spool+ProviderBatch.swift). It outlives the process.
        case providerBatch(record: String, Spool)
    }

    convenience init(id: String, job: Job, bytes: [UInt8], fd: FileDescriptor) {
        self.init(id: id, job: job, bytes: bytes, hold: .descriptor(fd))
    }

    init(id: String, job: Job, bytes: [UInt8], hold: Hold) {
        self.id = id
        self.job = job
        self.bytes = bytes
        self.hold = hold
        claimedAt = Timestamp.now()
    }

    /// Drops what proves the claim alive: closes the descriptor (dropping its lock), or removes
    /// the marker. Called once the job file has left `cur/`, or to abandon the claim. Idempotent.
    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        switch hold {
        case .descriptor(let fd): Sys.close(fd)
        case .lease(_, let spool): spool.unpark(id + ".json")
        case .providerBatch(let record, let spool): spool.unmark(id + ".json", record: record)
        }
    }

    public var isReleased: Bool { released.load(ordering: .acquiring) }

    /// Whether the claim is parked under its spool's lease (it holds no descriptor).
    public var isParked: Bool {
        if case .lease = hold { return true }
        return false
    }

    deinit {
        // A provider batch's hold is durable: dropping the object must not give the job up.
        if case .providerBatch = hold { return }
        release()
    }
}

/// What happened when trying to claim one file of `new/`.
public enum ClaimOutcome: Sendable {
    /// The job is ours.
    case claimed(Claim)
    /// The file was not a valid job; it is now in `failed/KEY.json` (+ `KEY.original`).
    case rejected(key: String, IntakeError)
    /// Another process holds the file (it is claiming it right now).
    case busy
    /// The file is gone (another process claimed it) or was ignored (a dot name).
    case gone
    /// The file is incomplete and was modified moments ago: probably still being written.
    case settling
}

extension Spool {
    /// How long a file that ends early is left alone, in case its writer is still at it (2 s).
    public static let settleMilliseconds: Int64 = 2000

    /// Claims `new/NAME`: lock, read, rename to `cur/`, validate. A valid job ends as
    /// `cur/ID.json` and is returned; anything else is dead-lettered with its exact bytes.
    ///
    /// The claim is parked under this object's lease (no descriptor kept; see ``Claim``) unless
    /// `park` is false or it cannot park, in which case it keeps its file's locked descriptor.
    public func claim(_ name: String, settleMilliseconds: Int64 = Spool.settleMilliseconds, park: Bool = true) throws(SpoolError) -> ClaimOutcome {
        if name.hasPrefix(".") { return .gone }
        return try wrap { () throws(SystemCallError) -> ClaimOutcome in
            let new = dir(.new), cur = dir(.cur)
            let fd: FileDescriptor, st: stat
            switch try openLocked(name) {
            case .gone: return .gone
            case .busy: return .busy
            case .symlink:
                guard try Sys.renameNoReplace(name, in: new, to: name, in: cur) else { return .busy }
                return try reject(name, IntakeError(kind: .notRegularFile, message: "\(new.path(name)) is a symbolic link"))
            case .locked(let f, let s): (fd, st) = (f, s)
            }
            var keep = false
            defer { if !keep { Sys.close(fd) } }

            var bytes: [UInt8] = []
            var decoded: Result<Job, IntakeError>
            if !st.isRegularFile {
                decoded = .failure(IntakeError(kind: .notRegularFile, message: "\(new.path(name)) is not a regular file"))
            } else if Int(st.st_size) > limits.maxFileBytes {
                decoded = .failure(IntakeError(kind: .tooLarge, message: "file is \(st.st_size) bytes; the limit is \(limits.maxFileBytes)"))
            } else {
                bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, regularFile: true, path: new.path(name))
                decoded = Result { () throws(IntakeError) in try Job.decode(bytes, limits: limits) }
                if case .failure(let e) = decoded, e.truncated,
                    Sys.nowMilliseconds() - st.modifiedMilliseconds < settleMilliseconds
                {
                    return .settling
                }
            }

            // Take it out of new/. A same-named file already in cur/ is a clash to report, not to overwrite.
            var curName = name
            do throws(SystemCallError) {
                if try !Sys.renameNoReplace(name, in: new, to: curName, in: cur) {
                    curName = JobID.generate() + ".clash"
                    guard try Sys.renameNoReplace(name, in: new, to: curName, in: cur) else { return .gone }
                }
            } catch  where error.errno == .noSuchFileOrDirectory {
                return .gone  // moved away by something that does not take our lock
            }
            guard let moved = try Sys.stat(curName, in: cur), moved.sameFile(as: st) else { return .gone }

            let job: Job
            switch decoded {
            case .failure(let e): return try reject(curName, e, originalName: name)
            case .success(let j): job = j
            }
            let id = job.jobId ?? Job.id(fromFileName: name)
            if let problem = JobID.problem(id) {
                return try reject(
                    curName,
                    IntakeError(
                        kind: .badId, message: "the document has no jobId and the file name \"\(name)\" is not a valid id: it \(problem)",
                        field: "jobId"), originalName: name)
            }
            let canonical = id + ".json"
            if curName != canonical {
                guard try Sys.renameNoReplace(curName, in: cur, to: canonical, in: cur) else {
                    return try reject(
                        curName,
                        IntakeError(
                            kind: .idClash, message: "job \(id) is already in cur/ (being worked on)", field: "jobId"),
                        originalName: name, idIsTaken: true)
                }
                curName = canonical
            }
            for state in [SpoolState.done, .failed] {
                guard try Sys.exists(canonical, in: dir(state)) else { continue }
                return try reject(
                    curName,
                    IntakeError(
                        kind: .idClash, message: "job \(id) already exists in \(state.rawValue)/", field: "jobId"),
                    originalName: name, idIsTaken: true)
            }
            // Park: the marker first, while the descriptor still holds the lock, then let it go.
            if park, let lease = self.park(canonical) {
                return .claimed(Claim(id: id, job: job, bytes: bytes, hold: .lease(lease, self)))
            }
            keep = true
            return .claimed(Claim(id: id, job: job, bytes: bytes, fd: fd))
        }
    }

    /// Opens `new/NAME` (not following a symbolic link) and takes its lock without waiting, then
    /// checks the locked file is still the one at that name (a claimer may have moved it between
    /// the open and the lock). The caller owns the descriptor of `.locked`.
    func openLocked(_ name: String) throws(SystemCallError) -> LockedOpen {
        let new = dir(.new)
        let fd: FileDescriptor
        do throws(SystemCallError) { fd = try Sys.openForReading(name, in: new) } catch {
            switch error.errno {
            case .noSuchFileOrDirectory: return .gone
            case .tooManySymbolicLinkLevels: return .symlink  // O_NOFOLLOW on a symlink
            default: throw error
            }
        }
        var keep = false
        defer { if !keep { Sys.close(fd) } }
        guard try Sys.tryLock(fd, path: new.path(name)) else { return .busy }
        let st = try Sys.stat(fd, path: new.path(name))
        guard let here = try Sys.stat(name, in: new), here.sameFile(as: st) else { return .gone }
        keep = true
        return .locked(fd, st)
    }

    enum LockedOpen {
        case locked(FileDescriptor, stat)
        case busy, gone, symlink
    }

    /// Claims the first claimable file among `names` (in the order given).
    public func claimFirst(of names: some Sequence<String>) throws(SpoolError) -> Claim? {
        for name in names {
            if case .claimed(let c) = try claim(name) { return c }
        }
        return nil
    }

    /// Lists `new/`, oldest name first (UUIDv7 ids sort by time).
    public func waiting() throws(SpoolError) -> [String] {
        try names(in: .new).sorted()
    }

    /// How many files in `new/` are named `ID.json` with an id that carries `tag`
    /// (``JobID/generate(tag:)``), counting no further than `limit`. Only the names are read:
    /// one listing of `new/`, no file opened. Files with other names are not counted.
    public func countWaiting(tag: UInt32, upTo limit: Int = .max) throws(SpoolError) -> Int {
        var n = 0
        try wrap { () throws(SystemCallError) in
            try Sys.forEachName(in: dir(.new)) { name in
                if JobID.tag(utf8: name) == tag { n += 1 }
                return n < limit
            }
        }
        return n
    }

    /// Moves a bad file from `cur/` to `failed/KEY.original` and writes `failed/KEY.json` saying why.
    /// The caller still holds the file's lock, so recovery does not mistake the pair for a crash.
    /// The key is the job's id when it has a usable one, else a fresh UUIDv7.
    func reject(
        _ curName: String, _ error: IntakeError, originalName: String? = nil, idIsTaken: Bool = false
    ) throws(SystemCallError) -> ClaimOutcome {
        let cur = dir(.cur), failed = dir(.failed)
        let size = try Sys.stat(curName, in: cur).map { Int($0.st_size) } ?? 0
        let named = Job.id(fromFileName: curName)
        var key = !idIsTaken && JobID.isValid(named) && !curName.hasSuffix(".clash") ? named : JobID.generate()
        while true {
            // Not a key whose id is done: each id lives in one state (a bad file named like it gets a fresh key).
            if try !Sys.exists(key + ".json", in: failed), try !Sys.exists(key + ".json", in: dir(.done)),
                try Sys.renameNoReplace(curName, in: cur, to: key + ".original", in: failed)
            {
                break
            }
            key = JobID.generate()
        }
        try writeRejection(key: key, error, originalName: originalName ?? curName, size: size)
        return .rejected(key: key, error)
    }

    /// Writes `failed/KEY.json` for the bytes already at `failed/KEY.original`.
    func writeRejection(key: String, _ error: IntakeError, originalName: String, size: Int) throws(SystemCallError) {
        let failed = dir(.failed)
        var message = error.message
        if let field = error.field, !message.hasPrefix(field) { message = "\(field): \(message)" }
        let original: JSONValue = .object([
            "file": .string(key + ".original"), "name": .string(originalName), "size": .integer(size),
        ])
        let doc = Documents.deadLetter(
            id: nil, error: Failure(kind: error.kind.rawValue, message: message),
            history: [Documents.event("rejected", message)], job: nil, original: original)
        let (tmpName, tfd) = try writeTemporary(doc.serialized(), base: key, suffix: "dead", sync: true)
        Sys.close(tfd)
        guard try Sys.renameNoReplace(tmpName, in: dir(.tmp), to: key + ".json", in: failed) else {
            try? Sys.unlink(tmpName, in: dir(.tmp))
            throw SystemCallError(call: "renameat2", path: failed.path(key + ".json"), errno: .fileExists)
        }
        try Sys.fsync(failed)
    }
}

extension Spool {
    /// Reads `new/NAME` without claiming it, to learn its tenant, size and age before scheduling.
    /// Nil when the file is gone or ignored; a failure when it is not a valid job (yet).
    public func peek(_ name: String) -> (job: Result<Job, IntakeError>, modifiedMilliseconds: Int64)? {
        if name.hasPrefix(".") { return nil }
        let new = dir(.new)
        guard let fd = try? Sys.openForReading(name, in: new) else { return nil }
        defer { Sys.close(fd) }
        guard let st = try? Sys.stat(fd, path: new.path(name)),
            let bytes = try? Sys.readAll(fd, limit: limits.maxFileBytes, path: new.path(name))
        else { return nil }
        return (Result { () throws(IntakeError) in try Job.decode(bytes, limits: limits) }, st.modifiedMilliseconds)
    }
}
