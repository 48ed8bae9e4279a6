/// Size limits a job must keep. Defaults are documented in `docs/spool-format.md`.
public struct Limits: Sendable, Equatable {
    /// The largest job file accepted, in bytes (default 1 MiB).
    public var maxFileBytes: Int = 1 << 20
    /// The largest prompt, or sum of message contents, in UTF-8 bytes (default 768 KiB).
    public var maxPromptBytes: Int = 768 << 10
    /// The most chat messages in a job (default 1,000).
    public var maxMessages: Int = 1000
    /// The largest `metadata` object, serialized, in bytes (default 16 KiB).
    public var maxMetadataBytes: Int = 16 << 10
    /// The largest `maxTokens` accepted (default 1,000,000).
    public var maxTokens: Int = 1_000_000
    /// Claims a job may lose to crashed workers before it is dead-lettered (default 5).
    public var maxAbandonedClaims: Int = 5

    public init() {}

    public static let `default` = Limits()
}
