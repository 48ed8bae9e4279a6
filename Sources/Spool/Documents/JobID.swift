import Basics
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Job ids: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. An id is checked before it is ever used as a path.
public enum JobID {
    public static let maxLength = 128

    public static func isValid(_ id: String) -> Bool {
        let u = id.utf8
        guard let first = u.first, u.count <= maxLength, isAlnum(first) else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// Why `id` is not a valid job id, or nil when it is.
    public static func problem(_ id: String) -> String? {
        if id.isEmpty { return "is empty" }
        if id.utf8.count > maxLength { return "is longer than \(maxLength) bytes" }
        if !isValid(id) { return "must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}" }
        return nil
    }

    @inline(__always)
    static func isAlnum(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
    }

    private static let state = Mutex<(ms: Int64, seq: UInt16)>((0, 0))

    /// A new UUIDv7 (RFC 9562) in lowercase hex: 48 bits of Unix milliseconds, then a 12-bit
    /// counter that keeps ids from one process strictly increasing within a millisecond, then 62
    /// random bits. Ids from different processes or hosts differ by their random bits.
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        return format(version: 7, low62: rng.next() & 0x3FFF_FFFF_FFFF_FFFF, using: &rng)
    }

    /// A new id that carries `tag` where ``tag(of:)`` reads it back from the id (or its file
    /// name) alone: a UUIDv8 (RFC 9562) laid out like ``generate()``'s UUIDv7 — 48 bits of Unix
    /// milliseconds, the 12-bit counter — then 30 random bits and the 32-bit `tag` as the last 8
    /// hex digits. The CGI endpoint tags a job with its tenant, so that counting a tenant's
    /// waiting jobs takes one listing of `new/` and no file reads (docs/spool-format.md).
    public static func generate(tag: UInt32) -> String {
        var rng = SystemRandomNumberGenerator()
        return format(version: 8, low62: (rng.next() & 0x3FFF_FFFF) << 32 | UInt64(tag), using: &rng)
    }

    /// The tag of an id made by ``generate(tag:)``: nil for ids of another shape (UUIDv7 ids,
    /// chosen ids). Also accepts the id's canonical file name, `ID.json`.
    public static func tag(of idOrFileName: some StringProtocol) -> UInt32? {
        Array(idOrFileName.utf8.prefix(42)).withUnsafeBytes { tag(utf8: $0) }
    }

    /// ``tag(of:)`` on the bytes of a name. Runs once per file in `new/` on every submission, so
    /// it looks only at the shape (length, dashes, version, variant, `.json`) and the 8 tag
    /// digits, and allocates nothing.
    static func tag(utf8 name: UnsafeRawBufferPointer) -> UInt32? {
        let n = name.count
        guard n == 36 || n == 41, name[14] == UInt8(ascii: "8"),
            name[8] == 0x2D, name[13] == 0x2D, name[18] == 0x2D, name[23] == 0x2D,
            (0x38...0x39).contains(name[19]) || (0x61...0x62).contains(name[19])  // the variant: 8 9 a b
        else { return nil }
        if n == 41 {
            guard name[36] == 0x2E, name[37] == 0x6A, name[38] == 0x73, name[39] == 0x6F, name[40] == 0x6E else { return nil }  // .json
        }
        var tag: UInt32 = 0
        for k in 28..<36 {
            let c = name[k]
            let v: UInt8
            if c &- 0x30 < 10 { v = c &- 0x30 } else if c &- 0x61 < 6 { v = c &- 0x61 &+ 10 } else { return nil }
            tag = tag << 4 | UInt32(v)
        }
        return tag
    }

    /// 48 bits of milliseconds, the version, the 12-bit counter, the variant and `low62`, as lowercase hex.
    private static func format(version: UInt8, low62: UInt64, using rng: inout SystemRandomNumberGenerator) -> String {
        let (ms, seq): (Int64, UInt16) = state.withLock { s in
            let now = Sys.nowMilliseconds()
            if now > s.ms {
                s = (now, UInt16.random(in: 0..<0x400, using: &rng))  // leave room to count up
            } else if s.seq < 0xFFF {
                s.seq += 1
            } else {
                s = (s.ms + 1, 0)  // counter exhausted: borrow the next millisecond
            }
            return s
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for k in 0..<6 { bytes[k] = UInt8(truncatingIfNeeded: ms >> (40 - 8 * k)) }
        bytes[6] = version << 4 | UInt8(seq >> 8)
        bytes[7] = UInt8(truncatingIfNeeded: seq)
        bytes[8] = 0x80 | UInt8(truncatingIfNeeded: low62 >> 56)
        for k in 9..<16 { bytes[k] = UInt8(truncatingIfNeeded: low62 >> (8 * (15 - k))) }
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (k, byte) in bytes.enumerated() {
            if k == 4 || k == 6 || k == 8 || k == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// RFC 3339 timestamps in UTC with milliseconds, e.g. `2026-11-26T10:00:00.123Z`.
public enum Timestamp {
    public static func now() -> String { format(milliseconds: Sys.nowMilliseconds()) }

    /// Wall-clock milliseconds since the Unix epoch.
    public static func nowMilliseconds() -> Int64 { Sys.nowMilliseconds() }

    public static func format(milliseconds: Int64) -> String {
        var t = time_t(milliseconds / 1000)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(milliseconds % 1000), 3))Z"
    }

    /// Milliseconds since the epoch for an RFC 3339 date-time, or nil when it is not one.
    public static func parse(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        func num(_ from: Int, _ n: Int) -> Int? {
            guard from + n <= b.count else { return nil }
            var v = 0
            for k in from..<(from + n) {
                guard (0x30...0x39).contains(b[k]) else { return nil }
                v = v * 10 + Int(b[k] - 0x30)
            }
            return v
        }
        guard b.count >= 20, let year = num(0, 4), b[4] == 0x2D, let month = num(5, 2), b[7] == 0x2D,
            let day = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == 0x20,
            let hour = num(11, 2), b[13] == 0x3A, let minute = num(14, 2), b[16] == 0x3A, let second = num(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var i = 19
        var millis = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, (0x30...0x39).contains(b[i]) {
                if digits < 3 { millis = millis * 10 + Int(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 3)..<3 { millis *= 10 }  // digits past the third are dropped
        }
        guard i < b.count else { return nil }
        var offsetMinutes = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            guard let oh = num(i + 1, 2), b.count > i + 3, b[i + 3] == 0x3A, let om = num(i + 4, 2), oh < 24, om < 60
            else { return nil }
            offsetMinutes = (oh * 60 + om) * (b[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        guard let date = CivilDate(year: year, month: month, day: day) else { return nil }
        let seconds = date.secondsSinceEpoch(hour: hour, minute: minute, second: second) - Int64(offsetMinutes * 60)
        return seconds * 1000 + Int64(millis)
    }
}
