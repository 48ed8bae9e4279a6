import SystemPackage

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// What came of cancelling a waiting job.
public enum CancelOutcome: Sendable, Equatable {
    /// The job left `new/` and its dead letter (`failed/ID.json`, kind `cancelled`) is durable.
    case cancelled
    /// The job is no longer waiting (claimed, or gone): nothing was changed.
    case notWaiting
}

extension Spool {
    /// The prefix of a job held by a canceller: `new/.cancel.PID.RANDOM.NAME`. Dot names in
    /// `new/` are never claimed; recovery gives back a hold whose canceller died.
    static let cancelPrefix = ".cancel."

    /// Cancels the waiting job `new/NAME` without passing through `cur/`, so that a process that
    /// may not write `cur/` (the web server's user in the two-user layout) can cancel:
    /// lock `new/NAME`, rename it to a hold in `new/` (the rename that wins owns the job, as a
    /// claim does), write the dead letter to `failed/ID.json` (tmp → fsync → no-replace rename →
    /// fsync), then retire the hold. A crash in between leaves the hold, locked by nobody:
    /// ``recover()`` puts it back under its name (or drops it if its dead letter was written).
    public func cancelWaiting(_ name: String, _ failure: Failure) throws(SpoolError) -> CancelOutcome {
        guard !name.hasPrefix(".") else { return .notWaiting }
        return try wrap { () throws(SystemCallError) -> CancelOutcome in
            let new = dir(.new)
            guard case .locked(let fd, _) = try openLocked(name) else { return .notWaiting }
            defer { Sys.close(fd) }  // the lock goes with it, once the hold is retired
            let hold = Spool.cancelPrefix + String(tmpName("x", name).dropFirst(2))
            guard try Sys.renameNoReplace(name, in: new, to: hold, in: new) else { return .notWaiting }
            let bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, path: new.path(hold))
            let job: Job
            do throws(IntakeError) { job = try Job.decode(bytes, limits: limits) } catch {
                try putBackHold(hold, as: name)  // not a valid job: the claimer will dead-letter it
                return .notWaiting
            }
            let id = job.jobId ?? Job.id(fromFileName: name)
            let history = job.history + [Documents.event("failed", failure.message)]
            var kept = job
            kept.history = []
            let letter = Documents.deadLetter(id: id, error: failure, history: history, job: kept, original: nil)
            let (tmpName, tfd) = try writeTemporary(letter.serialized(), base: id, suffix: "failed", sync: true)
            Sys.close(tfd)
            guard try Sys.renameNoReplace(tmpName, in: dir(.tmp), to: id + ".json", in: dir(.failed)) else {
                try? Sys.unlink(tmpName, in: dir(.tmp))
                try putBackHold(hold, as: name)
                throw SystemCallError(call: "renameat2", path: dir(.failed).path(id + ".json"), errno: .fileExists)
            }
            try Sys.fsync(dir(.failed))
            try retire(hold, from: .new)
            return .cancelled
        }
    }

    /// Puts a cancel hold back at its job's name (a fresh one if that name was taken meanwhile).
    func putBackHold(_ hold: String, as name: String) throws(SystemCallError) {
        try moveToNew(hold, from: .new, as: name)
    }

    /// The job name a cancel hold stands for (`.cancel.PID.RANDOM.NAME` → `NAME`).
    static func heldName(_ hold: String) -> String? {
        guard hold.hasPrefix(cancelPrefix) else { return nil }
        let parts = hold.dropFirst(cancelPrefix.count).split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[2].isEmpty, !parts[2].hasPrefix(".") else { return nil }
        return String(parts[2])
    }

    /// Recovery's part: holds in `new/` whose canceller died (their lock can be taken) go back
    /// under their name, or are retired when the job's dead letter is already in `failed/`.
    func recoverCancelHolds(_ report: inout RecoveryReport) throws(SystemCallError) {
        let new = dir(.new)
        for hold in try Sys.list(new) where hold.hasPrefix(Spool.cancelPrefix) {
            guard let name = Spool.heldName(hold) else { continue }
            guard let fd = try Sys.openForReadingIfPresent(hold, in: new) else { continue }
            defer { Sys.close(fd) }
            guard try Sys.tryLock(fd, path: new.path(hold)) else { continue }  // a canceller is at work
            let st = try Sys.stat(fd, path: new.path(hold))
            guard let here = try Sys.stat(hold, in: new), here.sameFile(as: st) else { continue }
            let id = Job.id(fromFileName: name)
            if JobID.isValid(id), try Sys.exists(id + ".json", in: dir(.failed)) {
                try retire(hold, from: .new)
                report.alreadySettled.append(id)
            } else {
                try putBackHold(hold, as: name)
                report.givenBack.append(name)
            }
        }
    }
}
