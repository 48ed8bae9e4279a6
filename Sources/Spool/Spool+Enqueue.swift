#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Whether an enqueue waits for the disk.
public enum Durability: Sendable {
    /// tmp → fsync(file) → rename → fsync(dir): the job survives a crash or power loss once accepted.
    case durable
    /// No fsync: for bulk loads that can be redone. A power loss may lose jobs that were
    /// reported as enqueued, never corrupt one (the rename is still atomic).
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
        if job.jobId == nil { job.jobId = JobID.generate() }
        if job.submittedAt == nil { job.submittedAt = Timestamp.now() }
        let id = job.jobId!
        // Re-validate through the same path a hand-dropped file takes.
        let bytes = job.json().serialized()
        do { _ = try Job.decode(bytes, limits: limits) } catch { throw .invalidJob(error) }
        for state in [SpoolState.cur, .done, .failed] {
            if try wrap({ () throws(SystemCallError) in try Sys.exists(id + ".json", in: dir(state)) }) {
                throw .idExists(id: id, state: state)
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
            let (name, fd) = try writeTemporary(bytes, base: id, suffix: "job", sync: sync)
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

    /// Enqueues many jobs with one group commit: write all, fsync all, rename all, fsync `new/` once.
    /// On failure, the jobs renamed before it stay enqueued and are reported in ``BatchEnqueueError``.
    public func enqueue(batch jobs: [Job], durability: Durability = .durable) throws(BatchEnqueueError) -> [String] {
        let sync = durability == .durable
        let tmp = dir(.tmp), new = dir(.new)
        var prepared: [(id: String, name: String)] = []
        var accepted: [String] = []
        func cleanUp(from k: Int) { for p in prepared[k...] { try? Sys.unlink(p.name, in: tmp) } }
        func fail(_ index: Int, _ error: SpoolError) -> BatchEnqueueError {
            if sync, !accepted.isEmpty { try? Sys.fsync(new) }
            return BatchEnqueueError(accepted: accepted, index: index, error: error)
        }
        var seen = Set<String>()
        for (k, job) in jobs.enumerated() {
            do {
                let (id, bytes) = try prepare(job)
                guard seen.insert(id).inserted else { throw SpoolError.idExists(id: id, state: .new) }
                let (name, fd) = try wrap { () throws(SystemCallError) in
                    try writeTemporary(bytes, base: id, suffix: "job", sync: false)
                }
                prepared.append((id, name))
                defer { Sys.close(fd) }
                if sync { try wrap { () throws(SystemCallError) in try Sys.fsync(fd, path: tmp.path(name)) } }
            } catch let error as SpoolError {
                cleanUp(from: 0)
                throw fail(k, error)
            } catch {
                fatalError("unreachable: \(error)")
            }
        }
        for (k, p) in prepared.enumerated() {
            do {
                guard try Sys.renameNoReplace(p.name, in: tmp, to: p.id + ".json", in: new) else {
                    cleanUp(from: k)
                    throw fail(k, .idExists(id: p.id, state: .new))
                }
                accepted.append(p.id)
            } catch let error as SystemCallError {
                cleanUp(from: k)
                throw fail(k, .system(error))
            } catch let error as BatchEnqueueError {
                throw error
            } catch {
                fatalError("unreachable: \(error)")
            }
        }
        if sync {
            do { try Sys.fsync(new) } catch { throw BatchEnqueueError(accepted: [], index: 0, error: .system(error)) }
        }
        return accepted
    }
}
