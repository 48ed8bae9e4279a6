import SystemPackage

#if canImport(Glibc)
import Glibc
public import JSON
#endif

extension Spool {
    /// Writes the result to `done/ID.json` (via `tmp/`, fsynced, no replace), fsyncs `done/`,
    /// then retires the claimed file. A crash between the steps leaves both; recovery keeps the result.
    public func finish(_ claim: Claim, answer: Answer) throws(SpoolError) {
        let doc = Documents.result(id: claim.id, job: claim.job, answer: answer, claimedAt: claim.claimedAt)
        try settle(claim, document: doc, into: .done)
    }

    /// Dead-letters a claimed job to `failed/ID.json` with the reason and every earlier attempt.
    public func fail(_ claim: Claim, _ failure: Failure, attempts: [JSONValue] = []) throws(SpoolError) {
        let history = claim.job.history + attempts + [Documents.event("failed", failure.message)]
        var job = claim.job
        job.history = []
        let doc = Documents.deadLetter(id: claim.id, error: failure, history: history, job: job, original: nil)
        try settle(claim, document: doc, into: .failed)
    }

    /// Finishes many claims with one group commit: write every result to `tmp/`, one `syncfs`,
    /// rename each into `done/`, one fsync of `done/`, then retire the claimed files.
    ///
    /// Returns the claims that could not be finished because `done/ID.json` already existed
    /// (they are left claimed, for the caller to fail or release). A system error leaves every
    /// claim not yet renamed as it was.
    public func finish(batch: [(Claim, Answer)]) throws(SpoolError) -> [Claim] {
        let tmp = dir(.tmp), done = dir(.done)
        var written: [(Claim, String)] = []
        var refused: [Claim] = []
        do throws(SystemCallError) {
            for (claim, answer) in batch {
                precondition(!claim.isReleased, "claim \(claim.id) was already settled or released")
                let doc = Documents.result(id: claim.id, job: claim.job, answer: answer, claimedAt: claim.claimedAt)
                let (name, fd) = try writeTemporary(doc.serialized(), base: claim.id, suffix: "done", sync: !syncfsIsDurable)
                Sys.close(fd)
                written.append((claim, name))
            }
            if !written.isEmpty { try Sys.syncfs(tmp) }
        } catch {
            for (_, name) in written { try? Sys.unlink(name, in: tmp) }
            throw .system(error)
        }
        var renamed: [Claim] = []
        do throws(SystemCallError) {
            for (k, (claim, name)) in written.enumerated() {
                do throws(SystemCallError) {
                    if try Sys.renameNoReplace(name, in: tmp, to: claim.id + ".json", in: done) {
                        renamed.append(claim)
                    } else {
                        try? Sys.unlink(name, in: tmp)
                        refused.append(claim)
                    }
                } catch {
                    for (_, rest) in written[k...] { try? Sys.unlink(rest, in: tmp) }
                    throw error
                }
            }
            if !renamed.isEmpty { try Sys.fsync(done) }
            for claim in renamed {
                try retire(claim.id + ".json")
                if claim.job.stream { removePartial(claim.id) }
                claim.release()
            }
        } catch {
            throw .system(error)
        }
        return refused
    }

    func settle(_ claim: Claim, document: JSONValue, into state: SpoolState) throws(SpoolError) {
        precondition(!claim.isReleased, "claim \(claim.id) was already settled or released")
        let target = dir(state), name = claim.id + ".json"
        try wrap { () throws(SystemCallError) in
            let (tmpName, fd) = try writeTemporary(document.serialized(), base: claim.id, suffix: state.rawValue, sync: true)
            Sys.close(fd)
            guard try Sys.renameNoReplace(tmpName, in: dir(.tmp), to: name, in: target) else {
                try? Sys.unlink(tmpName, in: dir(.tmp))
                throw SystemCallError(call: "renameat2", path: target.path(name), errno: .fileExists)
            }
            try Sys.fsync(target)
            try retire(name)
        }
        if claim.job.stream { removePartial(claim.id) }
        claim.release()
    }

    /// Takes a settled job's file out of `cur/` (or another state) by renaming it to `tmp/.spent.*`; recovery unlinks
    /// those later. (A rename is an order of magnitude cheaper than an unlink on ext4 without a journal.)
    func retire(_ name: String, from state: SpoolState = .cur) throws(SystemCallError) {
        let spent = ".spent." + tmpName(Job.id(fromFileName: name), "json")
        do throws(SystemCallError) { try Sys.renameReplacing(name, in: dir(state), to: spent, in: dir(.tmp)) } catch
            where error.errno == .noSuchFileOrDirectory
        {
            return
        }
    }

    /// Puts a claimed job back into `new/` for another try.
    ///
    /// The job is rewritten with `attempts` raised (when `countAttempt`) and an entry in its
    /// `history` (after `attempts`, the records of calls made under this claim). The new file is
    /// locked while it passes through `cur/`, so no one can mistake it for a dead claim. A job given back more than ``Limits/maxAbandonedClaims`` times is
    /// dead-lettered instead (a job that kills its workers must not kill them forever).
    /// `event` names the history entry (default `abandoned`, or `returned` when no attempt is counted).
    public func giveBack(
        _ claim: Claim, reason: String, countAttempt: Bool = true, attempts: [JSONValue] = [],
        event: String? = nil
    ) throws(SpoolError) {
        precondition(!claim.isReleased, "claim \(claim.id) was already settled or released")
        var job = claim.job
        job.jobId = claim.id  // a job named only by its file keeps its id if it must go back under another name
        if countAttempt { job.attempts += 1 }
        job.history += attempts
        job.history.append(Documents.event(event ?? (countAttempt ? "abandoned" : "returned"), reason))
        if job.attempts > limits.maxAbandonedClaims {
            try fail(
                claim,
                Failure(
                    kind: IntakeError.Kind.abandoned.rawValue,
                    message: "claimed \(job.attempts) times without an answer; last: \(reason)"))
            return
        }
        try wrap { () throws(SystemCallError) in try putBack(id: claim.id, bytes: job.json().serialized()) }
        claim.release()
    }

    /// Replaces `cur/ID.json` with `bytes` (locked) and renames it into `new/`.
    func putBack(id: String, bytes: [UInt8]) throws(SystemCallError) {
        let name = id + ".json"
        let (tmpName, fd) = try writeTemporary(bytes, base: id, suffix: "back", sync: true)
        defer { Sys.close(fd) }
        _ = try Sys.tryLock(fd, path: dir(.tmp).path(tmpName))
        try Sys.renameReplacing(tmpName, in: dir(.tmp), to: name, in: dir(.cur))
        try moveBackToNew(name)
    }

    /// `cur/NAME` → `new/NAME`; if `new/NAME` exists (a same-named drop), under a fresh name instead.
    func moveBackToNew(_ name: String) throws(SystemCallError) {
        try moveToNew(name, from: .cur, as: name)
    }

    /// `STATE/SOURCE` → `new/TARGET`, never replacing: if `new/TARGET` exists, under a fresh name
    /// instead; then `new/` is fsynced.
    func moveToNew(_ source: String, from state: SpoolState, as target: String) throws(SystemCallError) {
        if try !Sys.renameNoReplace(source, in: dir(state), to: target, in: dir(.new)) {
            _ = try Sys.renameNoReplace(source, in: dir(state), to: JobID.generate() + ".json", in: dir(.new))
        }
        try Sys.fsync(dir(.new))
    }
}
