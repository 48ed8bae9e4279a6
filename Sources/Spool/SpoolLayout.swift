#if canImport(Glibc)
import Glibc
#endif

/// Who may do what in a spool: the owners and modes of its directories (docs/spool-format.md,
/// "Who can do what").
public enum SpoolLayout: Sendable, Equatable {
    /// One group: its members may do everything (every directory `2770`). Whoever may enqueue
    /// may also write `done/`, so a web server in the group could forge a result.
    case sharedGroup
    /// The worker's user owns the spool; the web server's group may enqueue (`tmp/`, `new/`),
    /// cancel a waiting job (a hold in `new/`, its dead letter in `failed/`) and read everything,
    /// but not create, change or remove anything in `cur/`, `done/`, `forwarded/` or `.leases/`,
    /// nor touch the worker's files in `tmp/` (sticky). The worker's user must be in the group
    /// (it reads the jobs the web server writes, mode `0640`).
    case twoUser(worker: UInt32, group: UInt32)  // uid, gid

    /// The mode of one of the spool's directories (`""` is the spool itself).
    public func mode(of directory: String) -> UInt32 {
        guard case .twoUser = self else { return Spool.directoryMode }
        switch directory {
        case "tmp": return 0o3770  // sticky: each user may rename or remove only its own files
        case "new", "failed", Spool.idempotencyArea, Spool.waitingCountArea, Spool.batchArea: return 0o2770
        default: return 0o2750  // the spool itself, cur/, done/, forwarded/, .leases/: the worker's alone
        }
    }

    /// The directories a layout sets, relative to the spool: the states, then the dot areas
    /// the two-user layout must make up front (the web server could not create them later).
    var directories: [String] {
        let states = SpoolState.allCases.map(\.rawValue)
        guard case .twoUser = self else { return states }
        return states + [Spool.leasesDirectory, Spool.idempotencyArea, Spool.waitingCountArea, Spool.batchArea]
    }
}

extension Spool {
    /// Creates the spool (as ``create(at:limits:)``) and gives every directory the layout's owner
    /// and mode — existing ones too, so that running it again converts a spool. The two-user
    /// layout needs the right to `chown` (root).
    @discardableResult
    public static func create(at path: String, layout: SpoolLayout, limits: Limits = .default) throws -> Spool {
        _ = try create(at: path, limits: limits)
        do {
            for sub in layout.directories {
                let p = sub.isEmpty ? path : path + "/" + sub
                do throws(SystemCallError) { try Sys.makeDirectory(p, mode: layout.mode(of: sub)) } catch  where error.errno == .fileExists {}
            }
            // The spool itself last: while it is being converted the web server keeps its access.
            for sub in layout.directories + [""] {
                let p = sub.isEmpty ? path : path + "/" + sub
                if case .twoUser(let worker, let group) = layout { try Sys.chown(p, owner: worker, group: group) }
                try Sys.chmod(p, mode: layout.mode(of: sub))
            }
        } catch {
            throw SpoolError.system(error)
        }
        return try Spool(path: path, limits: limits)
    }
}
