import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The lease of one `Spool` object: the file `SPOOL/.leases/ID`, locked (`flock(LOCK_EX)`) for as
/// long as the object lives, and so exactly as long as its process lives at the most.
///
/// A claim parks under the lease: the symbolic link `cur/.NAME.lease` names the lease's id, and
/// the claim keeps no descriptor. Whether a parked claim is alive is then whether its lease's
/// lock is held; the kernel drops it when the process dies, however it dies. One descriptor for
/// every claim of the process instead of one per claim. See docs/spool-format.md.
final class Lease: Sendable {
    /// A fresh UUIDv7 per lease (never reused, so a dead lease's name never comes back to life).
    let id: String
    let fd: FileDescriptor

    init(id: String, fd: FileDescriptor) {
        self.id = id
        self.fd = fd
    }

    deinit { Sys.close(fd) }
}

/// What a marker's lease is, as far as one process can tell.
enum LeaseState: Equatable {
    /// Its lock is held: the owner lives (or, for a moment, another recoverer holds it).
    case alive
    /// Its lock could be taken: the owner is gone.
    case dead
    /// The marker names no lease file (missing, or not a lease id): made by hand, owned by no one.
    case unowned
}

/// Answers "is this lease alive?" once per lease for one pass over `cur/`.
///
/// With `holding`, a dead lease's lock is taken exclusively and kept until ``close()``: the
/// holder is then the only process that may remove markers naming that lease, which is what
/// makes removing another process's marker safe (see ``Spool/recover()``). Without it (status),
/// a shared lock is tried and dropped at once.
final class LeaseCheck {
    let spool: Spool
    let holding: Bool
    private var top: Directory?
    private var known: [String: LeaseState] = [:]
    private var held: [String: FileDescriptor] = [:]

    init(_ spool: Spool, holding: Bool) {
        self.spool = spool
        self.holding = holding
    }

    deinit { close() }

    func close() {
        held.values.forEach { Sys.close($0) }
        held = [:]
        if let t = top { Sys.close(t.fd) }
        top = nil
    }

    /// The spool directory, opened once per check.
    func root() throws(SystemCallError) -> Directory {
        if let t = top { return t }
        let t = try spool.root()
        top = t
        return t
    }

    /// Dead leases this check holds the lock of.
    var heldDead: [String] { Array(held.keys) }

    func state(of link: Sys.Link) throws(SystemCallError) -> LeaseState {
        guard case .target(let id) = link else { return .unowned }
        return try state(of: id)
    }

    func state(of id: String) throws(SystemCallError) -> LeaseState {
        if let s = known[id] { return s }
        let s = try look(id)
        known[id] = s
        return s
    }

    private func look(_ id: String) throws(SystemCallError) -> LeaseState {
        // A provider batch's hold is alive while its record exists (see Spool+ProviderBatch.swift).
        if let record = Spool.providerBatchRecord(ofMarkerTarget: id) {
            return try Sys.exists(Spool.providerBatchArea + "/" + record, in: root()) ? .alive : .unowned
        }
        guard JobID.isValid(id) else { return .unowned }
        let name = Spool.leasesDirectory + "/" + id
        let root = try root()
        let fd: FileDescriptor
        do throws(SystemCallError) { fd = try Sys.openForReading(name, in: root) } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .tooManySymbolicLinkLevels { return .unowned }
            throw error
        }
        var keep = false
        defer { if !keep { Sys.close(fd) } }
        guard try Sys.tryLock(fd, shared: !holding, path: root.path(name)) else { return .alive }
        if holding {
            keep = true
            held[id] = fd
        }
        return .dead
    }
}

extension Spool {
    /// Where leases live, under the spool directory (a dot name: no listing of the spool sees it).
    static let leasesDirectory = ".leases"

    /// `cur/.NAME.lease`: the marker of a parked claim of `cur/NAME`.
    static func markerName(_ name: String) -> String { "." + name + ".lease" }

    /// The claim's name for a marker's name, nil when it is not a marker's.
    static func claimName(ofMarker marker: String) -> String? {
        guard marker.hasPrefix("."), marker.hasSuffix(".lease"), marker.utf8.count > 7 else { return nil }
        return String(marker.dropFirst().dropLast(".lease".count))
    }

    /// This object's lease, taken (created and locked) at the first call.
    ///
    /// The file is created in `tmp/`, locked, then renamed into `.leases/`: a lease is never seen
    /// under its name unlocked, so a recoverer cannot take a newborn one for dead.
    func lease() throws(SystemCallError) -> Lease {
        try leaseSlot.withLock { (slot: inout Lease?) throws(SystemCallError) -> Lease in
            if let l = slot { return l }
            let id = JobID.generate()
            let tmp = dir(.tmp)
            let root = try root()
            defer { Sys.close(root.fd) }
            let (name, fd) = try writeTemporary(Array("\(Sys.processID()) \(Sys.hostName())\n".utf8), base: id, suffix: "lease", sync: false)
            do throws(SystemCallError) {
                guard try Sys.tryLock(fd, path: tmp.path(name)) else {
                    throw SystemCallError(call: "flock", path: tmp.path(name), errno: .wouldBlock)
                }
                let target = Spool.leasesDirectory + "/" + id
                var renamed = false
                do throws(SystemCallError) { renamed = try Sys.renameNoReplace(name, in: tmp, to: target, in: root) } catch
                    where error.errno == .noSuchFileOrDirectory
                {
                    do throws(SystemCallError) { try Sys.makeDirectory(Spool.leasesDirectory, in: root, mode: Spool.directoryMode) } catch
                        where error.errno == .fileExists
                    {}
                    renamed = try Sys.renameNoReplace(name, in: tmp, to: target, in: root)
                }
                guard renamed else { throw SystemCallError(call: "renameat2", path: root.path(target), errno: .fileExists) }
            } catch {
                Sys.close(fd)
                try? Sys.unlink(name, in: tmp)
                throw error
            }
            let l = Lease(id: id, fd: fd)
            slot = l
            return l
        }
    }

    /// Takes this object's lease now rather than at the first claim, so that a spool where leases
    /// cannot be made (`.leases/` not creatable) is reported at start-up. Claims made without a
    /// lease keep their descriptor instead (two per call in flight, not one).
    public func takeLease() throws(SpoolError) {
        _ = try wrap { () throws(SystemCallError) in try lease() }
    }

    /// The id of this object's lease, nil before the first claim (for tests and messages).
    public var leaseID: String? { leaseSlot.withLock { $0?.id } }

    /// Parks the claim of `cur/NAME`, whose descriptor `fd` the caller holds locked: creates the
    /// marker `cur/.NAME.lease` naming this object's lease. Returns the lease, or nil when the
    /// claim cannot park and must keep its descriptor (no lease could be made, or a marker it may
    /// not remove is in the way).
    ///
    /// A marker is never replaced, only created (`symlinkat` fails on an existing name). One in
    /// the way is removed when this process may: it names a dead lease whose lock we take (and
    /// read it again under that lock), or no lease at all (we hold the lock of `cur/NAME`'s file,
    /// so no one else can be parking or recovering this name). One naming a live lease — another
    /// process's, or ours through a claim of the same name whose release is under way — stays.
    func park(_ name: String) -> Lease? {
        guard let lease = try? lease() else { return nil }
        let cur = dir(.cur), marker = Spool.markerName(name)
        for _ in 0..<3 {
            do throws(SystemCallError) {
                if try Sys.symlink(lease.id, named: marker, in: cur) { return lease }
                let link = try Sys.readLink(marker, in: cur)
                if link == .missing { continue }
                if link == .target(lease.id) { return nil }
                let check = LeaseCheck(self, holding: true)
                defer { check.close() }
                switch try check.state(of: link) {
                case .alive: return nil
                case .unowned: try Sys.unlinkIfPresent(marker, in: cur)
                case .dead:
                    // Under the dead lease's lock nobody else removes its markers: read it again and remove it.
                    if try Sys.readLink(marker, in: cur) == link { try Sys.unlinkIfPresent(marker, in: cur) }
                }
            } catch {
                return nil
            }
        }
        return nil
    }

    /// Removes a parked claim's marker, made by this object's lease. Called after the claim's file
    /// left `cur/` (settled or given back), or to abandon the claim (then the file is still in
    /// `cur/` and recovery gives it back). Only the lease's holder removes its live markers, and a
    /// parker never replaces one, so the marker removed is this claim's own.
    func unpark(_ name: String) {
        _ = try? Sys.unlinkIfPresent(Spool.markerName(name), in: dir(.cur))
    }
}
