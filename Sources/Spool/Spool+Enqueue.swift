import SystemPackage

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// Whether an enqueue waits for the disk.
public enum Durability: Sendable {
    /// tmp → fsync(file) → rename → fsync(dir): the job survives a crash or power loss once accepted.
    case durable
    /// No fsync: for bulk loads that can be redone. A power loss may lose jobs that were
    /// reported as enqueued, never corrupt one. The rename alone does not ensure that: ext4
    /// allocates and writes a file's blocks after the call returns, so a journal commit could
    /// hold the rename of a file whose data is not on disk — an empty or zero-filled job after
    /// the cut (the power-loss suite saw both). Each file is therefore written out to the device
    /// (`sync_file_range`, waited for, but with no journal commit or cache flush) before its rename.
    case volatile
}

/// Some jobs of a batch were enqueued before one failed.
public struct BatchEnqueueError: Error, Sendable, CustomStringConvertible {
    /// Ids of the jobs that are in `new/`, durable if the batch was.
    public var accepted: [String]
    /// The index in the batch of the job that failed.
    public var index: Int
    public var error: SpoolError

    public var description: String { "job \(index + 1) of the batch: \(error)" }
}

extension Spool {
    /// Gives a job an id and a submission time if it has none, and checks it as the spool will.
    public func prepare(_ job: Job) throws(SpoolError) -> (id: String, bytes: [UInt8]) {
        var job = job
        let generated = job.jobId == nil
        if generated { job.jobId = JobID.generate() }
        if job.submittedAt == nil { job.submittedAt = Timestamp.now() }
        let id = job.jobId!
        let json = job.json()
        // Validate the document exactly as a hand-dropped file would be (fields, then size).
        do { _ = try Job(json: json, limits: limits) } catch {
            throw .invalidJob(IntakeError(kind: .invalidJob, message: error.description, field: error.field))
        }
        let bytes = json.serialized()
        if bytes.count > limits.maxFileBytes {
            throw .invalidJob(IntakeError(kind: .tooLarge, message: "the job is \(bytes.count) bytes; the limit is \(limits.maxFileBytes)"))
        }
        // A fresh UUIDv7 cannot exist yet; a chosen id may.
        if !generated {
            for state in [SpoolState.cur, .forwarded, .done, .failed] where state != .forwarded || hasForwarded {
                if try wrap({ () throws(SystemCallError) in try Sys.exists(id + ".json", in: dir(state)) }) {
                    throw .idExists(id: id, state: state)
                }
            }
        }
        return (id, bytes)
    }

    /// Enqueues one job: written to `tmp/`, fsynced, renamed into `new/ID.json` without replacing
    /// anything, then `new/` is fsynced. Returns the job id once the job is accepted.
    @discardableResult
    public func enqueue(_ job: Job, durability: Durability = .durable) throws(SpoolError) -> String {
        let (id, bytes) = try prepare(job)
        let sync = durability == .durable
        let tmp = dir(.tmp), new = dir(.new)
        let renamed = try wrap { () throws(SystemCallError) -> Bool in
            let (name, fd) = try writeTemporary(bytes, base: id, suffix: "job", sync: sync, writeOut: !sync)
            Sys.close(fd)
            guard try Sys.renameNoReplace(name, in: tmp, to: id + ".json", in: new) else {
                try? Sys.unlink(name, in: tmp)
                return false
            }
            if sync { try Sys.fsync(new) }
            return true
        }
        if !renamed { throw .idExists(id: id, state: .new) }
        return id
    }

    /// Enqueues many jobs with one group commit: write every job to `tmp/`, make them all durable
    /// with one `syncfs`, rename each into `new/`, then fsync `new/` once.
    /// On failure, the jobs renamed before it stay enqueued and are reported in ``BatchEnqueueError``.
    public func enqueue(batch jobs: [Job], durability: Durability = .durable) throws(BatchEnqueueError) -> [String] {
        let sync = durability == .durable
        let tmp = dir(.tmp), new = dir(.new)
        var prepared: [(id: String, name: String)] = []
        var accepted: [String] = []
        func cleanUp(from k: Int) { for p in prepared[k...] { try? Sys.unlink(p.name, in: tmp) } }
        func failure(_ index: Int, _ error: SpoolError) -> BatchEnqueueError {
            if sync, !accepted.isEmpty { try? Sys.fsync(new) }
            return BatchEnqueueError(accepted: accepted, index: index, error: error)
        }
        var seen = Set<String>()
        for (k, job) in jobs.enumerated() {
            do throws(SpoolError) {
                let (id, bytes) = try prepare(job)
                guard seen.insert(id).inserted else { throw SpoolError.idExists(id: id, state: .new) }
                let (name, fd) = try wrap { () throws(SystemCallError) in
                    try writeTemporary(bytes, base: id, suffix: "job", sync: sync && !syncfsIsDurable, writeOut: !sync)
                }
                Sys.close(fd)
                prepared.append((id, name))
            } catch {
                cleanUp(from: 0)
                throw failure(k, error)
            }
        }
        if sync, !prepared.isEmpty {
            do throws(SystemCallError) { try Sys.syncfs(tmp) } catch {
                cleanUp(from: 0)
                throw failure(0, .system(error))
            }
        }
        for (k, p) in prepared.enumerated() {
            let renamed: Bool
            do throws(SystemCallError) {
                renamed = try Sys.renameNoReplace(p.name, in: tmp, to: p.id + ".json", in: new)
            } catch {
                cleanUp(from: k)
                throw failure(k, .system(error))
            }
            guard renamed else {
                cleanUp(from: k)
                throw failure(k, .idExists(id: p.id, state: .new))
            }
            accepted.append(p.id)
        }
        if sync {
            do throws(SystemCallError) { try Sys.fsync(new) } catch {
                throw BatchEnqueueError(accepted: accepted, index: prepared.count - 1, error: .system(error))
            }
        }
        return accepted
    }

    /// Enqueues many jobs with one group commit, each on its own: an invalid job or a known id
    /// is reported in its slot and the others go ahead. Write every job to `tmp/`, one `syncfs`,
    /// rename each into `new/` (no replace), one fsync of `new/`.
    ///
    /// A system error is thrown; jobs renamed before it stay in `new/` (a retry finds them as
    /// duplicates), the rest of the temporary files are removed.
    public func enqueue(each jobs: [Job], durability: Durability = .durable) throws(SpoolError) -> [EnqueueOutcome] {
        let sync = durability == .durable
        let tmp = dir(.tmp), new = dir(.new)
        var outcomes = [EnqueueOutcome](repeating: .duplicate(id: "", state: .new), count: jobs.count)
        var prepared: [(slot: Int, id: String, name: String)] = []
        var seen = Set<String>()
        func cleanUp(from k: Int) { for p in prepared[k...] { try? Sys.unlink(p.name, in: tmp) } }
        for (k, job) in jobs.enumerated() {
            do throws(SpoolError) {
                let (id, bytes) = try prepare(job)
                // Re-deliveries are expected here: a job already waiting costs a lookup, not a
                // temporary file created and unlinked (and unlinks slow later creates on ext4).
                guard seen.insert(id).inserted,
                    try !wrap({ () throws(SystemCallError) in try Sys.exists(id + ".json", in: new) })
                else {
                    outcomes[k] = .duplicate(id: id, state: .new)
                    continue
                }
                let (name, fd) = try wrap { () throws(SystemCallError) in
                    try writeTemporary(bytes, base: id, suffix: "job", sync: sync && !syncfsIsDurable, writeOut: !sync)
                }
                Sys.close(fd)
                prepared.append((k, id, name))
            } catch {
                switch error {
                case .invalidJob(let e): outcomes[k] = .invalid(e)
                case .idExists(let id, let state): outcomes[k] = .duplicate(id: id, state: state)
                default:
                    cleanUp(from: 0)
                    throw error
                }
            }
        }
        guard !prepared.isEmpty else { return outcomes }
        try wrap { () throws(SystemCallError) in
            if sync {
                do throws(SystemCallError) { try Sys.syncfs(tmp) } catch {
                    cleanUp(from: 0)
                    throw error
                }
            }
            for (k, p) in prepared.enumerated() {
                do throws(SystemCallError) {
                    if try Sys.renameNoReplace(p.name, in: tmp, to: p.id + ".json", in: new) {
                        outcomes[p.slot] = .enqueued(id: p.id)
                    } else {
                        try? Sys.unlink(p.name, in: tmp)
                        outcomes[p.slot] = .duplicate(id: p.id, state: .new)
                    }
                } catch {
                    cleanUp(from: k)
                    if sync { try? Sys.fsync(new) }
                    throw error
                }
            }
            if sync { try Sys.fsync(new) }
        }
        return outcomes
    }
}

/// What became of one job of ``Spool/enqueue(each:durability:)``.
public enum EnqueueOutcome: Sendable, Equatable {
    case enqueued(id: String)
    /// The id is already in the spool (or earlier in the same batch).
    case duplicate(id: String, state: SpoolState)
    case invalid(IntakeError)
}
