import SystemPackage

#if canImport(Glibc)
import Glibc
import JSON
#endif

/// Counts per state and the age of the oldest waiting job.
public struct SpoolStatus: Sendable, Equatable {
    public var counts: [SpoolState: Int] = [:]
    /// Milliseconds since the oldest file in `new/` was last modified, nil when `new/` is empty.
    public var oldestWaitingMilliseconds: Int64?
    /// Milliseconds since the oldest file in `forwarded/` was last written (the job's file keeps
    /// its time through the bridge's rename, so: since it was queued), nil when none is out on Kafka.
    public var oldestForwardedMilliseconds: Int64?
    /// `cur/` files whose claiming process is alive (the file's lock held, or parked under a live lease).
    public var liveClaims = 0
    /// `cur/` files whose claiming process died: `llmspool recover` gives them back.
    public var deadClaims = 0

    public init() {}
}

/// Where a job is, and its file's bytes.
public struct JobLocation: Sendable {
    public var id: String
    public var state: SpoolState
    /// The file's name in its directory (`ID.json`, or a hand-dropped name in `new/`).
    public var name: String
    public var bytes: [UInt8]
    public var modifiedMilliseconds: Int64
}

/// One entry of ``Spool/list(_:)``.
public struct JobEntry: Sendable, Equatable {
    public var id: String
    public var state: SpoolState
    public var name: String
    public var modifiedMilliseconds: Int64
    /// For a dead letter of a file that could not become a job (its key is not a name it was
    /// given): the name it was dropped under.
    public var droppedAs: String?
}

extension Spool {
    /// Counts of each state (dot names and `failed/*.original` are not counted), the oldest
    /// waiting job's age, and how many claims are live or dead.
    public func status() throws(SpoolError) -> SpoolStatus {
        try wrap { () throws(SystemCallError) in
            var s = SpoolStatus()
            let now = Sys.nowMilliseconds()
            for state in SpoolState.allCases where state != .forwarded || hasForwarded {
                let names = try Sys.list(dir(state)).filter { !$0.hasPrefix(".") && !$0.hasSuffix(".original") }
                s.counts[state] = names.count
                if state == .new || state == .forwarded {
                    var oldest: Int64?
                    for name in names {
                        guard let st = try Sys.stat(name, in: dir(state)) else { continue }
                        let age = now - st.modifiedMilliseconds
                        oldest = max(oldest ?? age, age)
                    }
                    if state == .new { s.oldestWaitingMilliseconds = oldest } else { s.oldestForwardedMilliseconds = oldest }
                }
                if state == .cur {
                    // The rule recovery uses: live when the file's lock is held or it is parked under a live lease.
                    let leases = LeaseCheck(self, holding: false)
                    defer { leases.close() }
                    for name in names {
                        // Parked under a live lease: live, without opening the file.
                        if try parkedAlive(name, leases).alive { s.liveClaims += 1; continue }
                        guard let fd = try? Sys.openForReading(name, in: dir(.cur)) else { continue }
                        defer { Sys.close(fd) }
                        if try Sys.tryLock(fd, path: dir(.cur).path(name)), try !parkedAlive(name, leases).alive {
                            s.deadClaims += 1
                        } else {
                            s.liveClaims += 1
                        }
                    }
                }
            }
            return s
        }
    }

    /// The jobs in the given states, oldest first within each state.
    public func list(_ states: [SpoolState] = SpoolState.jobStates) throws(SpoolError) -> [JobEntry] {
        try wrap { () throws(SystemCallError) in
            var entries: [JobEntry] = []
            for state in states where state != .forwarded || hasForwarded {
                var here: [JobEntry] = []
                let names = try Sys.list(dir(state))
                let originals = state == .failed ? Set(names.filter { $0.hasSuffix(".original") }) : []
                for name in names where !name.hasPrefix(".") && !name.hasSuffix(".original") {
                    guard let st = try Sys.stat(name, in: dir(state)) else { continue }
                    let id = Job.id(fromFileName: name)
                    var entry = JobEntry(id: id, state: state, name: name, modifiedMilliseconds: st.modifiedMilliseconds)
                    // Only rejected files keep an original beside their dead letter: read just those.
                    if originals.contains(id + ".original"), let dropped = try droppedName(of: name), dropped != name {
                        entry.droppedAs = dropped
                    }
                    here.append(entry)
                }
                entries += here.sorted { ($0.modifiedMilliseconds, $0.name) < ($1.modifiedMilliseconds, $1.name) }
            }
            return entries
        }
    }

    /// Finds a job by id: `ID.json` in `done/ failed/ forwarded/ cur/ new/` (the first found), else a hand-dropped file in
    /// `new/` whose `jobId` is `id`. Nil when there is none.
    public func find(_ id: String) throws(SpoolError) -> JobLocation? {
        guard JobID.isValid(id) else { return nil }
        return try wrap { () throws(SystemCallError) -> JobLocation? in
            // Later states first: while a job is being settled it is briefly in both cur/ and
            // done/ (or failed/), and the result is what counts.
            for state in [SpoolState.done, .failed, .forwarded, .cur, .new] where state != .forwarded || hasForwarded {
                if let loc = try read(id + ".json", in: state, id: id) { return loc }
            }
            for name in try Sys.list(dir(.new)) where !name.hasPrefix(".") && name != id + ".json" {
                guard let loc = try read(name, in: .new, id: id),
                    let job = try? Job.decode(loc.bytes, limits: limits), job.jobId == id
                else { continue }
                return loc
            }
            return nil
        }
    }

    /// The dead letters of files dropped as `name` that could not become jobs (an invalid name, an
    /// id clash, bad contents), oldest first. `name` is the file's name, with or without `.json`;
    /// it is only compared, never used as a path. Their ``JobLocation/id`` is the key in `failed/`.
    public func deadLetters(droppedAs name: String) throws(SpoolError) -> [JobLocation] {
        guard !name.isEmpty, !name.contains("/") else { return [] }
        return try wrap { () throws(SystemCallError) -> [JobLocation] in
            let names = try Sys.list(dir(.failed))
            var found: [JobLocation] = []
            for original in names where original.hasSuffix(".original") && !original.hasPrefix(".") {
                let key = String(original.dropLast(".original".count))
                guard let dropped = try droppedName(of: key + ".json"), dropped == name || Job.id(fromFileName: dropped) == name,
                    let loc = try read(key + ".json", in: .failed, id: key)
                else { continue }
                found.append(loc)
            }
            return found.sorted { ($0.modifiedMilliseconds, $0.id) < ($1.modifiedMilliseconds, $1.id) }
        }
    }

    /// The name a rejected file was dropped under, from its dead letter `failed/NAME`'s `original.name`.
    func droppedName(of name: String) throws(SystemCallError) -> String? {
        guard let loc = try read(name, in: .failed, id: Job.id(fromFileName: name)),
            let doc = try? JSONParser.parse(loc.bytes)
        else { return nil }
        return doc["original"]?["name"]?.stringValue
    }

    func read(_ name: String, in state: SpoolState, id: String) throws(SystemCallError) -> JobLocation? {
        let d = dir(state)
        let fd: FileDescriptor
        do throws(SystemCallError) { fd = try Sys.openForReading(name, in: d) } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .tooManySymbolicLinkLevels { return nil }
            throw error
        }
        defer { Sys.close(fd) }
        let st = try Sys.stat(fd, path: d.path(name))
        guard st.isRegularFile else { return nil }
        let bytes = try Sys.readAll(fd, limit: max(limits.maxFileBytes, 8 << 20), path: d.path(name))
        return JobLocation(id: id, state: state, name: name, bytes: bytes, modifiedMilliseconds: st.modifiedMilliseconds)
    }

    /// Puts a dead-lettered job back into `new/` with its attempts reset; its history is kept.
    /// A job in `forwarded/` (handed to Kafka, no result back) is moved back to `new/` as it is.
    /// Fails for a job that is in neither, or whose original was not a valid job.
    public func requeue(_ id: String) throws(SpoolError) {
        guard let loc = try find(id) else { throw .notFound(id: id) }
        if loc.state == .forwarded {
            try wrap { () throws(SystemCallError) in
                let name = id + ".json"
                guard try Sys.renameNoReplace(name, in: dir(.forwarded), to: name, in: dir(.new)) else {
                    throw SystemCallError(call: "renameat2", path: dir(.new).path(name), errno: .fileExists)
                }
                try Sys.fsync(dir(.new))
                try Sys.fsync(dir(.forwarded))
            }
            return
        }
        guard loc.state == .failed else {
            throw .cannotRequeue(id: id, reason: "it is in \(loc.state.rawValue)/, not failed/ or forwarded/")
        }
        let parsed = try? JSONParser.parse(loc.bytes)
        guard let doc = parsed, let jobJSON = doc["job"] else {
            let file = path(of: id + ".original", in: .failed)
            let error = parsed?["error"]
            let why = error?["message"]?.stringValue.map { " (\($0))" } ?? ""
            if error?["kind"]?.stringValue == IntakeError.Kind.idClash.rawValue {
                throw .cannotRequeue(id: id, reason: "its original is a valid job whose id was taken\(why); give it a free jobId in \(file) and submit it")
            }
            throw .cannotRequeue(id: id, reason: "its original was not a valid job\(why); fix \(file) and submit it")
        }
        var job: Job
        do { job = try Job(json: jobJSON, limits: limits) } catch {
            throw .cannotRequeue(id: id, reason: "its stored job is not valid: \(error)")
        }
        job.jobId = id
        job.attempts = 0
        job.history = (doc["history"]?.arrayValue ?? job.history) + [Documents.event("requeued", "requeued from failed/")]
        let bytes = job.json().serialized()
        try wrap { () throws(SystemCallError) in
            // Into new/ first (no replace), then out of failed/: a crash between leaves a
            // duplicate dead letter, never a lost job.
            let (tmpName, fd) = try writeTemporary(bytes, base: id, suffix: "requeue", sync: true)
            Sys.close(fd)
            guard try Sys.renameNoReplace(tmpName, in: dir(.tmp), to: id + ".json", in: dir(.new)) else {
                try? Sys.unlink(tmpName, in: dir(.tmp))
                throw SystemCallError(call: "renameat2", path: dir(.new).path(id + ".json"), errno: .fileExists)
            }
            try Sys.fsync(dir(.new))
            try Sys.renameReplacing(id + ".json", in: dir(.failed), to: ".spent." + tmpName, in: dir(.tmp))
            try Sys.fsync(dir(.failed))
        }
    }

    /// Removes `done/` or `failed/` entries last modified more than `olderThanMilliseconds` ago
    /// (with their `.original` files). Returns how many jobs were removed.
    public func purge(_ state: SpoolState, olderThanMilliseconds age: Int64) throws(SpoolError) -> Int {
        precondition(state == .done || state == .failed, "only done/ and failed/ can be purged")
        return try wrap { () throws(SystemCallError) -> Int in
            let d = dir(state)
            let now = Sys.nowMilliseconds()
            var removed = 0
            for name in try Sys.list(d) where !name.hasPrefix(".") && !name.hasSuffix(".original") {
                guard let st = try Sys.stat(name, in: d), now - st.modifiedMilliseconds > age else { continue }
                let key = Job.id(fromFileName: name)
                try Sys.unlinkIfPresent(key + ".original", in: d)
                if try Sys.unlinkIfPresent(name, in: d) { removed += 1 }
            }
            try Sys.fsync(d)
            return removed
        }
    }
}
