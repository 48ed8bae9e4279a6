#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// What one recovery pass did.
public struct RecoveryReport: Sendable, Equatable {
    /// Dead claims put back into `new/` (ids or file names).
    public var givenBack: [String] = []
    /// Dead claims whose result was already written: the stale `cur/` copy was removed.
    public var alreadySettled: [String] = []
    /// Dead claims dead-lettered because they were abandoned too often.
    public var deadLettered: [String] = []
    /// Live claims left alone.
    public var live = 0
    /// `failed/KEY.original` files whose `KEY.json` was missing and has been rewritten.
    public var repairedRejections = 0
    /// Leftovers removed from `tmp/`.
    public var removedTemporaries = 0

    public init() {}
}

extension Spool {
    /// Files in `tmp/` older than this are a writer's leftovers (36 hours, as in Maildir).
    public static let staleTemporaryMilliseconds: Int64 = 36 * 3600 * 1000

    /// One pass of crash recovery, safe to run from any number of processes at once:
    /// - a `cur/` file whose lock can be taken belongs to a dead process: if its result is in
    ///   `done/` or `failed/` the stale copy goes, else the job goes back to `new/` with `attempts` raised;
    /// - a `failed/KEY.original` without its `KEY.json` gets its dead letter rewritten;
    /// - `tmp/` loses retired files and writers' leftovers older than 36 hours.
    /// A live claim (its lock is held) is never touched.
    public func recover() throws(SpoolError) -> RecoveryReport {
        var report = RecoveryReport()
        try wrap { () throws(SystemCallError) in
            for name in try Sys.list(dir(.cur)) where !name.hasPrefix(".") {
                try recoverClaim(name, &report)
            }
            try sweepForwarded(&report)
            try repairRejections(&report)
            try sweepTemporaries(&report)
        }
        return report
    }

    func recoverClaim(_ name: String, _ report: inout RecoveryReport) throws(SystemCallError) {
        let cur = dir(.cur)
        let fd: FileDescriptor
        do throws(SystemCallError) { fd = try Sys.openForReading(name, in: cur) } catch {
            if error.errno == .noSuchFileOrDirectory { return }
            if error.errno == .tooManySymbolicLinkLevels { try moveBackToNew(name); report.givenBack.append(name); return }
            throw error
        }
        defer { Sys.close(fd) }
        guard try Sys.tryLock(fd, path: cur.path(name)) else { report.live += 1; return }
        // The lock is ours. Is the file still the one at cur/NAME (not settled and retired meanwhile)?
        let st = try Sys.stat(fd, path: cur.path(name))
        guard st.st_nlink > 0, let here = try Sys.stat(name, in: cur), here.sameFile(as: st) else { return }

        let id = Job.id(fromFileName: name)
        if name.hasSuffix(".json"), JobID.isValid(id) {
            for state in [SpoolState.done, .failed] {
                guard try Sys.exists(name, in: dir(state)) else { continue }
                try retire(name)
                report.alreadySettled.append(id)
                return
            }
        }
        // Only a canonical file that parses is a validated claim; anything else crashed
        // between rename and validation, and goes back as it is to be claimed afresh.
        let bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, path: cur.path(name))
        guard name.hasSuffix(".json"), JobID.isValid(id), var job = try? Job.decode(bytes, limits: limits),
              (job.jobId ?? id) == id
        else {
            try moveBackToNew(name)
            report.givenBack.append(name)
            return
        }
        job.jobId = id  // as in giveBack: the id must survive a move to another name in new/
        job.attempts += 1
        job.history.append(Documents.event("abandoned", "the claiming process died"))
        if job.attempts > limits.maxAbandonedClaims {
            let claim = Claim(id: id, job: job, bytes: bytes, fd: try dupLock(fd, name))
            do { try fail(claim, Failure(kind: IntakeError.Kind.abandoned.rawValue,
                                          message: "claimed \(job.attempts) times without an answer; the job may crash its workers"))
            } catch { if case .system(let e) = error { throw e } }
            report.deadLettered.append(id)
            return
        }
        try putBack(id: id, bytes: job.json().serialized())
        report.givenBack.append(id)
    }

    /// A second descriptor on the same open file description, so the `Claim` can own one.
    private func dupLock(_ fd: FileDescriptor, _ name: String) throws(SystemCallError) -> FileDescriptor {
        let d = try Sys.retrying("fcntl", dir(.cur).path(name)) { fcntl(fd.rawValue, F_DUPFD_CLOEXEC, 0) }
        return FileDescriptor(rawValue: d)
    }

    func repairRejections(_ report: inout RecoveryReport) throws(SystemCallError) {
        let failed = dir(.failed)
        for name in try Sys.list(failed) where name.hasSuffix(".original") && !name.hasPrefix(".") {
            let key = String(name.dropLast(".original".count))
            if try Sys.exists(key + ".json", in: failed) { continue }
            let fd: FileDescriptor
            do { fd = try Sys.openForReading(name, in: failed) } catch { continue }
            defer { Sys.close(fd) }
            guard try Sys.tryLock(fd, path: failed.path(name)), try !Sys.exists(key + ".json", in: failed) else { continue }
            let st = try Sys.stat(fd, path: failed.path(name))
            let error: IntakeError
            if !st.isRegularFile {
                error = IntakeError(kind: .notRegularFile, message: "not a regular file")
            } else {
                let bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, path: failed.path(name))
                switch Result(catching: { () throws(IntakeError) in try Job.decode(bytes, limits: limits) }) {
                case .failure(let e): error = e
                case .success: error = IntakeError(kind: .idClash, message: "rejected as a clash of job ids")
                }
            }
            try writeRejection(key: key, error, originalName: name, size: Int(st.st_size))
            report.repairedRejections += 1
        }
    }

    func sweepTemporaries(_ report: inout RecoveryReport) throws(SystemCallError) {
        let tmp = dir(.tmp)
        let now = Sys.nowMilliseconds()
        for name in try Sys.list(tmp) {
            if !name.hasPrefix(".spent.") {
                guard let st = try Sys.stat(name, in: tmp), now - st.modifiedMilliseconds > Spool.staleTemporaryMilliseconds else { continue }
            }
            do throws(SystemCallError) { try Sys.unlink(name, in: tmp); report.removedTemporaries += 1 } catch where error.errno == .noSuchFileOrDirectory {}
        }
    }
}
