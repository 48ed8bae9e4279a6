import SystemPackage

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// Claims held by a provider batch (docs/batch.md, "Provider batches"; docs/spool-format.md).
///
/// A job sent to a provider's Batch API stays in `cur/ID.json`, like any claim, but its marker
/// `cur/.ID.json.lease` names `provider-batch:RECORD` instead of a process's lease, where RECORD is
/// the batch's durable record `SPOOL/.provider-batches/RECORD`. Recovery takes such a claim for
/// alive for as long as the record exists — whether or not a worker runs — so a worker killed
/// while the provider holds the jobs does not give them back to `new/` (where they would be
/// called live as well); the next worker re-attaches to the record and its claims instead.
///
/// A claim becomes a provider-batch claim from a claim that holds its file's lock (claimed with
/// `park: false`): the marker is made while the lock is held, as for parking, and only then is the
/// descriptor closed. Such claims are settled, given back and failed like any other; their hold
/// survives the `Claim` object (dropping it removes nothing).
extension Spool {
    /// The directory of provider batch records (written by ``writeRecord(_:in:bytes:replacing:durability:)``).
    public static let providerBatchArea = ".provider-batches"
    static let providerBatchMarkerPrefix = "provider-batch:"

    /// The record a marker's text names, nil when it does not name a provider batch.
    static func providerBatchRecord(ofMarkerTarget target: String) -> String? {
        guard target.hasPrefix(providerBatchMarkerPrefix) else { return nil }
        let record = String(target.dropFirst(providerBatchMarkerPrefix.count))
        return JobID.isValid(record) ? record : nil
    }

    /// Turns a claim that holds its file's lock into one held by the provider batch `record` (whose
    /// record must already exist: the marker is alive only while it does). Returns nil, and leaves
    /// `claim` as it was, when a marker this process may not remove is in the way.
    /// Call ``syncClaims()`` once after a group of these, before telling the provider about them.
    public func holdForProviderBatch(_ claim: Claim, record: String) throws(SpoolError) -> Claim? {
        guard case .descriptor = claim.hold, !claim.isReleased else {
            preconditionFailure("a provider batch takes claims that hold their file's lock (claim with park: false)")
        }
        let cur = dir(.cur), name = claim.id + ".json", marker = Spool.markerName(name)
        let target = Spool.providerBatchMarkerPrefix + record
        return try wrap { () throws(SystemCallError) -> Claim? in
            for _ in 0..<3 {
                if try Sys.symlink(target, named: marker, in: cur) {
                    let held = Claim(id: claim.id, job: claim.job, bytes: claim.bytes, hold: .providerBatch(record: record, self))
                    claim.release()  // closes the descriptor; the marker now proves the claim alive
                    return held
                }
                let link = try Sys.readLink(marker, in: cur)
                if link == .missing { continue }
                // We hold cur/NAME's lock, so nobody parks this name now; a stale marker may go
                // unless it names a live lease (a same-named claim being released).
                let check = LeaseCheck(self, holding: true)
                defer { check.close() }
                switch try check.state(of: link) {
                case .alive: return nil
                case .unowned, .dead:
                    if try Sys.readLink(marker, in: cur) == link { try Sys.unlinkIfPresent(marker, in: cur) }
                }
            }
            return nil
        }
    }

    /// Makes the markers made so far durable (one fsync of `cur/`).
    public func syncClaims() throws(SpoolError) {
        try wrap { () throws(SystemCallError) in try Sys.fsync(dir(.cur)) }
    }

    /// The claims the provider batch `record` holds, read back from `cur/` (after a restart): every
    /// `cur/ID.json` whose marker names the record. Markers whose file has left `cur/` (their
    /// owner died between settling and removing them) are removed. A file that is not a valid
    /// job any more is left alone, to be named in `invalid`.
    public func providerBatchClaims(record: String) throws(SpoolError) -> (claims: [Claim], invalid: [String]) {
        let cur = dir(.cur), target = Spool.providerBatchMarkerPrefix + record
        return try wrap { () throws(SystemCallError) -> (claims: [Claim], invalid: [String]) in
            var claims: [Claim] = [], invalid: [String] = []
            for marker in try Sys.list(cur) where marker.hasPrefix(".") {
                guard let name = Spool.claimName(ofMarker: marker), !name.hasPrefix("."),
                    try Sys.readLink(marker, in: cur) == .target(target)
                else { continue }
                let fd: FileDescriptor
                do throws(SystemCallError) { fd = try Sys.openForReading(name, in: cur) } catch  where error.errno == .noSuchFileOrDirectory {
                    try Sys.unlinkIfPresent(marker, in: cur)
                    continue
                }
                defer { Sys.close(fd) }
                let bytes = try Sys.readAll(fd, limit: limits.maxFileBytes, path: cur.path(name))
                let id = Job.id(fromFileName: name)
                guard name.hasSuffix(".json"), JobID.isValid(id), let job = try? Job.decode(bytes, limits: limits) else {
                    invalid.append(name)
                    continue
                }
                claims.append(Claim(id: id, job: job, bytes: bytes, hold: .providerBatch(record: record, self)))
            }
            return (claims, invalid)
        }
    }

    /// Retires a held claim whose job already has a result in `done/` or `failed/` (settled by
    /// another path before a crash); false, and nothing done, when it has none.
    public func retireIfSettled(_ claim: Claim) throws(SpoolError) -> Bool {
        let name = claim.id + ".json"
        return try wrap { () throws(SystemCallError) -> Bool in
            for state in [SpoolState.done, .failed] where try Sys.exists(name, in: dir(state)) {
                try retire(name)
                claim.release()
                return true
            }
            return false
        }
    }

    /// Takes the spool's provider-batch lock (`.provider-batches/.lock`, `flock`), held for as long
    /// as the returned object lives: one batcher per spool re-attaches to the records and gathers
    /// new ones; a batcher of another worker stands by until the lock is free (its holder died or
    /// stopped). Nil when another process holds it.
    public func takeProviderBatchLock() throws(SpoolError) -> ProviderBatchLock? {
        try wrap { () throws(SystemCallError) -> ProviderBatchLock? in
            let top = try root()
            defer { Sys.close(top.fd) }
            do throws(SystemCallError) { try Sys.makeDirectory(Spool.providerBatchArea, in: top, mode: Spool.directoryMode) } catch
                where error.errno == .fileExists
            {}
            let area = try Sys.openDirectory(Spool.providerBatchArea, in: top)
            defer { Sys.close(area.fd) }
            do throws(SystemCallError) { Sys.close(try Sys.createExclusive(".lock", in: area, mode: 0o600)) } catch  where error.errno == .fileExists {}
            let fd = try Sys.openForReading(".lock", in: area)
            guard try Sys.tryLock(fd, path: area.path(".lock")) else {
                Sys.close(fd)
                return nil
            }
            return ProviderBatchLock(fd: fd)
        }
    }

    /// Removes `cur/.NAME.lease` if it still names the provider batch `record`.
    func unmark(_ name: String, record: String) {
        let cur = dir(.cur), marker = Spool.markerName(name)
        guard (try? Sys.readLink(marker, in: cur)) == .target(Spool.providerBatchMarkerPrefix + record) else { return }
        _ = try? Sys.unlinkIfPresent(marker, in: cur)
    }
}

/// The spool's provider-batch lock while held (see ``Spool/takeProviderBatchLock()``).
public final class ProviderBatchLock: Sendable {
    let fd: FileDescriptor
    init(fd: FileDescriptor) { self.fd = fd }
    deinit { Sys.close(fd) }
}
