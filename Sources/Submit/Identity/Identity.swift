import Basics
public import JSON
import Spool

/// Who is asking: the user and tenant a job is written for, and the only ones who may read it.
public struct Identity: Sendable, Equatable {
    public var userId: String
    public var tenantId: String?

    public init(userId: String, tenantId: String? = nil) {
        self.userId = userId
        self.tenantId = tenantId
    }

    /// The key a tenant's waiting-job limit counts under: the tenant, else the user.
    public var quotaKey: String { tenantId ?? ("user:" + userId) }

    /// The tag the endpoint puts in the ids it mints for this identity (``JobID/generate(tag:)``):
    /// the first 4 bytes of SHA-256(`llmspool-quota-v1` NUL ``quotaKey``), big-endian. Jobs of
    /// one tenant share it, so their waiting jobs are counted from `new/`'s names alone.
    public var quotaTag: UInt32 {
        SHA256.hash(Array("llmspool-quota-v1\u{0}\(quotaKey)".utf8)).prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Whether a stored document (job, result or dead letter) belongs to this identity: same
    /// `userId` and same `tenantId` (both absent counts as the same). A document without a
    /// `userId` belongs to no one who calls over HTTP.
    public func owns(_ document: JSONValue) -> Bool {
        var user = document["userId"]?.stringValue
        var tenant = document["tenantId"]?.stringValue
        if user == nil, let job = document["job"] {  // a dead letter written before the top-level copy
            user = job["userId"]?.stringValue
            tenant = job["tenantId"]?.stringValue
        }
        guard let user else { return false }
        return constantTimeEqual(Array(user.utf8), Array(userId.utf8)) && tenant == tenantId
    }
}

/// One line of a token file: `sha256:HEX userId [tenantId]`.
public struct TokenEntry: Sendable, Equatable {
    public var digest: [UInt8]
    public var identity: Identity

    public init(digest: [UInt8], identity: Identity) {
        self.digest = digest
        self.identity = identity
    }
}

/// A token file: lines `sha256:HEX userId [tenantId]`, `#` comments and blank lines ignored.
/// Tokens are stored only as SHA-256 digests; a presented token is hashed and compared with
/// every entry in constant time.
public struct TokenFile: Sendable, Equatable {
    public var entries: [TokenEntry]

    public init(entries: [TokenEntry]) { self.entries = entries }

    /// Parses a token file; a malformed line is an error naming its line number.
    public static func parse(_ text: String) throws(TokenFileError) -> TokenFile {
        var entries: [TokenEntry] = []
        for (k, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard words.count == 2 || words.count == 3 else {
                throw TokenFileError(line: k + 1, "expected `sha256:HEX userId [tenantId]`")
            }
            guard words[0].hasPrefix("sha256:"), let digest = Hex.decode(words[0].dropFirst(7)), digest.count == 32 else {
                throw TokenFileError(line: k + 1, "the token hash must be sha256: followed by 64 hex digits")
            }
            guard digest != TokenFile.emptyTokenDigest else {
                throw TokenFileError(
                    line: k + 1,
                    "this is the SHA-256 of the empty string: an empty token would sign in (a server that keeps trailing spaces passes `Bearer ` with one); hash a real token"
                )
            }
            let user = String(words[1])
            let tenant = words.count == 3 ? String(words[2]) : nil
            do {
                try Job.checkName(user, field: "userId")
                if let tenant { try Job.checkName(tenant, field: "tenantId") }
            } catch {
                throw TokenFileError(line: k + 1, error.description)
            }
            entries.append(TokenEntry(digest: digest, identity: Identity(userId: user, tenantId: tenant)))
        }
        return TokenFile(entries: entries)
    }

    /// SHA-256 of the empty string, which no line may hold.
    static let emptyTokenDigest = SHA256.hash([])

    /// The identity of a presented token, or nil. Every entry is compared, in constant time.
    /// An empty token is never anyone's.
    public func identify(token: String) -> Identity? {
        guard !token.isEmpty else { return nil }
        let digest = SHA256.hash(Array(token.utf8))
        var found: Identity?
        for entry in entries where constantTimeEqual(entry.digest, digest) && found == nil {
            found = entry.identity
        }
        return found
    }
}

public struct TokenFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    init(line: Int, _ message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { "token file line \(line): \(message)" }
}

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}

/// Decides who a request comes from.
public enum Authenticator {
    /// `REMOTE_USER` (the web server's own authentication) wins; else `Authorization: Bearer`
    /// checked against `tokens`. No identity is a 401 problem with `WWW-Authenticate`.
    /// `tokens` is asked for only when a bearer token is presented.
    public static func identify(
        _ request: Request, defaultTenant: String? = nil, tokens: () throws(Problem) -> TokenFile?
    ) throws(Problem) -> Identity {
        if let user = request.remoteUser {
            do { try Job.checkName(user, field: "userId") } catch {
                throw Problem(
                    .forbidden, "bad-user-name", "Your user name cannot own jobs.",
                    detail: "REMOTE_USER \(error.message)", field: "REMOTE_USER")
            }
            return Identity(userId: user, tenantId: defaultTenant)
        }
        guard let auth = request.authorization else {
            throw Problem(
                .unauthorized, "unauthorized", "Authentication required.",
                detail: "send Authorization: Bearer TOKEN, or sign in through the web server",
                headers: ["WWW-Authenticate": "Bearer realm=\"llmspool\""])
        }
        let parts = auth.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw Problem(
                .unauthorized, "unauthorized", "Authentication required.",
                detail: "only the Bearer scheme is accepted", field: "Authorization",
                headers: ["WWW-Authenticate": "Bearer realm=\"llmspool\""])
        }
        let token = parts[1].trimmingSpaces()
        guard let file = try tokens(), let identity = file.identify(token: token) else {
            throw Problem(
                .unauthorized, "invalid-token", "The bearer token is not valid.",
                detail: "the token is unknown or has been revoked", field: "Authorization",
                headers: ["WWW-Authenticate": "Bearer realm=\"llmspool\", error=\"invalid_token\""])
        }
        return identity
    }
}
