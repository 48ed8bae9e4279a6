public import SystemPackage

/// A failed system call: which call, on which path, and the `errno` it returned.
public struct SystemCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The C function that failed, e.g. `"renameat2"`.
    public var call: String
    /// The path (or paths, `a -> b`) the call worked on.
    public var path: String
    public var errno: Errno

    public init(call: String, path: String, errno: Errno) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String { "\(call) \(path): \(errno.description) (errno \(errno.rawValue))" }

    /// True for errors a later retry may not meet (full disk, quota, exhausted descriptors).
    public var isTemporary: Bool {
        let temporary: [Errno] = [.noSpace, .diskQuotaExceeded, .tooManyOpenFiles, .noMemory, .resourceTemporarilyUnavailable, .tooManyOpenFilesInSystem]
        return temporary.contains(errno)
    }
}
