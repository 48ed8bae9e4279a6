import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Small side records kept in a dot-named directory at the spool's root (such as
/// `.idempotency/`), outside the job states: workers and recovery never look there.
///
/// A record is written like a job (`tmp/`, `fsync`, `renameat2(RENAME_NOREPLACE)`, `fsync` of the
/// directory), so it is either absent or whole. See docs/spool-format.md.
extension Spool {
    /// The directory that holds `Idempotency-Key` records of the CGI endpoint.
    public static let idempotencyArea = ".idempotency"
    /// The directory that holds the CGI endpoint's recent counts of waiting jobs per tenant tag:
    /// caches, rebuilt from `new/` whenever in doubt.
    public static let waitingCountArea = ".waiting"
    /// The directory of the Batch API (docs/batch.md): uploaded files (`file-ID`, `file-ID.meta`)
    /// and batch records (`batch_ID`).
    public static let batchArea = ".batches"

    /// A record's bytes (at most `limit`, 64 KiB unless said) and when it was written; nil when there is none.
    public func readRecord(_ name: String, in area: String, limit: Int = 64 << 10) throws(SpoolError) -> (bytes: [UInt8], modifiedMilliseconds: Int64)? {
        guard JobID.isValid(name) else { return nil }
        return try wrap { () throws(SystemCallError) -> (bytes: [UInt8], modifiedMilliseconds: Int64)? in
            guard let d = try openArea(area) else { return nil }
            defer { Sys.close(d.fd) }
            guard let fd = try Sys.openForReadingIfPresent(name, in: d) else { return nil }
            defer { Sys.close(fd) }
            let st = try Sys.stat(fd, path: d.path(name))
            guard st.isRegularFile else { return nil }
            return (try Sys.readAll(fd, limit: limit, path: d.path(name)), st.modifiedMilliseconds)
        }
    }

    /// Writes a record, durably unless `durability` is `.volatile` (for caches that can be
    /// rebuilt: no fsync, but still whole or absent). Without `replacing`, an existing record is
    /// kept and false is returned (the caller lost a race and should read the winner's record).
    @discardableResult
    public func writeRecord(
        _ name: String, in area: String, bytes: [UInt8], replacing: Bool = false, durability: Durability = .durable
    ) throws(SpoolError) -> Bool {
        let sync = durability == .durable
        precondition(area.hasPrefix(".") && !area.contains("/"), "record areas are dot-named directories")
        precondition(JobID.isValid(name), "record names follow the job id syntax")
        return try wrap { () throws(SystemCallError) -> Bool in
            let top = try root()
            defer { Sys.close(top.fd) }
            let d: Directory
            if let existing = try Sys.openDirectoryIfPresent(area, in: top) {
                d = existing
            } else {
                do throws(SystemCallError) {
                    _ = try Sys.retrying("mkdirat", top.path(area)) { mkdirat(top.fd.rawValue, area, Spool.directoryMode) }
                    _ = try Sys.retrying("fchmodat", top.path(area)) { fchmodat(top.fd.rawValue, area, Spool.directoryMode, 0) }
                    try Sys.fsync(top)
                } catch  where error.errno == .fileExists {}
                d = try Sys.openDirectory(area, in: top)
            }
            defer { Sys.close(d.fd) }
            let (tmpName, fd) = try writeTemporary(bytes, base: name, suffix: "record", sync: sync)
            Sys.close(fd)
            if replacing {
                try Sys.renameReplacing(tmpName, in: dir(.tmp), to: name, in: d)
            } else if try !Sys.renameNoReplace(tmpName, in: dir(.tmp), to: name, in: d) {
                try? Sys.unlink(tmpName, in: dir(.tmp))
                return false
            }
            if sync { try Sys.fsync(d) }
            return true
        }
    }

    /// Appends `bytes` to an existing record with one `write` (`O_APPEND`, no fsync); false when
    /// there is no such record. Appends of concurrent processes do not overwrite each other, but an
    /// append racing with ``writeRecord(_:in:bytes:replacing:durability:)`` may land in the
    /// replaced file and be lost.
    @discardableResult
    public func appendRecord(_ name: String, in area: String, bytes: [UInt8]) throws(SpoolError) -> Bool {
        guard JobID.isValid(name) else { return false }
        return try wrap { () throws(SystemCallError) -> Bool in
            guard let d = try openArea(area) else { return false }
            defer { Sys.close(d.fd) }
            let fd: FileDescriptor
            do throws(SystemCallError) { fd = try Sys.openForAppending(name, in: d) } catch  where error.errno == .noSuchFileOrDirectory {
                return false
            }
            defer { Sys.close(fd) }
            try Sys.writeAll(fd, bytes, path: d.path(name))
            return true
        }
    }

    /// Removes a record; false when there was none.
    @discardableResult
    public func removeRecord(_ name: String, in area: String) throws(SpoolError) -> Bool {
        guard JobID.isValid(name) else { return false }
        return try wrap { () throws(SystemCallError) -> Bool in
            guard let d = try openArea(area) else { return false }
            defer { Sys.close(d.fd) }
            let removed = try Sys.unlinkIfPresent(name, in: d)
            if removed { try Sys.fsync(d) }
            return removed
        }
    }

    /// The names of the records in `area` (none when it does not exist yet).
    public func recordNames(in area: String) throws(SpoolError) -> [String] {
        return try wrap { () throws(SystemCallError) -> [String] in
            guard let d = try openArea(area) else { return [] }
            defer { Sys.close(d.fd) }
            return try Sys.list(d).filter { !$0.hasPrefix(".") }
        }
    }

    /// A record area, opened; nil when it does not exist yet. The caller closes it.
    func openArea(_ area: String) throws(SystemCallError) -> Directory? {
        precondition(area.hasPrefix(".") && !area.contains("/"), "record areas are dot-named directories")
        let top = try root()
        defer { Sys.close(top.fd) }
        return try Sys.openDirectoryIfPresent(area, in: top)
    }

    /// The spool's own directory, opened afresh (the parent of `tmp/`).
    func root() throws(SystemCallError) -> Directory {
        try Sys.openDirectory("..", in: dir(.tmp)).renamed(path)
    }
}

extension Directory {
    /// The same descriptor with another path for messages.
    fileprivate func renamed(_ path: String) -> Directory { Directory(fd: fd, path: path) }
}
