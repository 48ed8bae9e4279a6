import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Wakes a consumer when files arrive in (or leave) some of a spool's directories.
///
/// inotify does the waking; a periodic rescan is the safety net for what inotify can miss
/// (queue overflow, a spool on a network filesystem). Waiting costs no CPU. ``wake()`` may be
/// called from any thread to end a wait early (for shutdown).
public final class SpoolWatcher: Sendable {
    /// Why ``wait(timeoutMilliseconds:)`` returned.
    public enum Wake: Sendable, Equatable {
        /// Files arrived in (moved in, or written and closed) or left a watched directory.
        /// `arrived` lists names that arrived, by state (with ``Events/stream``, also names that
        /// left); `overflow` means events were lost: rescan.
        case changed(arrived: [SpoolState: [String]], overflow: Bool)
        /// The timeout passed with no event: rescan.
        case timeout
        /// ``wake()`` was called.
        case woken
    }

    private let inotify: FileDescriptor
    private let event: FileDescriptor
    /// The directories watched now (none after ``unwatchDirectories()``).
    private let directories: Mutex<Directories>
    /// The directories asked for, each with its events (to watch them again).
    private let watching: [(state: SpoolState, events: Events)]
    /// Files watched themselves (``watchPartial(of:)``, ``watchFile(_:reportedAs:)``): watch
    /// descriptor → the name their changes are reported as.
    private let files = Mutex<[Int32: String]>([:])
    private let spoolForPartials: Spool

    struct Directories {
        /// Watch descriptor → state.
        var states: [Int32: SpoolState] = [:]
        /// The directory watches whose names of files that left are reported (``Events/stream``).
        var namingDepartures: Set<Int32> = []
    }

    /// Which changes wake a waiter.
    public enum Events: Sendable {
        /// Files moved in, or written and closed.
        case arrivals
        /// Arrivals, and files moved out or deleted.
        case all
        /// As `all`, and files created (so a job's partial file is seen as soon as it exists);
        /// the names of files that left are reported too, so that a reader following one job can
        /// pass over every other job's changes without looking in the spool.
        case stream
        /// Files created, and nothing else: in `cur/`, a streamed job's partial file appearing
        /// (claims arrive by rename, and do not wake).
        case creations

        var mask: UInt32 {
            switch self {
            case .arrivals: UInt32(IN_MOVED_TO | IN_CLOSE_WRITE)
            case .all: UInt32(IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE)
            case .stream: UInt32(IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE | IN_CREATE)
            case .creations: UInt32(IN_CREATE)
            }
        }
    }

    /// Watches `states` of `spool` for `events`: by default files moved in or out, written and
    /// closed, or deleted. A process that only takes files away watches `.arrivals`, so that its own
    /// moves do not wake it.
    public convenience init(_ spool: Spool, states: [SpoolState] = [.new], events: Events = .all) throws(SpoolError) {
        try self.init(spool, watching: states.map { ($0, events) })
    }

    /// Watches each state of `spool` for its own events (the bridge: arrivals in `new/`, `done/`
    /// and `failed/`, creations in `cur/`).
    public init(_ spool: Spool, watching: [(state: SpoolState, events: Events)]) throws(SpoolError) {
        let ifd = try spool.wrap { () throws(SystemCallError) in try Sys.inotifyInit(path: spool.path) }
        let efd: FileDescriptor
        do { efd = try Sys.eventFD(path: spool.path) } catch {
            Sys.close(ifd)
            throw .system(error)
        }
        inotify = ifd
        event = efd
        spoolForPartials = spool
        self.watching = watching
        let dirs: Directories
        do { dirs = try Self.addWatches(ifd, spool, watching) } catch {
            Sys.close(ifd)
            Sys.close(efd)
            throw .system(error)
        }
        directories = Mutex(dirs)
    }

    private static func addWatches(
        _ ifd: FileDescriptor, _ spool: Spool, _ watching: [(state: SpoolState, events: Events)]
    ) throws(SystemCallError) -> Directories {
        var dirs = Directories()
        for (state, events) in watching {
            do throws(SystemCallError) {
                let wd = try Sys.addWatch(ifd, spool.dir(state).path, mask: events.mask)
                dirs.states[wd] = state
                if events == .stream { dirs.namingDepartures.insert(wd) }
            } catch {
                for wd in dirs.states.keys { Sys.removeWatch(ifd, wd) }
                throw error
            }
        }
        return dirs
    }

    deinit {
        Sys.close(inotify)
        Sys.close(event)
    }

    /// Also wakes on every write to job `id`'s partial file (`IN_MODIFY`), reported as the file's
    /// name arriving in `cur/`. False when the file does not exist (yet): watch `cur/` with
    /// ``Events/stream`` to learn when it is created, then call again.
    public func watchPartial(of id: String) -> Bool {
        let path = spoolForPartials.partialPath(id)
        guard let wd = try? Sys.addWatch(inotify, path, mask: UInt32(IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF)) else { return false }
        files.withLock { $0[wd] = Partial.fileName(id) }
        return true
    }

    /// Also wakes when the file at `path` (the one there now) is renamed, removed, or has its
    /// attributes or link count changed (`IN_MOVE_SELF`, `IN_DELETE_SELF`, `IN_ATTRIB`), reported
    /// as `name` arriving in `cur/`: a reader following one job watches the job's own file rather
    /// than whole directories, where every other job's change would wake it too. Returns the
    /// watch descriptor (the same one again for a file already watched), or nil when there is no
    /// file at `path`.
    public func watchFile(_ path: String, reportedAs name: String) -> Int32? {
        guard let wd = try? Sys.addWatch(inotify, path, mask: UInt32(IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)) else { return nil }
        files.withLock { $0[wd] = name }
        return wd
    }

    /// Ends a watch of ``watchFile(_:reportedAs:)``.
    public func unwatchFile(_ wd: Int32) {
        guard files.withLock({ $0.removeValue(forKey: wd) }) != nil else { return }
        Sys.removeWatch(inotify, wd)
    }

    /// Stops watching the spool's directories; the watches of single files stay, and only they
    /// wake a waiter now. Events of the directories already queued are dropped. The same inotify
    /// instance goes on: closing one that had watches blocks until the kernel has freed them (an
    /// SRCU grace period: 16 ms median, up to 24 ms, measured here), so an event stream narrowed
    /// by opening a second instance and closing the first stalled that long before its first
    /// delta (bench/stream/run.sh); `inotify_rm_watch` returns in microseconds.
    public func unwatchDirectories() {
        let removed = directories.withLock { d in
            defer { d = Directories() }
            return Array(d.states.keys)
        }
        for wd in removed { Sys.removeWatch(inotify, wd) }
    }

    /// Watches the spool's directories again, after ``unwatchDirectories()`` (a no-op while they are watched).
    public func watchDirectories() throws(SpoolError) {
        guard directories.withLock({ $0.states.isEmpty }) else { return }
        let dirs: Directories
        do { dirs = try Self.addWatches(inotify, spoolForPartials, watching) } catch { throw .system(error) }
        directories.withLock { $0 = dirs }
    }

    /// Blocks until a change, a ``wake()``, or the timeout (negative: wait forever).
    /// Events that arrived together are drained and reported once.
    public func wait(timeoutMilliseconds: Int32) -> Wake {
        guard let ready = Sys.pollReadable([inotify, event], timeoutMilliseconds: timeoutMilliseconds) else { return .timeout }
        if ready[1] {
            Sys.consume(event)
            return .woken
        }
        return drain()
    }

    /// Reads every queued event; names of files that arrived (and with `.stream`, left) are reported.
    private func drain() -> Wake {
        var arrived: [SpoolState: [String]] = [:]
        var overflow = false
        // Not zeroed: read() fills what is used, and zeroing 64 KiB on every wake-up was the
        // CGI's largest cost with 1,000 event streams open (bench/stream/run.sh, perf).
        var buf = [UInt8](unsafeUninitializedCapacity: 64 * 1024) { _, count in count = 64 * 1024 }
        let header = MemoryLayout<inotify_event>.size
        let dirs = directories.withLock { $0 }
        while true {
            let n = Sys.readSome(inotify, into: &buf)
            if n == 0 { break }
            var off = 0
            while off + header <= n {
                let (wd, mask, len) = buf.withUnsafeBytes { raw in
                    let e = raw.loadUnaligned(fromByteOffset: off, as: inotify_event.self)
                    return (e.wd, e.mask, Int(e.len))
                }
                if mask & UInt32(IN_Q_OVERFLOW) != 0 { overflow = true }
                let named = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE) | (dirs.namingDepartures.contains(wd) ? UInt32(IN_MOVED_FROM | IN_DELETE) : 0)
                if len > 0, mask & named != 0, let state = dirs.states[wd] {
                    let bytes = buf[(off + header)..<min(n, off + header + len)].prefix { $0 != 0 }
                    let name = String(decoding: bytes, as: UTF8.self)
                    if !name.hasPrefix(".") || Partial.id(ofFileName: name) != nil { arrived[state, default: []].append(name) }
                } else if len == 0, let name = files.withLock({ $0[wd] }) {
                    arrived[.cur, default: []].append(name)
                    if mask & UInt32(IN_IGNORED) != 0 { _ = files.withLock { $0.removeValue(forKey: wd) } }
                }
                off += header + len
            }
        }
        return .changed(arrived: arrived, overflow: overflow)
    }

    /// Makes a current or the next ``wait(timeoutMilliseconds:)`` return ``Wake/woken``.
    public func wake() { Sys.signal(event) }

    /// The eventfd behind ``wake()``: another event source may write an 8-byte count to it
    /// (librdkafka's `rd_kafka_queue_io_event_enable` does) to end a wait.
    public var wakeDescriptor: Int32 { event.rawValue }
}

extension Spool {
    /// Blocks until job `id` is in `done/` or `failed/`, or the timeout passes (negative: forever).
    /// Returns the final state, or nil on timeout. Sleeps on inotify; a 1 s rescan covers the rest.
    public func waitForOutcome(of id: String, timeoutMilliseconds: Int64) throws(SpoolError) -> SpoolState? {
        let watcher = try SpoolWatcher(self, states: [.done, .failed])
        let deadline = timeoutMilliseconds < 0 ? Int64.max : Sys.nowMilliseconds() + timeoutMilliseconds
        while true {
            for state in [SpoolState.done, .failed] {
                // A reader can see the result's rename before its writer's fsync of the directory
                // has returned; syncing the directory here means that an outcome reported to the
                // caller survives a power cut (nearly free once the writer's fsync is done).
                if try wrap({ () throws(SystemCallError) in
                    guard try Sys.exists(id + ".json", in: dir(state)) else { return false }
                    try Sys.fsync(dir(state))
                    return true
                }) {
                    return state
                }
            }
            let left = deadline - Sys.nowMilliseconds()
            if left <= 0 { return nil }
            _ = watcher.wait(timeoutMilliseconds: Int32(min(left, 1000)))
        }
    }
}
