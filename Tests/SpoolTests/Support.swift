// Helpers shared by the spool tests: a throw-away spool under /tmp, direct file access that
// bypasses the library (to play the part of a hand-dropper or a crashed process), and
// accessors that make the library's enums easy to assert on.
import Foundation
import JSON
import Testing

@testable import Spool

#if canImport(Glibc)
import Glibc
#endif

/// A spool in a fresh directory under /tmp (mkdtemp); `remove()` deletes it.
struct TestSpool: Sendable {
    /// The spool directory (`<tmpdir>/spool`).
    let root: String
    /// The directory around it, for files that must live outside the spool (symlink targets).
    let scratch: String
    let spool: Spool

    init(limits: Limits = .default) throws {
        scratch = try makeTemporaryDirectory()
        root = scratch + "/spool"
        do { spool = try Spool.create(at: root, limits: limits) } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
    }

    /// Removes the directory (call it with `defer` right after creating the spool).
    func remove() { try? FileManager.default.removeItem(atPath: scratch) }

    func path(_ state: SpoolState, _ name: String) -> String { root + "/" + state.rawValue + "/" + name }

    /// Every name in a state directory, dot names included, sorted.
    func names(_ state: SpoolState) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + state.rawValue)) ?? []).sorted()
    }

    /// Names in a state directory that are not dot names (what the spool counts).
    func visible(_ state: SpoolState) -> [String] { names(state).filter { !$0.hasPrefix(".") } }

    func exists(_ state: SpoolState, _ name: String) -> Bool { lstatMode(path(state, name)) != nil }

    func read(_ state: SpoolState, _ name: String) -> [UInt8]? { readFile(path(state, name)) }

    /// Parses a document of the spool.
    func document(_ state: SpoolState, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue {
        let bytes = try #require(read(state, name), "\(state.rawValue)/\(name) is missing", sourceLocation: sourceLocation)
        return try JSONParser.parse(bytes)
    }

    /// Writes a file straight into a state directory (as someone without llmspool would),
    /// optionally with its modification time set `ageMilliseconds` in the past.
    func drop(_ name: String, _ bytes: [UInt8], into state: SpoolState = .new, ageMilliseconds: Int64 = 0) {
        writeFile(path(state, name), bytes)
        if ageMilliseconds > 0 { setAge(state, name, milliseconds: ageMilliseconds) }
    }

    func drop(_ name: String, _ text: String, into state: SpoolState = .new, ageMilliseconds: Int64 = 0) {
        drop(name, Array(text.utf8), into: state, ageMilliseconds: ageMilliseconds)
    }

    /// Sets a file's modification time `milliseconds` before now (without following a symlink).
    func setAge(_ state: SpoolState, _ name: String, milliseconds: Int64) {
        let t = Timestamp.nowMilliseconds() - milliseconds
        let ts = timespec(tv_sec: Int(t / 1000), tv_nsec: Int(t % 1000) * 1_000_000)
        var times = [ts, ts]
        if utimensat(AT_FDCWD, path(state, name), &times, AT_SYMLINK_NOFOLLOW) != 0 {
            Issue.record("utimensat \(path(state, name)) failed: errno \(errno)")
        }
    }

    /// Claims `name` and lets the `Claim` go without settling it: its descriptor closes and its
    /// lock drops, exactly as when the claiming process dies.
    func claimAndAbandon(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let outcome = try spool.claim(name)
        let claim = try #require(outcome.claim, "expected \(name) to be claimed, got \(outcome)", sourceLocation: sourceLocation)
        return claim.id
    }

    /// Claims `ID.json` and returns the claim, which the caller keeps alive.
    func claim(id: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Claim {
        let outcome = try spool.claim(id + ".json")
        return try #require(outcome.claim, "expected \(id) to be claimed, got \(outcome)", sourceLocation: sourceLocation)
    }
}

func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/llmspool-test-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard let made else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return String(cString: made)
}

/// `st_mode` of a path without following a symlink, nil when it does not exist.
func lstatMode(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode : nil
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { return n == 0 ? out : nil }
        out += buf[0..<n]
    }
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
        Issue.record("open \(path) failed: errno \(errno)")
        return
    }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n != bytes.count { Issue.record("short write to \(path)") }
}

extension Limits {
    static func with(_ change: (inout Limits) -> Void) -> Limits {
        var l = Limits()
        change(&l)
        return l
    }
}

extension ClaimOutcome {
    var claim: Claim? { if case .claimed(let c) = self { c } else { nil } }
    var rejection: (key: String, error: IntakeError)? { if case .rejected(let k, let e) = self { (k, e) } else { nil } }
    var isGone: Bool { if case .gone = self { true } else { false } }
    var isBusy: Bool { if case .busy = self { true } else { false } }
    var isSettling: Bool { if case .settling = self { true } else { false } }
}

extension SpoolError {
    var existing: (id: String, state: SpoolState)? { if case .idExists(let i, let s) = self { (i, s) } else { nil } }
    var intake: IntakeError? { if case .invalidJob(let e) = self { e } else { nil } }
    var missing: [String]? { if case .notASpool(_, let m) = self { m } else { nil } }
    var notFoundId: String? { if case .notFound(let i) = self { i } else { nil } }
    var requeueReason: String? { if case .cannotRequeue(_, let r) = self { r } else { nil } }
    var systemError: SystemCallError? { if case .system(let e) = self { e } else { nil } }
}

extension JSONValue {
    /// `value["a"]?["b"]`-style access for assertions.
    subscript(path keys: String...) -> JSONValue? {
        var v: JSONValue? = self
        for k in keys { v = v?[k] }
        return v
    }
}

/// A job document as JSON text.
func jobText(_ fields: String) -> String { "{" + fields + "}" }
