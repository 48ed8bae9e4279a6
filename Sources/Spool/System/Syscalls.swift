import CSpoolShim
public import SystemPackage

// Every file-system call llmspool makes goes through this file: one place to read for crash
// safety, EINTR handling and error reporting. Nothing else in the package calls Glibc for files.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An open directory of the spool: its descriptor plus the path used in error messages.
public struct Directory: Sendable {
    public let fd: FileDescriptor
    public let path: String

    func path(_ name: String) -> String {
        name.hasPrefix("/") || path.isEmpty ? name : path + "/" + name
    }

    /// The current directory, for paths given by the user.
    static let current = Directory(fd: FileDescriptor(rawValue: AT_FDCWD), path: "")
}

enum Sys {
    /// Runs `body` until it does not fail with EINTR; returns its result or throws the call's error.
    @inline(__always)
    static func retrying<T: BinaryInteger>(
        _ call: String, _ path: @autoclosure () -> String, _ body: () -> T
    ) throws(SystemCallError) -> T {
        while true {
            let rc = body()
            if rc >= 0 { return rc }
            let err = Errno(rawValue: llmspool_errno())
            if err == .interrupted { continue }
            throw SystemCallError(call: call, path: path(), errno: err)
        }
    }

    static func openDirectory(_ path: String) throws(SystemCallError) -> Directory {
        let fd = try retrying("open", path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        return Directory(fd: FileDescriptor(rawValue: fd), path: path)
    }

    static func openDirectory(_ name: String, in dir: Directory) throws(SystemCallError) -> Directory {
        let fd = try retrying("openat", dir.path(name)) {
            openat(dir.fd.rawValue, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
        return Directory(fd: FileDescriptor(rawValue: fd), path: dir.path(name))
    }

    /// Opens an existing entry for reading without following symlinks or blocking on FIFOs.
    /// `O_NOATIME` (Linux; glibc declares it only under `_GNU_SOURCE`).
    static let noAccessTime: Int32 = 0o1_000_000

    /// Reading does not update the file's access time (`O_NOATIME`, which saves an inode write
    /// per job; nothing in a spool uses access times) unless the file belongs to another user,
    /// where the kernel refuses it and the file is opened plainly.
    static func openForReading(_ name: String, in dir: Directory) throws(SystemCallError) -> FileDescriptor {
        let flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY
        do throws(SystemCallError) {
            return FileDescriptor(rawValue: try retrying("openat", dir.path(name)) { openat(dir.fd.rawValue, name, flags | noAccessTime) })
        } catch  where error.errno == .notPermitted {
            return FileDescriptor(rawValue: try retrying("openat", dir.path(name)) { openat(dir.fd.rawValue, name, flags) })
        }
    }

    /// Opens an existing regular file for appending, without following symlinks or blocking on FIFOs.
    static func openForAppending(_ name: String, in dir: Directory) throws(SystemCallError) -> FileDescriptor {
        let fd = try retrying("openat", dir.path(name)) {
            openat(dir.fd.rawValue, name, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
        }
        return FileDescriptor(rawValue: fd)
    }

    /// Opens a file for appending, creating it (`mode`) if it does not exist.
    static func openOrCreateForAppending(_ name: String, in dir: Directory, mode: mode_t) throws(SystemCallError) -> FileDescriptor {
        let fd = try retrying("openat", dir.path(name)) {
            openat(dir.fd.rawValue, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, mode)
        }
        return FileDescriptor(rawValue: fd)
    }

    /// Creates a regular file if it is not there, leaving it as it is if it is (read-only and
    /// closed at once: a close without writes brings no `IN_CLOSE_WRITE` to the directory's watchers).
    static func createIfAbsent(_ name: String, in dir: Directory, mode: mode_t) throws(SystemCallError) {
        let fd = try retrying("openat", dir.path(name)) {
            openat(dir.fd.rawValue, name, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, mode)
        }
        close(FileDescriptor(rawValue: fd))
    }

    /// Reads up to `count` bytes at `offset` (`pread`), fewer at the end of the file.
    static func pread(_ fd: FileDescriptor, at offset: Int, count: Int, path: @autoclosure () -> String) throws(SystemCallError) -> [UInt8] {
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = try retrying("pread", path()) {
                bytes.withUnsafeMutableBytes { buf in Glibc.pread(fd.rawValue, buf.baseAddress! + got, count - got, off_t(offset + got)) }
            }
            if n == 0 { break }
            got += n
        }
        bytes.removeLast(count - got)
        return bytes
    }

    /// Creates a new file that must not exist yet (`O_EXCL`).
    static func createExclusive(_ name: String, in dir: Directory, mode: mode_t) throws(SystemCallError) -> FileDescriptor {
        let fd = try retrying("openat", dir.path(name)) {
            openat(dir.fd.rawValue, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        }
        return FileDescriptor(rawValue: fd)
    }

    static func makeDirectory(_ path: String, mode: mode_t) throws(SystemCallError) {
        _ = try retrying("mkdir", path) { mkdir(path, mode) }
    }

    /// `mkdirat` then `fchmodat` (mkdir honours the umask, so the mode is set again).
    /// Fails with `EEXIST` when the entry exists.
    static func makeDirectory(_ name: String, in dir: Directory, mode: mode_t) throws(SystemCallError) {
        _ = try retrying("mkdirat", dir.path(name)) { mkdirat(dir.fd.rawValue, name, mode) }
        _ = try retrying("fchmodat", dir.path(name)) { fchmodat(dir.fd.rawValue, name, mode, 0) }
    }

    /// `symlinkat(target, dir, name)`. Returns false when `name` exists (EEXIST): it never replaces.
    static func symlink(_ target: String, named name: String, in dir: Directory) throws(SystemCallError) -> Bool {
        while true {
            if symlinkat(target, dir.fd.rawValue, name) == 0 { return true }
            let err = Errno(rawValue: llmspool_errno())
            if err == .interrupted { continue }
            if err == .fileExists { return false }
            throw SystemCallError(call: "symlinkat", path: dir.path(name), errno: err)
        }
    }

    /// What `readlinkat` found at a name.
    enum Link: Equatable {
        case missing
        /// The entry exists but is not a symbolic link (EINVAL).
        case notALink
        case target(String)
    }

    /// `readlinkat`: the text of a symbolic link (at most 256 bytes: a longer text comes back cut, which no caller takes for an id).
    static func readLink(_ name: String, in dir: Directory) throws(SystemCallError) -> Link {
        var buf = [CChar](repeating: 0, count: 256)
        while true {
            let n = readlinkat(dir.fd.rawValue, name, &buf, buf.count)
            if n >= 0 {
                return .target(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            let err = Errno(rawValue: llmspool_errno())
            if err == .interrupted { continue }
            if err == .noSuchFileOrDirectory { return .missing }
            if err == .invalidArgument { return .notALink }
            throw SystemCallError(call: "readlinkat", path: dir.path(name), errno: err)
        }
    }

    /// `openDirectory(_:in:)`, or nil when there is no such entry (an optional area not made yet,
    /// a spool removed under us); every other failure is thrown.
    static func openDirectoryIfPresent(_ name: String, in dir: Directory) throws(SystemCallError) -> Directory? {
        do throws(SystemCallError) { return try openDirectory(name, in: dir) } catch  where error.errno == .noSuchFileOrDirectory {
            return nil
        }
    }

    /// `openForReading(_:in:)`, or nil when there is no such entry (renamed or removed by another
    /// process since it was listed); every other failure is thrown.
    static func openForReadingIfPresent(_ name: String, in dir: Directory) throws(SystemCallError) -> FileDescriptor? {
        do throws(SystemCallError) { return try openForReading(name, in: dir) } catch  where error.errno == .noSuchFileOrDirectory {
            return nil
        }
    }

    /// `unlinkat`, where a missing entry is not an error (someone else removed it). Returns whether it removed one.
    @discardableResult
    static func unlinkIfPresent(_ name: String, in dir: Directory) throws(SystemCallError) -> Bool {
        do throws(SystemCallError) { try unlink(name, in: dir); return true } catch  where error.errno == .noSuchFileOrDirectory {
            return false
        }
    }

    /// `lchown`: owner and group of a path (a symlink itself, never what it points to).
    static func chown(_ path: String, owner: uid_t, group: gid_t) throws(SystemCallError) {
        _ = try retrying("lchown", path) { Glibc.lchown(path, owner, group) }
    }

    static func chmod(_ path: String, mode: mode_t) throws(SystemCallError) {
        _ = try retrying("chmod", path) { Glibc.chmod(path, mode) }
    }

    static func fsync(_ fd: FileDescriptor, path: @autoclosure () -> String) throws(SystemCallError) {
        _ = try retrying("fsync", path()) { Glibc.fsync(fd.rawValue) }
    }

    /// `syncfs(2)`: makes every file written so far on the directory's filesystem durable, in one call.
    static func syncfs(_ dir: Directory) throws(SystemCallError) {
        _ = try retrying("syncfs", dir.path) { llmspool_syncfs(dir.fd.rawValue) }
    }

    /// `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` over the whole file: its data reaches the
    /// device (not necessarily past the device's cache) before this returns. Not durability: it
    /// orders the data before a later rename (``Durability/volatile``).
    static func writeOut(_ fd: FileDescriptor, path: @autoclosure () -> String) throws(SystemCallError) {
        _ = try retrying("sync_file_range", path()) { llmspool_write_out(fd.rawValue) }
    }

    /// Whether `syncfs` on this directory's filesystem reaches stable storage. Not on FUSE
    /// (`statfs` type 0x65735546): the kernel writes its pages to the FUSE server but asks it to
    /// persist nothing, so only `fsync` is a flush there. When in doubt (statfs fails), no.
    static func syncfsIsDurable(_ dir: Directory) -> Bool {
        llmspool_is_fuse(dir.fd.rawValue) == 0
    }

    static func fsync(_ dir: Directory) throws(SystemCallError) {
        try fsync(dir.fd, path: dir.path)
    }

    static func close(_ fd: FileDescriptor) {
        // close() must not be retried on EINTR on Linux: the descriptor is gone either way.
        _ = Glibc.close(fd.rawValue)
    }

    /// `renameat2(..., RENAME_NOREPLACE)`. Returns false when the target exists (EEXIST).
    static func renameNoReplace(
        _ name: String, in from: Directory, to newName: String, in to: Directory
    ) throws(SystemCallError) -> Bool {
        while true {
            if llmspool_rename_noreplace(from.fd.rawValue, name, to.fd.rawValue, newName) == 0 { return true }
            let err = Errno(rawValue: llmspool_errno())
            if err == .interrupted { continue }
            if err == .fileExists { return false }
            throw SystemCallError(call: "renameat2", path: from.path(name) + " -> " + to.path(newName), errno: err)
        }
    }

    /// Plain `renameat`, which replaces the target. Used only where replacing is the intent.
    static func renameReplacing(
        _ name: String, in from: Directory, to newName: String, in to: Directory
    ) throws(SystemCallError) {
        _ = try retrying("renameat", from.path(name) + " -> " + to.path(newName)) {
            renameat(from.fd.rawValue, name, to.fd.rawValue, newName)
        }
    }

    static func unlink(_ name: String, in dir: Directory) throws(SystemCallError) {
        _ = try retrying("unlinkat", dir.path(name)) { unlinkat(dir.fd.rawValue, name, 0) }
    }

    /// `flock(LOCK_EX | LOCK_NB)` (`LOCK_SH | LOCK_NB` when `shared`). Returns false when another
    /// open file description holds a conflicting lock.
    static func tryLock(_ fd: FileDescriptor, shared: Bool = false, path: @autoclosure () -> String) throws(SystemCallError) -> Bool {
        while true {
            if flock(fd.rawValue, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0 { return true }
            let err = Errno(rawValue: llmspool_errno())
            if err == .interrupted { continue }
            if err == .wouldBlock { return false }
            throw SystemCallError(call: "flock", path: path(), errno: err)
        }
    }

    static func stat(_ fd: FileDescriptor, path: @autoclosure () -> String) throws(SystemCallError) -> Glibc.stat {
        var st = Glibc.stat()
        _ = try retrying("fstat", path()) { fstat(fd.rawValue, &st) }
        return st
    }

    /// `fstatat(..., AT_SYMLINK_NOFOLLOW)`; nil when the entry does not exist.
    static func stat(_ name: String, in dir: Directory) throws(SystemCallError) -> Glibc.stat? {
        var st = Glibc.stat()
        while true {
            if fstatat(dir.fd.rawValue, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
            let err = Errno(rawValue: llmspool_errno())
            if err == .interrupted { continue }
            if err == .noSuchFileOrDirectory { return nil }
            throw SystemCallError(call: "fstatat", path: dir.path(name), errno: err)
        }
    }

    static func exists(_ name: String, in dir: Directory) throws(SystemCallError) -> Bool {
        try stat(name, in: dir) != nil
    }

    /// The names in a directory, without `.` and `..`, in no particular order.
    static func list(_ dir: Directory) throws(SystemCallError) -> [String] {
        var names: [String] = []
        try forEachName(in: dir) {
            names.append(String(decoding: $0, as: UTF8.self)); return true
        }
        return names
    }

    /// Calls `body` with each name in a directory (its bytes, valid only during the call), without
    /// `.` and `..`, in no particular order, until it returns false: no `String` is made, for
    /// callers that only look.
    static func forEachName(in dir: Directory, _ body: (UnsafeRawBufferPointer) -> Bool) throws(SystemCallError) {
        // fdopendir takes ownership of its descriptor, so give it a fresh one.
        let fd = try retrying("openat", dir.path) { openat(dir.fd.rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard let stream = fdopendir(fd) else {
            let err = Errno(rawValue: llmspool_errno())
            _ = Glibc.close(fd)
            throw SystemCallError(call: "fdopendir", path: dir.path, errno: err)
        }
        defer { closedir(stream) }
        let nameOffset = MemoryLayout<dirent>.offset(of: \.d_name)!
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                let err = llmspool_errno()
                if err != 0 { throw SystemCallError(call: "readdir", path: dir.path, errno: Errno(rawValue: err)) }
                return
            }
            let start = UnsafeRawPointer(entry) + nameOffset
            let name = UnsafeRawBufferPointer(start: start, count: strlen(start.assumingMemoryBound(to: CChar.self)))
            if name.count == 1 && name[0] == 0x2E || name.count == 2 && name[0] == 0x2E && name[1] == 0x2E { continue }
            if !body(name) { return }
        }
    }

    /// Reads the whole file, or at most `limit + 1` bytes so the caller can tell it is over the limit.
    /// Reads to the end (at most `limit + 1` bytes, so the caller can tell "too big"). For a
    /// regular file a short read is the end, which saves the extra read that returns 0; pipes and
    /// sockets (`regularFile: false`) read until 0.
    static func readAll(
        _ fd: FileDescriptor, limit: Int, regularFile: Bool = false,
        path: @autoclosure () -> String
    ) throws(SystemCallError) -> [UInt8] {
        var bytes: [UInt8] = []
        let chunk = 64 * 1024
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: chunk) { (buf) throws(SystemCallError) -> [UInt8] in
            while bytes.count <= limit {
                let want = min(chunk, limit + 1 - bytes.count)
                let n = try retrying("read", path()) { read(fd.rawValue, buf.baseAddress!, want) }
                if n == 0 { break }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[0..<n]))
                if regularFile, n < want { break }
            }
            return bytes
        }
    }

    static func writeAll(_ fd: FileDescriptor, _ bytes: [UInt8], path: @autoclosure () -> String) throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let n = try retrying("write", path()) {
                bytes.withUnsafeBytes { buf in write(fd.rawValue, buf.baseAddress! + offset, buf.count - offset) }
            }
            offset += n
        }
    }

    // MARK: Waking up: inotify, eventfd, poll

    static func inotifyInit(path: String) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try retrying("inotify_init1", path) { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) })
    }

    static func addWatch(_ fd: FileDescriptor, _ path: String, mask: UInt32) throws(SystemCallError) -> Int32 {
        try retrying("inotify_add_watch", path) { inotify_add_watch(fd.rawValue, path, mask) }
    }

    /// `inotify_rm_watch`; an error (the watch is already gone: its file was removed) is ignored.
    static func removeWatch(_ fd: FileDescriptor, _ wd: Int32) {
        _ = inotify_rm_watch(fd.rawValue, wd)
    }

    static func eventFD(path: String) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try retrying("eventfd", path) { llmspool_eventfd() })
    }

    /// Adds one to an eventfd, waking whoever polls it.
    static func signal(_ fd: FileDescriptor) {
        var one: UInt64 = 1
        _ = write(fd.rawValue, &one, 8)
    }

    /// Reads an eventfd's counter (resetting it).
    static func consume(_ fd: FileDescriptor) {
        var v: UInt64 = 0
        _ = read(fd.rawValue, &v, 8)
    }

    /// Waits for any of `fds` to be readable; returns which, or nil on timeout (negative: forever).
    static func pollReadable(_ fds: [FileDescriptor], timeoutMilliseconds: Int32) -> [Bool]? {
        var p = fds.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        while true {
            let rc = poll(&p, nfds_t(p.count), timeoutMilliseconds)
            if rc < 0 && llmspool_errno() == EINTR { continue }
            if rc <= 0 { return nil }
            return p.map { $0.revents != 0 }
        }
    }

    /// One `read` into `buffer`; 0 when nothing is available on a non-blocking descriptor.
    static func readSome(_ fd: FileDescriptor, into buffer: inout [UInt8]) -> Int {
        buffer.withUnsafeMutableBytes { max(0, read(fd.rawValue, $0.baseAddress!, $0.count)) }
    }

    static func processID() -> Int32 { getpid() }

    /// Wall-clock time in milliseconds since the Unix epoch.
    static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Glibc.stat {
    var isRegularFile: Bool { (st_mode & S_IFMT) == S_IFREG }
    var modifiedMilliseconds: Int64 { Int64(st_mtim.tv_sec) * 1000 + Int64(st_mtim.tv_nsec) / 1_000_000 }
    func sameFile(as other: Glibc.stat) -> Bool { st_dev == other.st_dev && st_ino == other.st_ino }
}

extension Spool {
    /// Raises this process's soft limit on open files to its hard limit (a daemon holding a
    /// descriptor per job in flight needs more than the usual 1,024); returns the limit before
    /// and the limit in force after.
    public static func raiseOpenFileLimit() -> (before: Int, after: Int) {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return (1024, 1024) }
        let before = Int(clamping: rl.rlim_cur)
        if rl.rlim_cur < rl.rlim_max {
            var raised = rl
            raised.rlim_cur = rl.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { rl = raised }
        }
        return (before, Int(clamping: rl.rlim_cur))
    }
}
