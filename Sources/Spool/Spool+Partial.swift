import JSON
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The partial answer of a job that asked for streaming (`"stream": true`): `cur/.ID.json.partial`.
///
/// An append-only log of lines, each one JSON value: a string is text the model wrote (one or
/// more deltas, coalesced), `{"restart": {"attempt": N, "at": "…"}}` says that what came before
/// is void and a new attempt starts. The log is never fsynced and never truncated while the job
/// lives: a reader's byte offset (the CGI's event id) stays valid across attempts. The durable
/// answer is `done/ID.json`. See docs/spool-format.md, "Partial answers".
public enum Partial {
    /// At most one write per job per this many milliseconds: the first delta after a quiet spell
    /// is written at once, later ones within the interval together when it ends.
    public static let coalesceMilliseconds: Int64 = 5
    /// A reader reads at most this much per look.
    public static let maxReadBytes = 1 << 20
    /// Orphans (no job in `cur/` or `new/`) older than this are removed by recovery.
    public static let orphanMilliseconds: Int64 = 10 * 60 * 1000

    /// `.ID.json.partial`: a dot name, which claims, listings and recovery's claim walk skip.
    public static func fileName(_ id: String) -> String { "." + id + ".json.partial" }

    /// The id of a partial file's name, or nil.
    public static func id(ofFileName name: String) -> String? {
        guard name.hasPrefix("."), name.hasSuffix(".json.partial"), name.utf8.count > 14 else { return nil }
        return String(name.dropFirst().dropLast(".json.partial".count))
    }

    /// One line of the log.
    public enum Record: Sendable, Equatable {
        case delta(String)
        case restart(attempt: Int?)
    }

    static func line(_ text: String) -> [UInt8] { JSONValue.string(text).serialized() + [0x0A] }

    static func restartLine(attempt: Int) -> [UInt8] {
        JSONValue.object(["restart": .object(["attempt": .integer(attempt), "at": .string(Timestamp.now())])]).serialized() + [0x0A]
    }

    /// What ``Spool/readPartial(_:from:)`` found.
    public struct Read: Sendable, Equatable {
        /// Complete records from the offset on, each with the offset just past it.
        public var records: [(record: Record, end: Int)]
        /// The offset after the last complete record read (the next read starts there).
        public var end: Int
        /// The offset asked for was not a record boundary of this file (or past its end): the
        /// records are from the start, and the reader must treat them as a restart.
        public var reset: Bool
        /// The read stopped at its limit before the end of the file: there is more to read from
        /// ``end``. With no records, the line at ``end`` is longer than the limit.
        public var more = false

        public static func == (a: Read, b: Read) -> Bool {
            a.end == b.end && a.reset == b.reset && a.more == b.more && a.records.map(\.record) == b.records.map(\.record)
                && a.records.map(\.end) == b.records.map(\.end)
        }
    }
}

/// Writes one attempt's deltas to a job's partial file, coalescing writes (``Partial/coalesceMilliseconds``).
///
/// Created per call; the file is opened at the first delta. If the file already has content then
/// (an earlier attempt of this claim, or of a claim whose worker died), a `restart` record goes
/// first. Errors are swallowed: the partial file is a courtesy to readers, the result is what counts.
/// ``append(_:)`` may be called from any thread (the HTTP engine's); ``close()`` flushes what is left.
public final class PartialWriter: Sendable {
    struct State {
        var fd: FileDescriptor?
        var pending = ""
        var lastWriteMs: Int64 = 0
        var flushScheduled = false
        var closed = false
        var failed = false
        var writes = 0
    }

    let cur: Directory
    let name: String
    let attempt: Int
    private let state = Mutex(State())

    init(cur: Directory, id: String, attempt: Int) {
        self.cur = cur
        name = Partial.fileName(id)
        self.attempt = attempt
    }

    deinit { state.withLock { if let fd = $0.fd { Sys.close(fd) } } }

    /// Adds text; written now if the last write is at least the interval ago, else at its end.
    public func append(_ text: String) {
        let delay: Int64? = state.withLock { s in
            guard !s.closed, !text.isEmpty else { return nil }
            s.pending += text
            let now = Sys.nowMilliseconds()
            if now - s.lastWriteMs >= Partial.coalesceMilliseconds {
                write(&s, now: now)
                return nil
            }
            if s.flushScheduled { return nil }
            s.flushScheduled = true
            return s.lastWriteMs + Partial.coalesceMilliseconds - now
        }
        guard let delay else { return }
        Task { [self] in
            try? await Task.sleep(for: .milliseconds(max(0, delay)))
            state.withLock { s in
                s.flushScheduled = false
                if !s.closed { write(&s, now: Sys.nowMilliseconds()) }
            }
        }
    }

    /// Writes what is pending and closes the file. Later appends are ignored.
    public func close() {
        state.withLock { s in
            guard !s.closed else { return }
            write(&s, now: Sys.nowMilliseconds())
            s.closed = true
            if let fd = s.fd { Sys.close(fd) }
            s.fd = nil
        }
    }

    /// Writes made so far (for tests of the coalescing).
    public var writes: Int { state.withLock { $0.writes } }

    private func write(_ s: inout State, now: Int64) {
        guard !s.pending.isEmpty, !s.failed else { return }
        var bytes: [UInt8] = []
        do throws(SystemCallError) {
            if s.fd == nil {
                let fd = try Sys.openOrCreateForAppending(name, in: cur, mode: 0o640)
                s.fd = fd
                if try Sys.stat(fd, path: cur.path(name)).st_size > 0 { bytes = Partial.restartLine(attempt: attempt) }
            }
            bytes += Partial.line(s.pending)
            s.pending = ""
            try Sys.writeAll(s.fd!, bytes, path: cur.path(name))
            s.writes += 1
            s.lastWriteMs = now
        } catch {
            s.failed = true
        }
    }
}

extension Spool {
    /// A writer of the partial answer of `claim`'s attempt number `attempt` (1 for the first).
    public func partialWriter(for claim: Claim, attempt: Int) -> PartialWriter {
        PartialWriter(cur: dir(.cur), id: claim.id, attempt: attempt)
    }

    /// Creates job `id`'s partial file, empty, unless it is there: the worker does this as it
    /// claims a streamed job. A reader following the job then waits on that file alone from the
    /// claim on (the CGI's event streams), rather than on `cur/` until the first delta, where
    /// every open stream woke for every other job's partial file created with its first token:
    /// with 200 streams started together, a storm of wake-ups that held first tokens back by
    /// tens of milliseconds (bench/stream/run.sh). Errors are ignored, as the writer's: without
    /// the file a reader still learns of it from `cur/`.
    public func preparePartial(_ id: String) {
        try? Sys.createIfAbsent(Partial.fileName(id), in: dir(.cur), mode: 0o640)
    }

    /// Removes job `id`'s partial file, if any (after its result is durable).
    public func removePartial(_ id: String) {
        _ = try? Sys.unlinkIfPresent(Partial.fileName(id), in: dir(.cur))
    }

    /// The path of job `id`'s partial file (for watching it).
    public func partialPath(_ id: String) -> String { dir(.cur).path(Partial.fileName(id)) }

    /// Reads job `id`'s partial file from `offset`: the complete records there (at most
    /// ``Partial/maxReadBytes`` a call). Nil when there is no partial file.
    public func readPartial(_ id: String, from offset: Int) throws(SpoolError) -> Partial.Read? {
        let name = Partial.fileName(id), cur = dir(.cur)
        return try wrap { () throws(SystemCallError) -> Partial.Read? in
            let fd: FileDescriptor
            do throws(SystemCallError) { fd = try Sys.openForReading(name, in: cur) } catch  where error.errno == .noSuchFileOrDirectory {
                return nil
            }
            defer { Sys.close(fd) }
            return try Partial.read(fd, path: cur.path(name), from: offset, limit: Partial.maxReadBytes)
        }
    }

    /// Opens job `id`'s partial file to follow it (``PartialFile``); nil when there is none.
    public func openPartial(_ id: String) throws(SpoolError) -> PartialFile? {
        let name = Partial.fileName(id), cur = dir(.cur)
        return try wrap { () throws(SystemCallError) -> PartialFile? in
            let fd: FileDescriptor
            do throws(SystemCallError) { fd = try Sys.openForReading(name, in: cur) } catch  where error.errno == .noSuchFileOrDirectory {
                return nil
            }
            let file = PartialFile(fd: fd, path: cur.path(name))
            guard try Sys.stat(fd, path: file.path).isRegularFile else {
                throw SystemCallError(call: "open (not a regular file)", path: file.path, errno: .invalidArgument)
            }
            return file
        }
    }

    /// The ids of the partial files in `cur/` (streamed jobs being answered, or orphans).
    public func partialIDs() throws(SpoolError) -> [String] {
        try wrap { () throws(SystemCallError) in try Sys.list(dir(.cur)) }.compactMap(Partial.id(ofFileName:))
    }

    /// Removes partial files whose job is in neither `cur/` nor `new/` and that were not written
    /// for ``Partial/orphanMilliseconds`` (a worker that died between its result and the unlink).
    func sweepPartials(_ names: [String]) throws(SystemCallError) {
        let cur = dir(.cur)
        let now = Timestamp.nowMilliseconds()
        for name in names {
            guard let id = Partial.id(ofFileName: name), let st = try Sys.stat(name, in: cur) else { continue }
            let modified = Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000
            guard now - modified > Partial.orphanMilliseconds else { continue }
            guard try !Sys.exists(id + ".json", in: cur), try !Sys.exists(id + ".json", in: dir(.new)),
                try !Sys.exists(id + ".json", in: cur)
            else { continue }
            _ = try Sys.unlinkIfPresent(name, in: cur)
        }
    }
}

extension Partial {
    /// Reads the complete records of an open partial file from `offset`, at most `limit` bytes;
    /// an offset that is no record boundary starts over from 0 (``Read/reset``).
    static func read(_ fd: FileDescriptor, path: String, from offset: Int, limit: Int) throws(SystemCallError) -> Read {
        let size = Int(try Sys.stat(fd, path: path).st_size)
        var start = max(0, offset)
        var reset = false
        if start > size {
            start = 0
            reset = true
        } else if start > 0, try Sys.pread(fd, at: start - 1, count: 1, path: path) != [0x0A] {
            start = 0
            reset = true
        }
        let count = min(size - start, max(1, limit))
        var read = parse(try Sys.pread(fd, at: start, count: count, path: path), at: start, reset: reset)
        read.more = start + count < size
        return read
    }

    /// Parses complete lines of a partial file that start at byte `offset`; a last line without its
    /// newline is left for the next read. Lines that are neither a string nor a restart are skipped.
    public static func parse(_ bytes: [UInt8], at offset: Int, reset: Bool = false) -> Read {
        var records: [(record: Record, end: Int)] = []
        var lineStart = 0
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0A {
                let line = Array(bytes[lineStart..<i])
                switch try? JSONParser.parse(line) {
                case .string(let text)?: records.append((.delta(text), offset + i + 1))
                case .object(let o)? where o["restart"] != nil:
                    records.append((.restart(attempt: o["restart"]?["attempt"]?.intValue), offset + i + 1))
                default: break
                }
                lineStart = i + 1
            }
            i += 1
        }
        return Read(records: records, end: offset + lineStart, reset: reset)
    }
}

extension Partial {
    /// What a reader still owes of a finished job's answer once the partial file is gone (it goes
    /// once the result is durable, so a reader that was behind finds the rest only in the
    /// result). `sent` is all the text the reader gave since the last restart; `response` is the
    /// result's. The rest of `response` when `sent` is a prefix of it; else (a restart the reader
    /// did not see) a restart, then the whole response. The CGI's event streams and the CLI's
    /// followers both follow this rule (docs/spool-format.md, "Partial answers").
    public static func tail(of response: String, after sent: String) -> (restart: Bool, text: String) {
        if response.utf8.starts(with: sent.utf8) {
            return (false, String(decoding: response.utf8.dropFirst(sent.utf8.count), as: UTF8.self))
        }
        return (true, response)
    }
}

/// A job's partial file held open by a reader that follows it (the bridge's `--deltas-out`).
///
/// Reading through the descriptor rather than by name means that the last lines stay readable
/// after the worker has removed the file (once the result is durable): a reader that opened the
/// file while the job ran sees every line the worker wrote. Used from one thread.
public final class PartialFile {
    let fd: FileDescriptor
    /// The file's path, for messages.
    public let path: String

    init(fd: FileDescriptor, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { Sys.close(fd) }

    /// The complete records from `offset` on, reading at most `limit` bytes (a line longer than
    /// that comes back as no records with ``Partial/Read/more`` set).
    public func read(from offset: Int, limit: Int = Partial.maxReadBytes) throws(SpoolError) -> Partial.Read {
        do { return try Partial.read(fd, path: path, from: offset, limit: limit) } catch { throw .system(error) }
    }

    /// The offset just past the first newline at or after `offset` (nil when there is none yet),
    /// and how far the file was searched, reading in chunks of ``Partial/maxReadBytes`` to its
    /// end. For a line too long to read in one chunk.
    public func lineEnd(from offset: Int) throws(SpoolError) -> (end: Int?, searched: Int) {
        var at = max(0, offset)
        do throws(SystemCallError) {
            while true {
                let chunk = try Sys.pread(fd, at: at, count: Partial.maxReadBytes, path: path)
                if let i = chunk.firstIndex(of: 0x0A) { return (at + i + 1, at + i + 1) }
                if chunk.isEmpty { return (nil, at) }
                at += chunk.count
            }
        } catch {
            throw .system(error)
        }
    }

    /// Whether the file is no longer in `cur/` (its last name was removed).
    public func isRemoved() throws(SpoolError) -> Bool {
        do { return try Sys.stat(fd, path: path).st_nlink == 0 } catch { throw .system(error) }
    }
}

/// What ``Spool/follow(_:from:timeoutMilliseconds:_:)`` reports, in order.
public enum FollowEvent: Sendable, Equatable {
    /// Text, and the partial file's offset just past it (nil: the rest of the answer, taken from
    /// the result once the partial file was gone).
    case delta(String, offset: Int?)
    /// What came before is void: a new attempt starts (`attempt` when the worker said which;
    /// `offset` nil when the result showed a restart the partial file no longer did).
    case restart(attempt: Int?, offset: Int?)
}

extension Spool {
    /// Follows job `id`'s partial answer from byte `offset` until the job is in `done/` or
    /// `failed/` (its result or dead letter is returned) or the timeout passes (nil; negative:
    /// forever), calling `emit` for each record. Sleeps on inotify (the partial file's writes,
    /// `cur/`, `done/`, `failed/`); a 1 s rescan covers what inotify can miss.
    ///
    /// When it began at offset 0, the text emitted adds up to the result's `response`: the
    /// partial file is removed once the result is durable, and a follower that was behind then
    /// gets the rest from the result (``Partial/tail(of:after:)``).
    public func follow(
        _ id: String, from offset: Int = 0, timeoutMilliseconds: Int64, _ emit: (FollowEvent) -> Void
    )
        throws(SpoolError) -> JobLocation?
    {
        let watcher = try SpoolWatcher(self, states: [.cur, .done, .failed], events: .stream)
        let deadline = timeoutMilliseconds < 0 ? Int64.max : Sys.nowMilliseconds() + timeoutMilliseconds
        var offset = offset
        var watching = false
        // The text emitted since the last restart, while this follower has emitted all of it (it
        // began at offset 0, or has seen a restart since).
        var text: String? = offset == 0 ? "" : nil
        func drain() throws(SpoolError) {
            while let read = try readPartial(id, from: offset) {
                if read.reset {
                    emit(.restart(attempt: nil, offset: 0))
                    text = ""
                }
                for (record, end) in read.records {
                    switch record {
                    case .delta(let t):
                        emit(.delta(t, offset: end))
                        text? += t
                    case .restart(let attempt):
                        emit(.restart(attempt: attempt, offset: end))
                        text = ""
                    }
                }
                offset = read.end
                // A read stops at Partial.maxReadBytes: go on while there is more.
                if read.records.isEmpty || !read.more { break }
            }
        }
        while true {
            if !watching { watching = watcher.watchPartial(of: id) }
            try drain()
            for state in [SpoolState.done, .failed] {
                guard try wrap({ () throws(SystemCallError) in try Sys.exists(id + ".json", in: dir(state)) }) else { continue }
                try drain()
                guard let loc = try wrap({ () throws(SystemCallError) in try read(id + ".json", in: state, id: id) }) else {
                    throw .notFound(id: id)
                }
                if state == .done, let sent = text, let response = (try? JSONParser.parse(loc.bytes))?["response"]?.stringValue,
                    response != sent
                {
                    let tail = Partial.tail(of: response, after: sent)
                    if tail.restart { emit(.restart(attempt: nil, offset: nil)) }
                    if !tail.text.isEmpty { emit(.delta(tail.text, offset: nil)) }
                }
                return loc
            }
            let left = deadline - Sys.nowMilliseconds()
            if left <= 0 { return nil }
            _ = watcher.wait(timeoutMilliseconds: Int32(min(left, 1000)))
        }
    }
}
