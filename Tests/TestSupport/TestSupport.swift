// Helpers shared by the test targets (not part of any product).
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// Runs a blocking `body` on a thread outside Swift's cooperative pool and returns its value. The
/// pool has one thread per core: on a 2-core machine two blocked there stall every other test.
public func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in
        DispatchQueue(label: "llmspool.tests.blocking").async { c.resume(returning: body()) }
    }
}

/// Why a helper could not do its job.
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError(description: "socket() failed: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok else { throw TestSupportError(description: "cannot find a free port on 127.0.0.1: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// SplitMix64: a small seeded generator, so a randomised test can be replayed.
public struct SplitMix: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The tables of a document of the checkout these tests were built from (docs/configuration.md),
/// to check them against the code's declarations.
public enum DocTables {
    /// The text of `relativePath` under the package root.
    public static func read(_ relativePath: String, from testFile: String = #filePath) throws -> String {
        let root = testFile.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
        guard let f = fopen(root + "/" + relativePath, "r") else {
            throw TestSupportError(description: "cannot open \(root)/\(relativePath)")
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first table (lines starting with `|`, from its `| key ` header) after the first line
    /// that starts with `heading`.
    public static func table(after heading: String, in doc: String) -> String {
        let lines = doc.split(separator: "\n", omittingEmptySubsequences: false)
        guard let h = lines.firstIndex(where: { $0.hasPrefix(heading) }),
            let start = lines[h...].firstIndex(where: { $0.hasPrefix("| key ") })
        else { return "" }
        return lines[start...].prefix(while: { $0.hasPrefix("|") }).joined(separator: "\n")
    }
}
