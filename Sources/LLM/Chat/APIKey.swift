import Glibc
import SystemPackage

/// An API key, sent as `Authorization: Bearer …` and nowhere else.
///
/// Printing, interpolating, dumping or mirroring it shows `APIKey(redacted)`; error messages about
/// loading it name the variable or file, never the contents.
public struct APIKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The secret itself; read only to build the header.
    let value: String

    /// A key given directly. Surrounding whitespace is removed.
    /// - Throws: ``LLMError/Kind/configuration`` if it is empty or contains control characters.
    public init(_ value: String, source: String = "the API key") throws(LLMError) {
        let trimmed = value.trimmingWhitespaceAndNewlines()
        guard !trimmed.isEmpty else { throw LLMError(.configuration, "\(source) is empty") }
        guard !trimmed.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw LLMError(.configuration, "\(source) contains control characters (a line break in the middle?)")
        }
        self.value = trimmed
    }

    public var description: String { "APIKey(redacted)" }
    public var debugDescription: String { "APIKey(redacted)" }
    public var customMirror: Mirror { Mirror(self, children: [:]) }

    /// The key in environment variable `name`.
    public static func fromEnvironment(_ name: String) throws(LLMError) -> APIKey {
        guard let raw = getenv(name) else {
            throw LLMError(.configuration, "the environment variable \(name) is not set")
        }
        return try APIKey(String(cString: raw), source: "the environment variable \(name)")
    }

    /// The key in the file at `path` (a trailing newline is ignored).
    public static func fromFile(_ path: String) throws(LLMError) -> APIKey {
        let bytes: [UInt8]
        do {
            bytes = try readSmallFile(path)
        } catch {
            throw LLMError(.configuration, "cannot read the API key file \(path): \(error)")
        }
        return try APIKey(String(decoding: bytes, as: UTF8.self), source: "the API key file \(path)")
    }

    /// The credential `name` passed by systemd (`LoadCredential=` / `SetCredential=`):
    /// the file `$CREDENTIALS_DIRECTORY/name`.
    public static func fromCredential(_ name: String) throws(LLMError) -> APIKey {
        guard let dir = getenv("CREDENTIALS_DIRECTORY").map({ String(cString: $0) }), !dir.isEmpty else {
            throw LLMError(.configuration, "CREDENTIALS_DIRECTORY is not set (no systemd credentials for \(name))")
        }
        return try fromFile(dir + "/" + name)
    }

    /// The key from the first source given: `file`, then the systemd credential `credential` if
    /// `$CREDENTIALS_DIRECTORY` holds it, then environment variable `environmentVariable` if set.
    /// Nil when none applies (a keyless local server), or the credential is empty. A source that
    /// applies but fails throws.
    public static func load(file: String? = nil, credential: String? = nil, environmentVariable: String? = nil) throws(LLMError) -> APIKey? {
        if let file { return try fromFile(file) }
        if let credential, let dir = getenv("CREDENTIALS_DIRECTORY").map({ String(cString: $0) }), !dir.isEmpty {
            let path = dir + "/" + credential
            do {
                let bytes = try readSmallFile(path)
                // An empty credential means "no key" (the unit always passes one; a keyless
                // local server leaves it empty).
                if !bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
                    return try APIKey(String(decoding: bytes, as: UTF8.self), source: "the credential file \(path)")
                }
            } catch Errno.noSuchFileOrDirectory {
                // Not passed to this service: try the next source.
            } catch let error as LLMError {
                throw error
            } catch {
                throw LLMError(.configuration, "cannot read the credential file \(path): \(error)")
            }
        }
        if let environmentVariable, getenv(environmentVariable) != nil {
            return try fromEnvironment(environmentVariable)
        }
        return nil
    }
}

/// Reads a file of at most 64 KiB.
private func readSmallFile(_ path: String) throws -> [UInt8] {
    let fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
    return try fd.closeAfter {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if out.count > 65_536 { throw Errno.fileTooLarge }
        }
    }
}

extension String {
    func trimmingWhitespaceAndNewlines() -> String {
        let isSpace: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !isSpace($0) })!
        return String(scalars[first...last])
    }
}
