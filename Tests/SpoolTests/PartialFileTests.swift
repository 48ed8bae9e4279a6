import Foundation
import JSON
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

/// A partial file held open by a follower (the bridge's deltas out), and the watch that finds new ones.
@Suite("Partial files followed")
struct PartialFileTests {
    static func line(_ v: JSONValue) -> [UInt8] { v.serialized() + [0x0A] }

    @Test("read through the open file: the lines written before the worker removed it are still there")
    func readAfterRemoval() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let name = Partial.fileName("j")
        t.drop(name, Self.line(.string("one")), into: .cur)
        let file = try #require(try t.spool.openPartial("j"))
        #expect(try t.spool.partialIDs() == ["j"])
        let fd = open(t.path(.cur, name), O_WRONLY | O_APPEND)
        _ = Self.line(.string(" two")).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(unlink(t.path(.cur, name)) == 0)
        #expect(try file.isRemoved())
        #expect(try t.spool.openPartial("j") == nil, "gone by name")
        let read = try file.read(from: 0)
        #expect(read.records.map(\.record) == [.delta("one"), .delta(" two")])
        #expect(read.end == 13 && !read.more && !read.reset)
    }

    @Test("a read stops at its limit and says there is more; a line longer than the limit is found by its end, each byte searched once")
    func longLine() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let long = String(repeating: "x", count: 3000)
        let bytes = Self.line(.string("a")) + Self.line(.string(long)) + Array("\"tail".utf8)
        t.drop(Partial.fileName("j"), bytes, into: .cur)
        let file = try #require(try t.spool.openPartial("j"))
        let first = try file.read(from: 0, limit: 100)
        #expect(first.records.map(\.record) == [.delta("a")] && first.end == 4 && first.more)
        let second = try file.read(from: 4, limit: 100)
        #expect(second.records.isEmpty && second.end == 4 && second.more, "no line fits: more, and no progress")
        let (end, searched) = try file.lineEnd(from: 104)
        #expect(end == 4 + 3003 && searched == end)
        let whole = try file.read(from: 4, limit: end! - 4)
        #expect(whole.records.map(\.record) == [.delta(long)])
        // The half line at the end has no newline yet: searched to the end of the file.
        let (none, to) = try file.lineEnd(from: end!)
        #expect(none == nil && to == bytes.count)
    }

    @Test("not a regular file: refused with its path")
    func notRegular() throws {
        let t = try TestSpool()
        defer { t.remove() }
        #expect(mkdir(t.path(.cur, Partial.fileName("d")), 0o700) == 0)
        #expect(throws: SpoolError.self) { try t.spool.openPartial("d") }
        #expect(try t.spool.openPartial("none") == nil)
    }

    @Test("a watch of cur/ for creations wakes for a partial file created, not for a claim's rename")
    func creations() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let watcher = try SpoolWatcher(t.spool, watching: [(.cur, .creations), (.done, .arrivals)])
        t.drop("c.json", Array(#"{"prompt":"p"}"#.utf8), into: .tmp)
        #expect(rename(t.path(.tmp, "c.json"), t.path(.cur, "c.json")) == 0)
        #expect(watcher.wait(timeoutMilliseconds: 100) == .timeout, "a rename into cur/ does not wake")
        t.drop(Partial.fileName("c"), Self.line(.string("x")), into: .cur)
        #expect(watcher.wait(timeoutMilliseconds: 10_000) == .changed(arrived: [.cur: [Partial.fileName("c")]], overflow: false))
        #expect(watcher.watchPartial(of: "c"))
        let fd = open(t.path(.cur, Partial.fileName("c")), O_WRONLY | O_APPEND)
        _ = Self.line(.string("y")).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(watcher.wait(timeoutMilliseconds: 10_000) == .changed(arrived: [.cur: [Partial.fileName("c")]], overflow: false))
    }
}
