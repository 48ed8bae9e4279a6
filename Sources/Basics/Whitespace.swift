extension StringProtocol {
    /// Without leading and trailing spaces and horizontal tabs: HTTP's optional whitespace (OWS,
    /// RFC 9110 §5.6.3) around a header value or a parameter. Other characters are kept; one pass.
    public func trimmingSpaces() -> String {
        let u = utf8
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
        guard var i = u.firstIndex(where: { !isSpace($0) }) else { return "" }
        let first = i
        var end = i
        while i != u.endIndex {
            if !isSpace(u[i]) { end = u.index(after: i) }
            u.formIndex(after: &i)
        }
        return String(decoding: u[first..<end], as: UTF8.self)
    }
}
