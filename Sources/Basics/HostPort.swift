/// `HOST:PORT` as the metrics listener takes it: a host (an IPv6 address in brackets) and a port
/// 1–65535. One rule for the listener and for the settings that name its address.
public enum HostPort {
    /// The host (without brackets) and the port, or nil if `address` is not `HOST:PORT`.
    public static func split(_ address: String) -> (host: String, port: UInt16)? {
        guard let colon = address.lastIndex(of: ":") else { return nil }
        var host = String(address[..<colon])
        guard let port = UInt16(address[address.index(after: colon)...]), port > 0 else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(":") || address.hasPrefix("[") else { return nil }
        return (host, port)
    }
}
