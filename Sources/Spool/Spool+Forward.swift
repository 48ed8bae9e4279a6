import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
public import JSON
#endif

/// Where a job that may have been handed to Kafka is, for a result coming back from it.
public enum ForwardedLookup: Sendable {
    /// The job is in `forwarded/`: a result may settle it.
    case waiting(Job)
    /// The job already has a result in `done/` or `failed/`.
    case settled(SpoolState)
    /// No such job here: the result belongs to another host.
    case unknown
}

extension Spool {
    /// Creates `forwarded/` if the spool lacks it (mode 2770, like the others). The directory is
    /// opened by the next `Spool(path:)`.
    public static func makeForwardedDirectory(at path: String) throws(SpoolError) {
        do throws(SystemCallError) { try makeSpoolDirectory(path + "/" + SpoolState.forwarded.rawValue) } catch {
            throw .system(error)
        }
    }

    /// Holds `new/NAME` for a hand-over to Kafka: opens it, takes its lock (so no worker claims it
    /// meanwhile: a worker that finds it locked moves on), checks it is still that name, reads and
    /// validates it — and leaves it where it is. ``forward(batch:)`` moves it once Kafka has it;
    /// releasing the hold (or the process dying) leaves it waiting in `new/`, to be sent again.
    /// A file that is not a valid job is reported `.invalid`: claim it to dead-letter it.
    public func hold(_ name: String, settleMilliseconds: Int64 = Spool.settleMilliseconds) throws(SpoolError) -> HoldOutcome {
        if name.hasPrefix(".") { return .gone }
        return try wrap { () throws(SystemCallError) -> HoldOutcome in
            let new = dir(.new)
            let fd: FileDescriptor, st: stat
            switch try openLocked(name) {
            case .gone: return .gone
            case .busy: return .busy
            case .symlink: return .invalid
            case .locked(let f, let s): (fd, st) = (f, s)
            }
            var keep = false
            defer { if !keep { Sys.close(fd) } }
            guard st.isRegularFile, Int(st.st_size) <= limits.maxFileBytes else { return .invalid }
            let bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, regularFile: true, path: new.path(name))
            let job: Job
            do throws(IntakeError) { job = try Job.decode(bytes, limits: limits) } catch {
                if error.truncated, Sys.nowMilliseconds() - st.modifiedMilliseconds < settleMilliseconds { return .settling }
                return .invalid
            }
            let id = job.jobId ?? Job.id(fromFileName: name)
            guard JobID.problem(id) == nil else { return .invalid }
            keep = true
            return .held(Hold(id: id, name: name, job: job, bytes: bytes, fd: fd))
        }
    }

    /// Moves held jobs that Kafka has confirmed into `forwarded/`: one rename each (`new/NAME` →
    /// `forwarded/ID.json`, no replace), then one fsync of `forwarded/`, then the holds are
    /// released. A job marked ``Hold/markSettled()`` (its result came back before its delivery
    /// report) is retired instead; one whose id is already in `forwarded/` is
    /// dead-lettered as a clash, like a claim would. On a system error the holds not yet
    /// released are left as they were.
    public func forward(batch holds: [Hold]) throws(SpoolError) {
        guard !holds.isEmpty else { return }
        let fwd = dir(.forwarded)
        try wrap { () throws(SystemCallError) in
            var moved: [Hold] = []
            for hold in holds {
                precondition(!hold.isReleased, "hold \(hold.id) was already released")
                let target = hold.id + ".json"
                if hold.isSettled {
                    try retire(hold.name, from: .new)
                    hold.release()
                    continue
                }
                let renamed: Bool
                do throws(SystemCallError) { renamed = try Sys.renameNoReplace(hold.name, in: dir(.new), to: target, in: fwd) } catch {
                    guard error.errno == .noSuchFileOrDirectory else { throw error }
                    hold.release()  // moved away by something that ignores locks: nothing left to do
                    continue
                }
                if renamed {
                    moved.append(hold)
                } else {
                    let clash = JobID.generate() + ".clash"
                    if try Sys.renameNoReplace(hold.name, in: dir(.new), to: clash, in: dir(.cur)) {
                        _ = try reject(
                            clash, IntakeError(kind: .idClash, message: "job \(hold.id) was already forwarded", field: "jobId"),
                            originalName: hold.name, idIsTaken: true)
                    }
                    hold.release()
                }
            }
            if !moved.isEmpty { try Sys.fsync(fwd) }
            moved.forEach { $0.release() }
        }
    }

    /// Whether a result for `id` may settle a job of this spool: the job is in `forwarded/`.
    /// (A job still held for its hand-over is known only to its holder, which checks its holds first.)
    public func lookForwarded(_ id: String) throws(SpoolError) -> ForwardedLookup {
        guard JobID.isValid(id), hasForwarded else { return .unknown }
        let name = id + ".json"
        return try wrap { () throws(SystemCallError) -> ForwardedLookup in
            for state in [SpoolState.done, .failed] where try Sys.exists(name, in: dir(state)) { return .settled(state) }
            guard let loc = try read(name, in: .forwarded, id: id),
                var job = try? Job.decode(loc.bytes, limits: limits), (job.jobId ?? id) == id
            else { return .unknown }
            job.jobId = id
            return .waiting(job)
        }
    }

    /// Settles a forwarded job with the result that came back: the document is written to
    /// `done/ID.json` or `failed/ID.json` (via `tmp/`, fsynced, no replace, then the directory
    /// fsynced) and only then is `forwarded/ID.json` retired. Returns false, writing nothing, when
    /// the job already has a result. A copy still held in `new/` is retired by ``forward(batch:)``.
    @discardableResult
    public func settleForwarded(_ id: String, document: JSONValue, into state: SpoolState) throws(SpoolError) -> Bool {
        precondition(state == .done || state == .failed, "a result goes to done/ or failed/")
        guard JobID.isValid(id) else { throw .notFound(id: id) }
        let name = id + ".json", target = dir(state)
        return try wrap { () throws(SystemCallError) -> Bool in
            let (tmpName, fd) = try writeTemporary(document.serialized(), base: id, suffix: state.rawValue, sync: true)
            Sys.close(fd)
            let other: SpoolState = state == .done ? .failed : .done
            guard try !Sys.exists(name, in: dir(other)),
                try Sys.renameNoReplace(tmpName, in: dir(.tmp), to: name, in: target)
            else {
                try? Sys.unlink(tmpName, in: dir(.tmp))
                return false
            }
            try Sys.fsync(target)
            if hasForwarded { try retire(name, from: .forwarded) }
            return true
        }
    }

    /// Retires `forwarded/ID.json` if the job has a result in `done/` or `failed/` (what recovery
    /// does for every such copy), for a holder whose job was settled while it was being moved.
    public func dropSettledForwarded(_ id: String) throws(SpoolError) {
        guard JobID.isValid(id), hasForwarded else { return }
        let name = id + ".json"
        try wrap { () throws(SystemCallError) in
            if try hasResult(name) { try retire(name, from: .forwarded) }
        }
    }

    /// Whether `done/NAME` or `failed/NAME` exists.
    func hasResult(_ name: String) throws(SystemCallError) -> Bool {
        if try Sys.exists(name, in: dir(.done)) { return true }
        return try Sys.exists(name, in: dir(.failed))
    }

    /// Recovery's share of `forwarded/`: a copy whose result is already in `done/` or `failed/`
    /// is left over from a crash between the two steps of ``settleForwarded(_:document:into:)``.
    func sweepForwarded(_ report: inout RecoveryReport) throws(SystemCallError) {
        guard hasForwarded else { return }
        for name in try Sys.list(dir(.forwarded)) where !name.hasPrefix(".") && name.hasSuffix(".json") {
            guard try hasResult(name) else { continue }
            try retire(name, from: .forwarded)
            report.alreadySettled.append(Job.id(fromFileName: name))
        }
    }
}

/// A job in `new/` held (locked, not moved) by this process while it is handed to Kafka.
public final class Hold: Sendable {
    public let id: String
    /// The file's name in `new/`.
    public let name: String
    public let job: Job
    /// The file's bytes as read.
    public let bytes: [UInt8]
    let fd: FileDescriptor
    private let released = Atomic<Bool>(false)

    init(id: String, name: String, job: Job, bytes: [UInt8], fd: FileDescriptor) {
        self.id = id
        self.name = name
        self.job = job
        self.bytes = bytes
        self.fd = fd
    }

    private let settled = Atomic<Bool>(false)

    /// Notes that the job's result is already in `done/` or `failed/`: ``Spool/forward(batch:)``
    /// retires the held copy rather than moving it. (A result that lands unnoticed is found by
    /// recovery, which retires the `forwarded/` copy.)
    public func markSettled() { settled.store(true, ordering: .releasing) }

    public var isSettled: Bool { settled.load(ordering: .acquiring) }

    /// Closes the descriptor, which drops the lock; the file stays in `new/`. Idempotent.
    public func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { Sys.close(fd) }
    }

    public var isReleased: Bool { released.load(ordering: .acquiring) }

    deinit { release() }
}

/// What happened when trying to hold one file of `new/`.
public enum HoldOutcome: Sendable {
    case held(Hold)
    /// Another process holds or is claiming it.
    case busy
    /// The file is gone (claimed meanwhile) or was ignored (a dot name).
    case gone
    /// The file is incomplete and was modified moments ago: probably still being written.
    case settling
    /// Not a valid job: ``Spool/claim(_:settleMilliseconds:)`` dead-letters it with the reason.
    case invalid
}
