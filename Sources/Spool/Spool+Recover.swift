import SystemPackage

#if canImport(Glibc)
import Glibc
import JSON
#endif

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
    /// Markers of dead claims (`cur/.NAME.lease`) removed, with their claim or left without one.
    public var removedMarkers = 0
    /// Lease files of dead processes (`.leases/ID`) removed once no marker named them.
    public var removedLeases = 0

    public init() {}
}

extension Spool {
    /// Most lease files one recovery pass looks at (the rest wait for the next pass).
    static let leasesSweptPerPass = 512

    /// Files in `tmp/` older than this are a writer's leftovers (36 hours, as in Maildir).
    public static let staleTemporaryMilliseconds: Int64 = 36 * 3600 * 1000

    /// One pass of crash recovery, safe to run from any number of processes at once:
    /// - a `cur/` file is a dead claim when its lock can be taken and it is not parked under a
    ///   live lease (its marker `cur/.NAME.lease` is missing, or names a lease whose lock can be
    ///   taken): if its result is in `done/` or `failed/` the stale copy goes, else the job goes
    ///   back to `new/` with `attempts` raised; its marker goes with it;
    /// - markers left without their `cur/` file, and lease files of dead processes that no marker
    ///   names any more, are removed;
    /// - a cancel hold (`new/.cancel.*`) whose canceller died goes back under its name, or is
    ///   retired if its dead letter is in `failed/`;
    /// - a `failed/KEY.original` without its `KEY.json` gets its dead letter rewritten;
    /// - `tmp/` loses retired files and writers' leftovers older than 36 hours.
    /// A live claim is never touched. The pass keeps the lock of every dead lease it meets until it
    /// ends: meanwhile it alone removes markers naming them (see docs/spool-format.md).
    public func recover() throws(SpoolError) -> RecoveryReport {
        var report = RecoveryReport()
        try wrap { () throws(SystemCallError) in
            let leases = LeaseCheck(self, holding: true)
            defer { leases.close() }
            let names = try Sys.list(dir(.cur))
            for name in names where !name.hasPrefix(".") {
                try recoverClaim(name, leases, &report)
            }
            try sweepMarkers(names, leases, &report)
            try sweepPartials(names)
            try sweepLeases(leases, &report)
            try sweepForwarded(&report)
            try recoverCancelHolds(&report)
            try repairRejections(&report)
            try sweepTemporaries(&report)
        }
        return report
    }

    /// Whether `cur/NAME` is parked under a live lease; also what its marker says, so a caller that
    /// goes on to treat the claim as dead knows whether there is a marker to remove. "Alive" may be
    /// trusted at any time; "not alive" only once the caller holds the file's lock (and has then
    /// checked the file is still at its name).
    func parkedAlive(_ name: String, _ leases: LeaseCheck) throws(SystemCallError) -> (alive: Bool, marker: Sys.Link) {
        let link = try Sys.readLink(Spool.markerName(name), in: dir(.cur))
        if link == .missing { return (false, link) }
        return (try leases.state(of: link) == .alive, link)
    }

    func recoverClaim(_ name: String, _ leases: LeaseCheck, _ report: inout RecoveryReport) throws(SystemCallError) {
        let cur = dir(.cur)
        // Fast path for the common case, a claim parked under a live lease: one readlink, no open.
        // (Taking a claim for live is always safe; only "dead" needs the steps below.)
        if try parkedAlive(name, leases).alive { report.live += 1; return }
        let fd: FileDescriptor
        do throws(SystemCallError) { fd = try Sys.openForReading(name, in: cur) } catch {
            if error.errno == .noSuchFileOrDirectory { return }
            if error.errno == .tooManySymbolicLinkLevels { try moveBackToNew(name); report.givenBack.append(name); return }
            throw error
        }
        defer { Sys.close(fd) }
        // The lock held: a claimer is at work on it (claiming, or keeping its descriptor).
        guard try Sys.tryLock(fd, path: cur.path(name)) else { report.live += 1; return }
        // Parked under a live lease: its owner is at work on it.
        let (alive, marker) = try parkedAlive(name, leases)
        if alive { report.live += 1; return }
        // Dead, or gone: is the file still the one at cur/NAME? (Its owner may have settled it and
        // removed the marker since: the file leaves cur/ before its marker does.)
        let st = try Sys.stat(fd, path: cur.path(name))
        guard st.st_nlink > 0, let here = try Sys.stat(name, in: cur), here.sameFile(as: st) else { return }
        // Ours to settle. The marker names a dead lease whose lock this pass holds, or no lease; and
        // while we hold the file's lock at cur/NAME nobody can park another claim of NAME.
        if marker != .missing, try Sys.unlinkIfPresent(Spool.markerName(name), in: cur) { report.removedMarkers += 1 }

        let id = Job.id(fromFileName: name)
        // A move between new/ and cur/ cut between its link and its unlink (the fallback of
        // renameat2(RENAME_NOREPLACE) on filesystems without it) leaves one file under both names.
        // Giving this name back would make a second job of it; dropping it finishes the move back.
        if st.st_nlink > 1 {
            for twin in Set([name, id + ".json"]) {
                guard let other = try Sys.stat(twin, in: dir(.new)), other.sameFile(as: st) else { continue }
                try retire(name)
                report.givenBack.append(name)
                return
            }
        }
        if name.hasSuffix(".json"), JobID.isValid(id) {
            for state in [SpoolState.done, .failed] {
                guard try Sys.exists(name, in: dir(state)) else { continue }
                try retire(name)
                removePartial(id)
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
            do {
                try fail(
                    claim,
                    Failure(
                        kind: IntakeError.Kind.abandoned.rawValue,
                        message: "claimed \(job.attempts) times without an answer; the job may crash its workers"))
            } catch { if case .system(let e) = error { throw e } }
            report.deadLettered.append(id)
            return
        }
        try putBack(id: id, bytes: job.json().serialized())
        report.givenBack.append(id)
    }

    /// Removes markers whose `cur/` file is gone (their owner died between settling the file and
    /// removing the marker) — only those naming a dead lease whose lock this pass holds, read
    /// again under that lock. A marker naming no lease is left alone: it can only be made by hand,
    /// and only a holder of its claim file's lock may remove one (see docs/spool-format.md).
    func sweepMarkers(_ names: [String], _ leases: LeaseCheck, _ report: inout RecoveryReport) throws(SystemCallError) {
        let cur = dir(.cur)
        for marker in names where marker.hasPrefix(".") {
            guard let claim = Spool.claimName(ofMarker: marker), !claim.hasPrefix("."), try !Sys.exists(claim, in: cur) else { continue }
            let link = try Sys.readLink(marker, in: cur)
            guard try leases.state(of: link) == .dead, try Sys.readLink(marker, in: cur) == link else { continue }
            if try Sys.unlinkIfPresent(marker, in: cur) { report.removedMarkers += 1 }
        }
    }

    /// Removes the lease files of dead processes that no marker names any more. Every dead lease
    /// is locked first (by this pass), and only then is `cur/` read for the markers that name
    /// them: a dead lease gains no marker, so one that none names now never will again.
    func sweepLeases(_ leases: LeaseCheck, _ report: inout RecoveryReport) throws(SystemCallError) {
        let top = try leases.root()
        guard let area = try Sys.openDirectoryIfPresent(Spool.leasesDirectory, in: top) else { return }
        defer { Sys.close(area.fd) }
        // A bounded number of new locks per pass (each is a descriptor kept until the pass ends).
        var looked = 0
        for id in try Sys.list(area) where !id.hasPrefix(".") && looked < Spool.leasesSweptPerPass {
            looked += 1
            _ = try leases.state(of: id)
        }
        let dead = Set(leases.heldDead)
        guard !dead.isEmpty else { return }
        let cur = dir(.cur)
        var named = Set<String>()
        for marker in try Sys.list(cur) where marker.hasPrefix(".") && Spool.claimName(ofMarker: marker) != nil {
            if case .target(let id) = try Sys.readLink(marker, in: cur) { named.insert(id) }
        }
        for id in dead.subtracting(named) {
            _ = try Sys.unlinkIfPresent(Spool.stateName(ofLease: id), in: area)  // what the dead process published
            if try Sys.unlinkIfPresent(id, in: area) { report.removedLeases += 1 }
        }
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
            if try Sys.unlinkIfPresent(name, in: tmp) { report.removedTemporaries += 1 }
        }
    }
}
