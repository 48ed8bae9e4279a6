#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Where a job that may have been handed to Kafka is, for a result coming back from it.
public enum ForwardedLookup: Sendable {
    /// The job is in `forwarded/` (or still in `cur/`, its delivery not yet confirmed): a result may settle it.
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
        let p = path + "/" + SpoolState.forwarded.rawValue
        do throws(SystemCallError) {
            try Sys.makeDirectory(p, mode: directoryMode)
            try Sys.chmod(p, mode: directoryMode)
        } catch where error.errno == .fileExists {
        } catch {
            throw .system(error)
        }
    }

    /// Moves claimed jobs whose hand-over to Kafka was confirmed into `forwarded/`: one rename
    /// each (`cur/ID.json` → `forwarded/ID.json`), then one fsync of `forwarded/`. A job whose
    /// result is already in `done/` or `failed/` (it came back before its delivery report) is
    /// retired instead. Each claim is released once moved; on a system error the claims not yet
    /// released are left as they were.
    public func forward(batch claims: [Claim]) throws(SpoolError) {
        guard !claims.isEmpty else { return }
        let fwd = dir(.forwarded)
        try wrap { () throws(SystemCallError) in
            var moved: [Claim] = []
            for claim in claims {
                precondition(!claim.isReleased, "claim \(claim.id) was already settled or released")
                let name = claim.id + ".json"
                if try hasResult(name) {
                    try retire(name)
                    claim.release()
                } else if try Sys.renameNoReplace(name, in: dir(.cur), to: name, in: fwd) {
                    moved.append(claim)
                } else {
                    // Already forwarded once (a copy given back and sent again): keep the first.
                    try retire(name)
                    claim.release()
                }
            }
            if !moved.isEmpty { try Sys.fsync(fwd) }
            moved.forEach { $0.release() }
        }
    }

    /// Whether a result for `id` may settle a job of this spool: the job is in `forwarded/`, or
    /// in `cur/` (claimed for forwarding, its delivery report still on the way).
    public func lookForwarded(_ id: String) throws(SpoolError) -> ForwardedLookup {
        guard JobID.isValid(id) else { return .unknown }
        let name = id + ".json"
        return try wrap { () throws(SystemCallError) -> ForwardedLookup in
            for state in [SpoolState.done, .failed] where try Sys.exists(name, in: dir(state)) { return .settled(state) }
            for state in [SpoolState.forwarded, .cur] where state != .forwarded || hasForwarded {
                let d = dir(state)
                let fd: FileDescriptor
                do throws(SystemCallError) { fd = try Sys.openForReading(name, in: d) } catch {
                    if error.errno == .noSuchFileOrDirectory || error.errno == .tooManySymbolicLinkLevels { continue }
                    throw error
                }
                defer { Sys.close(fd) }
                let bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, path: d.path(name))
                guard var job = try? Job.decode(bytes, limits: limits), (job.jobId ?? id) == id else { continue }
                job.jobId = id
                return .waiting(job)
            }
            return .unknown
        }
    }

    /// Settles a forwarded job with the result that came back: the document is written to
    /// `done/ID.json` or `failed/ID.json` (via `tmp/`, fsynced, no replace, then the directory
    /// fsynced) and only then is `forwarded/ID.json` retired. Returns false, writing nothing, when
    /// the job already has a result. A `cur/` copy is left to its claimant (or recovery).
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
                  try Sys.renameNoReplace(tmpName, in: dir(.tmp), to: name, in: target) else {
                try? Sys.unlink(tmpName, in: dir(.tmp))
                return false
            }
            try Sys.fsync(target)
            if hasForwarded { try retire(name, from: .forwarded) }
            return true
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
