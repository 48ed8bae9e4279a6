import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A spool directory: `tmp/ new/ cur/ done/ failed/`, where every state change is a rename.
///
/// A `Spool` holds one open descriptor per state directory (and, once it has claimed a job, one
/// for its lease) and does every operation relative to them, so it keeps working on the same directories even if the path is renamed under it.
/// It is safe to use from many threads and many processes at once.
public final class Spool: Sendable {
    public let path: String
    public let limits: Limits
    let dirs: [Directory]  // indexed by SpoolState.required's order
    /// `forwarded/`, when the spool has one (it is optional; see ``SpoolState/required``).
    let forwardedDir: Directory?
    /// Whether one `syncfs` makes a group commit's files durable; where it does not (FUSE), each
    /// file of a group commit is fsynced as it is written instead.
    let syncfsIsDurable: Bool
    /// This object's lease (`.leases/ID`, locked), taken at the first claim; see ``Lease``.
    let leaseSlot = Mutex<Lease?>(nil)

    /// Mode of the spool's directories: owner and group may enqueue and work; setgid so that
    /// files inherit the spool's group (see docs/spool-format.md).
    static let directoryMode: mode_t = 0o2770
    /// Mode of job and result files: the group may read them.
    static let fileMode: mode_t = 0o640

    /// Opens an existing spool; fails with ``SpoolError/notASpool(path:missing:)`` if a directory is missing.
    public init(path: String, limits: Limits = .default) throws {
        self.path = path
        self.limits = limits
        let root: Directory
        do { root = try Sys.openDirectory(path) } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory {
                throw SpoolError.notASpool(path: path, missing: ["the directory itself"])
            }
            throw SpoolError.system(error)
        }
        defer { Sys.close(root.fd) }
        var opened: [Directory] = []
        var missing: [String] = []
        for state in SpoolState.required {
            do { opened.append(try Sys.openDirectory(state.rawValue, in: root)) } catch {
                if error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory {
                    missing.append(state.rawValue + "/")
                } else {
                    opened.forEach { Sys.close($0.fd) }
                    throw SpoolError.system(error)
                }
            }
        }
        if !missing.isEmpty {
            opened.forEach { Sys.close($0.fd) }
            throw SpoolError.notASpool(path: path, missing: missing)
        }
        do { forwardedDir = try Sys.openDirectory(SpoolState.forwarded.rawValue, in: root) } catch {
            if error.errno != .noSuchFileOrDirectory && error.errno != .notDirectory {
                opened.forEach { Sys.close($0.fd) }
                throw SpoolError.system(error)
            }
            forwardedDir = nil
        }
        dirs = opened
        syncfsIsDurable = Sys.syncfsIsDurable(opened[0])
    }

    deinit {
        dirs.forEach { Sys.close($0.fd) }
        if let f = forwardedDir { Sys.close(f.fd) }
    }

    /// Whether the spool has a `forwarded/` directory (jobs handed to Kafka by the bridge).
    public var hasForwarded: Bool { forwardedDir != nil }

    /// The job states this spool has directories for.
    public var presentJobStates: [SpoolState] { hasForwarded ? SpoolState.jobStates : SpoolState.jobStates.filter { $0 != .forwarded } }

    /// Creates the spool's directories (those missing, `forwarded/` included) and opens it.
    /// Existing directories are left as they are.
    @discardableResult
    public static func create(at path: String, limits: Limits = .default) throws -> Spool {
        do {
            // Parents as `mkdir -p` makes them (mode 0777 less the umask).
            var parent = path.hasPrefix("/") ? "" : "."
            for component in path.split(separator: "/").dropLast() {
                parent += "/" + component
                do throws(SystemCallError) { try Sys.makeDirectory(parent, mode: 0o777) } catch  where error.errno == .fileExists {}
            }
            try makeSpoolDirectory(path)
            // A directory that is not yet a spool (the repository's spool/, holding only its README)
            // becomes one with the contract mode; an existing spool keeps the modes it was given.
            if try makeSpoolDirectory(path + "/tmp") { try Sys.chmod(path, mode: directoryMode) }
            for state in SpoolState.allCases where state != .tmp {
                try makeSpoolDirectory(path + "/" + state.rawValue)
            }
            // A spool that `init` reported must outlive a power cut: each directory, and every
            // entry that names it on the way down from the path's first component, is fsynced.
            for sub in SpoolState.allCases.map({ "/" + $0.rawValue }) + [""] {
                try syncDirectory(path + sub)
            }
            // Above the spool, a directory this user may pass through but not read cannot be
            // opened to be fsynced: that one is left to its owner.
            var up = path
            while let slash = up.lastIndex(of: "/"), slash != up.startIndex {
                up = String(up[..<slash])
                try syncDirectory(up, unless: [.permissionDenied])
            }
            try syncDirectory(path.hasPrefix("/") ? "/" : ".", unless: [.permissionDenied])
        } catch {
            throw SpoolError.system(error)
        }
        return try Spool(path: path, limits: limits)
    }

    /// Creates one of the spool's directories with its contract mode (mkdir honours the umask,
    /// so the mode is set again); an existing one is left as it is.
    @discardableResult
    static func makeSpoolDirectory(_ p: String) throws(SystemCallError) -> Bool {
        do throws(SystemCallError) {
            try Sys.makeDirectory(p, mode: directoryMode)
            try Sys.chmod(p, mode: directoryMode)
            return true
        } catch  where error.errno == .fileExists {
            return false
        }
    }

    static func syncDirectory(_ p: String, unless tolerated: [Errno] = []) throws(SystemCallError) {
        do throws(SystemCallError) {
            let d = try Sys.openDirectory(p)
            defer { Sys.close(d.fd) }
            try Sys.fsync(d)
        } catch  where tolerated.contains(error.errno) {}
    }

    /// The name of this host (`gethostname`), as job histories record it.
    public static var hostName: String { Sys.hostName() }

    /// The names in a state directory, without dot files, in directory order.
    public func names(in state: SpoolState) throws(SpoolError) -> [String] {
        try wrap { () throws(SystemCallError) in try Sys.list(dir(state)) }.filter { !$0.hasPrefix(".") }
    }

    func dir(_ state: SpoolState) -> Directory {
        switch state {
        case .tmp: dirs[0]
        case .new: dirs[1]
        case .cur: dirs[2]
        case .done: dirs[3]
        case .failed: dirs[4]
        case .forwarded:
            // Callers check hasForwarded (or presentJobStates) first.
            forwardedDir ?? { preconditionFailure("\(path) has no forwarded/ directory") }()
        }
    }

    /// The path of a file in the spool, for messages.
    public func path(of name: String, in state: SpoolState) -> String { dir(state).path(name) }

    /// A name in `tmp/` that no other writer uses: `ID.PID.RANDOM.SUFFIX`.
    func tmpName(_ base: String, _ suffix: String) -> String {
        "\(base).\(Sys.processID()).\(UInt32.random(in: 0...UInt32.max)).\(suffix)"
    }

    /// Writes `bytes` to a fresh file in `tmp/`, optionally fsynced, and returns its name and open descriptor.
    /// `writeOut` (for writes that are not fsynced) writes the data to the device before returning:
    /// see ``Durability/volatile`` for why.
    func writeTemporary(
        _ bytes: [UInt8], base: String, suffix: String, sync: Bool,
        writeOut: Bool = false
    ) throws(SystemCallError) -> (String, FileDescriptor) {
        let tmp = dir(.tmp)
        let name = tmpName(base, suffix)
        let fd = try Sys.createExclusive(name, in: tmp, mode: Spool.fileMode)
        do {
            try Sys.writeAll(fd, bytes, path: tmp.path(name))
            if sync { try Sys.fsync(fd, path: tmp.path(name)) } else if writeOut { try Sys.writeOut(fd, path: tmp.path(name)) }
        } catch {
            Sys.close(fd)
            try? Sys.unlink(name, in: tmp)
            throw error
        }
        return (name, fd)
    }

    /// The state a job id is in, looking only at canonical names (`ID.json`).
    public func state(of id: String) throws -> SpoolState? {
        guard JobID.isValid(id) else { return nil }
        for state in presentJobStates {
            if try wrap({ () throws(SystemCallError) in try Sys.exists(id + ".json", in: dir(state)) }) { return state }
        }
        return nil
    }

    /// Whether job `id` has ended: `done/` or `failed/` when `ID.json` is there, else nil.
    public func outcome(of id: String) throws(SpoolError) -> SpoolState? {
        guard JobID.isValid(id) else { return nil }
        for state in [SpoolState.done, .failed] {
            if try wrap({ () throws(SystemCallError) in try Sys.exists(id + ".json", in: dir(state)) }) { return state }
        }
        return nil
    }

    /// Runs a system-call body, turning its error into ``SpoolError/system(_:)``.
    @inline(__always)
    func wrap<T>(_ body: () throws(SystemCallError) -> T) throws(SpoolError) -> T {
        do { return try body() } catch { throw .system(error) }
    }
}
