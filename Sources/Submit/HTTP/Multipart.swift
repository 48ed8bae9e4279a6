import Basics

/// One part of a `multipart/form-data` body (RFC 7578).
public struct FormPart: Sendable, Equatable {
    public var name: String
    public var filename: String?
    public var contentType: String?
    public var data: ArraySlice<UInt8>
}

/// A `multipart/form-data` body split into its parts, in one pass (linear in the body's size:
/// the delimiter search compares at most the boundary's 70 bytes at each position).
public enum Multipart {
    public static let maxParts = 16
    public static let maxHeaderBytes = 8 << 10

    /// The parts of `body`, whose `Content-Type` named `boundary`. Fails with a reason for a
    /// person when the body is not well-formed.
    public static func parse(_ body: [UInt8], boundary: String) throws(MultipartError) -> [FormPart] {
        guard (1...70).contains(boundary.utf8.count) else { throw MultipartError("the boundary must be 1 to 70 characters") }
        let dash = Array(("--" + boundary).utf8)
        let delimiter = [0x0D, 0x0A] + dash  // CRLF--boundary: ends each part's data
        // The first delimiter may come without its CRLF (no preamble).
        guard var at = find(dash, in: body, from: 0) else { throw MultipartError("no part starts with the boundary") }
        at += dash.count
        var parts: [FormPart] = []
        while true {
            // After a delimiter: "--" ends the body; else CRLF and a part.
            if at + 2 <= body.count, body[at] == 0x2D, body[at + 1] == 0x2D { return parts }
            guard at + 2 <= body.count, body[at] == 0x0D, body[at + 1] == 0x0A else { throw MultipartError("a boundary line does not end with CRLF") }
            at += 2
            guard parts.count < maxParts else { throw MultipartError("more than \(maxParts) parts") }
            guard let headerEnd = find([0x0D, 0x0A, 0x0D, 0x0A], in: body, from: at, within: maxHeaderBytes) else {
                throw MultipartError("a part's headers do not end (or exceed \(maxHeaderBytes) bytes)")
            }
            var part = FormPart(name: "", filename: nil, contentType: nil, data: [])
            var named = false
            for line in String(decoding: body[at..<headerEnd], as: UTF8.self).split(separator: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { throw MultipartError("a part header has no colon") }
                let key = line[..<colon].lowercased(), value = line[line.index(after: colon)...].trimmingSpaces()
                if key == "content-disposition" {
                    let d = disposition(value)
                    guard d.type == "form-data", let name = d.params["name"] else { throw MultipartError("a part is not form-data with a name") }
                    part.name = name
                    part.filename = d.params["filename"]
                    named = true
                } else if key == "content-type" {
                    part.contentType = value
                }
            }
            guard named else { throw MultipartError("a part has no Content-Disposition") }
            let dataStart = headerEnd + 4
            guard let end = find(delimiter, in: body, from: dataStart) else { throw MultipartError("the last part is not closed by the boundary") }
            part.data = body[dataStart..<end]
            parts.append(part)
            at = end + delimiter.count
        }
    }

    /// `form-data; name="file"; filename="x.jsonl"` → type and parameters (quotes and `\"` undone).
    static func disposition(_ value: String) -> (type: String, params: [String: String]) {
        var params: [String: String] = [:]
        let u = Array(value.utf8)
        var i = 0
        func skipSpaces() { while i < u.count, u[i] == 0x20 || u[i] == 0x09 { i += 1 } }
        var type: [UInt8] = []
        while i < u.count, u[i] != 0x3B { type.append(u[i]); i += 1 }
        while i < u.count {
            i += 1  // ';'
            skipSpaces()
            var key: [UInt8] = []
            while i < u.count, u[i] != 0x3D, u[i] != 0x3B { key.append(u[i]); i += 1 }
            guard i < u.count, u[i] == 0x3D else { continue }
            i += 1
            var val: [UInt8] = []
            if i < u.count, u[i] == 0x22 {
                i += 1
                while i < u.count, u[i] != 0x22 {
                    if u[i] == 0x5C, i + 1 < u.count { i += 1 }
                    val.append(u[i]); i += 1
                }
                i += 1
                while i < u.count, u[i] != 0x3B { i += 1 }
            } else {
                while i < u.count, u[i] != 0x3B { val.append(u[i]); i += 1 }
            }
            params[String(decoding: key, as: UTF8.self).trimmingSpaces().lowercased()] = String(decoding: val, as: UTF8.self).trimmingSpaces()
        }
        return (String(decoding: type, as: UTF8.self).trimmingSpaces().lowercased(), params)
    }

    /// The first index of `needle` in `hay` at or after `from` (and starting before `from + within`).
    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int, within: Int = .max) -> Int? {
        guard let first = needle.first, hay.count >= needle.count else { return nil }
        let last = min(hay.count - needle.count, from > Int.max - within ? Int.max : from + within)
        var i = from
        while i <= last {
            if hay[i] == first {
                var k = 1
                while k < needle.count, hay[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}

public struct MultipartError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
