public import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Standard input and output of a CGI program: the request body in, the response out.
public enum StandardIO {
    /// Reads the request body: exactly `CONTENT_LENGTH` bytes (RFC 3875 does not promise an end
    /// of file after them), or up to the end of input when there is no length (a chunked body).
    /// Over `limit`, the rest is read and dropped (servers reset a connection whose body was not
    /// read), up to `drainLimit` bytes, and nothing is kept.
    public static func readBody(
        from fd: FileDescriptor = .standardInput, contentLength: Int?, limit: Int, drainLimit: Int = 16 << 20
    ) -> Body {
        if let n = contentLength, n > limit {
            drain(fd, upTo: min(n, drainLimit))
            return .tooLarge(declared: n)
        }
        let want = contentLength ?? (limit + 1)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(want, 64 << 10))
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while bytes.count < want {
            let n = chunk.withUnsafeMutableBytes { buf -> Int in
                let room = min(buf.count, want - bytes.count)
                while true {
                    let r = read(fd.rawValue, buf.baseAddress!, room)
                    if r < 0 && errno == EINTR { continue }
                    return r
                }
            }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        if let n = contentLength {
            return bytes.count < n ? .truncated(received: bytes.count, expected: n) : .bytes(bytes)
        }
        if bytes.count > limit {
            drain(fd, upTo: drainLimit)
            return .tooLarge(declared: nil)
        }
        return .bytes(bytes)
    }

    static func drain(_ fd: FileDescriptor, upTo limit: Int) {
        var left = limit
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while left > 0 {
            let n = chunk.withUnsafeMutableBytes { buf in read(fd.rawValue, buf.baseAddress!, min(buf.count, left)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            left -= n
        }
    }

    /// Writes all of `bytes`; false when the reader is gone (the client disconnected).
    @discardableResult
    public static func write(_ bytes: [UInt8], to fd: FileDescriptor = .standardOutput) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { buf in Glibc.write(fd.rawValue, buf.baseAddress! + off, buf.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    /// One line to standard error, which web servers put in their error log.
    /// The index just past the blank line (`CRLF CRLF`) that ends a CGI header block, if it is there.
    static func endOfHeaders(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for k in 3..<bytes.count where bytes[k] == 0x0A && bytes[k - 1] == 0x0D && bytes[k - 2] == 0x0A && bytes[k - 3] == 0x0D {
            return k + 1
        }
        return nil
    }

    public static func log(_ line: String) {
        write(Array((line + "\n").utf8), to: .standardError)
    }
}
