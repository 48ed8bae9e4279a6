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

func fflushStdout() { fflush(nil) }
func sleepSeconds(_ s: Int) { _ = sleep(UInt32(clamping: s)) }
