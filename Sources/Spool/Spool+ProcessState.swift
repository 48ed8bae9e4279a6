import SystemPackage

#if canImport(Glibc)
import Glibc
public import JSON
#endif

/// What a live process says about itself (a worker: its circuit breaker), for `llmspool status`.
///
/// The document sits beside the process's lease, at `.leases/.ID.state`, and counts only while
/// that lease is held: a process that died says nothing, whatever its file says, and recovery
/// removes the file with the lease.
public struct ProcessState: Sendable, Equatable {
    /// The lease id of the process.
    public var leaseID: String
    public var document: JSONValue
}

extension Spool {
    static func stateName(ofLease id: String) -> String { "." + id + ".state" }

    /// Replaces this object's published state with `document` (taking the lease if not yet
    /// taken). Not fsynced: it describes a running process, which a power loss ends anyway.
    public func publishState(_ document: JSONValue) throws(SpoolError) {
        try wrap { () throws(SystemCallError) in
            let lease = try lease()
            let root = try root()
            defer { Sys.close(root.fd) }
            let (name, fd) = try writeTemporary(document.serialized(), base: lease.id, suffix: "state", sync: false)
            Sys.close(fd)
            do throws(SystemCallError) {
                try Sys.renameReplacing(name, in: dir(.tmp), to: Spool.leasesDirectory + "/" + Spool.stateName(ofLease: lease.id), in: root)
            } catch {
                try? Sys.unlink(name, in: dir(.tmp))
                throw error
            }
        }
    }

    /// The states published by live processes, oldest lease first. Files that do not parse are skipped.
    public func liveStates() throws(SpoolError) -> [ProcessState] {
        try wrap { () throws(SystemCallError) -> [ProcessState] in
            let check = LeaseCheck(self, holding: false)
            defer { check.close() }
            let top = try check.root()
            guard let area = try Sys.openDirectoryIfPresent(Spool.leasesDirectory, in: top) else { return [] }
            defer { Sys.close(area.fd) }
            var states: [ProcessState] = []
            for name in try Sys.list(area).sorted() where name.hasPrefix(".") && name.hasSuffix(".state") {
                let id = String(name.dropFirst().dropLast(".state".count))
                guard try check.state(of: id) == .alive else { continue }
                guard let fd = try Sys.openForReadingIfPresent(name, in: area) else { continue }
                defer { Sys.close(fd) }
                let bytes = try Sys.readAll(fd, limit: 64 * 1024, path: area.path(name))
                if let doc = try? JSONParser.parse(bytes) { states.append(ProcessState(leaseID: id, document: doc)) }
            }
            return states
        }
    }
}
