#if canImport(Glibc)
import Glibc
#endif

enum Output {
    /// One line on stdout.
    static func line(_ s: String) { print(s) }

    /// `llmspool: error: MESSAGE` on stderr.
    static func error(_ message: String) { standardError("llmspool: error: \(message)\n") }

    static func warning(_ message: String) { standardError("llmspool: warning: \(message)\n") }

    static func note(_ message: String) { standardError("llmspool: note: \(message)\n") }

    static func standardError(_ s: String) { writeAll(2, Array(s.utf8)) }

    /// Bytes as they are on stdout (after what `line` printed).
    static func standardOutput(_ bytes: [UInt8]) {
        fflush(nil)  // whatever `print` buffered goes first
        writeAll(1, bytes)
    }

    private static func writeAll(_ fd: Int32, _ b: [UInt8]) {
        var bytes = b
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 { if errno == EINTR { continue } else { return } }
            off += n
        }
    }

    static var stdoutIsTerminal: Bool { isatty(1) != 0 }
}

enum Environment {
    static func get(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

/// Durations such as `90s`, `15m`, `12h`, `7d` or `1h30m`; a bare number is seconds.
enum HumanDuration {
    static func parseMilliseconds(_ text: String) -> Int64? {
        if let n = Int64(text), n >= 0 { return n * 1000 }
        var total: Int64 = 0, number: Int64 = 0, digits = 0
        var chars = Array(text)
        var i = 0
        guard !chars.isEmpty else { return nil }
        chars.append(" ")
        while i < chars.count - 1 {
            let c = chars[i]
            if let d = c.wholeNumberValue, c.isASCII {
                number = number * 10 + Int64(d)
                digits += 1
                i += 1
                continue
            }
            guard digits > 0 else { return nil }
            let unit: Int64
            if c == "m" && chars[i + 1] == "s" { unit = 1; i += 1 }
            else if c == "s" { unit = 1000 }
            else if c == "m" { unit = 60_000 }
            else if c == "h" { unit = 3_600_000 }
            else if c == "d" { unit = 86_400_000 }
            else if c == "w" { unit = 7 * 86_400_000 }
            else { return nil }
            total += number * unit
            number = 0
            digits = 0
            i += 1
        }
        return digits == 0 ? total : nil
    }

    /// `2m05s`-style text for an age.
    static func format(milliseconds ms: Int64) -> String {
        let s = ms / 1000
        if s < 60 { return s == 0 ? "\(ms)ms" : "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60 < 10 ? "0" : "")\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60 < 10 ? "0" : "")\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }
}

func fflushStdout() { fflush(nil) }
func sleepSeconds(_ s: Int) { _ = sleep(UInt32(clamping: s)) }
