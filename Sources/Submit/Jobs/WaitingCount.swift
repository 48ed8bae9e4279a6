/// A recent count of one tenant's waiting jobs, kept so that the 429 check does not list `new/`
/// on every request (docs/cgi.md, "The waiting-job limit"). It is a cache: whenever it is
/// missing, unreadable, older than the configured age or at the limit, `new/` is counted again.
///
/// On disk it is the record `SPOOL/.waiting/TAG` (the tenant tag as 8 hex digits): the line
/// `COUNT MILLISECONDS` — what the last full count found, and when (Unix milliseconds) — then one
/// `+` for each job accepted since.
public struct WaitingCount: Sendable, Equatable {
    /// Waiting jobs the last count of `new/` found.
    public var counted: Int
    /// When that count started.
    public var countedAtMilliseconds: Int64
    /// Jobs this endpoint accepted for the tenant since.
    public var acceptedSince: Int

    public init(counted: Int, countedAtMilliseconds: Int64, acceptedSince: Int = 0) {
        self.counted = counted
        self.countedAtMilliseconds = countedAtMilliseconds
        self.acceptedSince = acceptedSince
    }

    /// The estimate: the count plus what was accepted since. Claims since the count make it
    /// high, never low; only jobs coming back to `new/` by other ways (a give-back, a recovery,
    /// a requeue) in the meantime make it low.
    public var estimate: Int { counted + acceptedSince }

    /// The record's name for a tenant tag: 8 lowercase hex digits.
    public static func recordName(_ tag: UInt32) -> String {
        Hex.encode([
            UInt8(truncatingIfNeeded: tag >> 24), UInt8(truncatingIfNeeded: tag >> 16),
            UInt8(truncatingIfNeeded: tag >> 8), UInt8(truncatingIfNeeded: tag),
        ])
    }

    /// What is appended to the record for each accepted job.
    public static let acceptedMark: [UInt8] = [UInt8(ascii: "+")]

    /// The record as written after a count: `COUNT MILLISECONDS\n`.
    public var record: [UInt8] { Array("\(counted) \(countedAtMilliseconds)\n".utf8) + Array(repeating: UInt8(ascii: "+"), count: acceptedSince) }

    /// Reads a record; nil for anything that is not exactly the format above.
    public static func parse(_ bytes: [UInt8]) -> WaitingCount? {
        guard let newline = bytes.firstIndex(of: 0x0A) else { return nil }
        let header = bytes[..<newline].split(separator: 0x20, omittingEmptySubsequences: false)
        guard header.count == 2, header.allSatisfy({ !$0.isEmpty && $0.count <= 18 && $0.allSatisfy { (0x30...0x39).contains($0) } }),
            let counted = Int(String(decoding: header[0], as: UTF8.self)),
            let at = Int64(String(decoding: header[1], as: UTF8.self))
        else { return nil }
        let marks = bytes[(newline + 1)...]
        guard marks.allSatisfy({ $0 == UInt8(ascii: "+") }) else { return nil }
        return WaitingCount(counted: counted, countedAtMilliseconds: at, acceptedSince: marks.count)
    }
}
