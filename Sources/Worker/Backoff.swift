/// Exponential backoff with full jitter: attempt n waits a uniform random time in
/// [0, min(cap, base·2ⁿ⁻¹)]; a provider's `retry-after` wins (capped) when it asks for longer.
public struct Backoff: Sendable {
    public var baseMs: Int64
    public var capMs: Int64
    public var maxRetryAfterMs: Int64
    /// The random source, as a function from an upper bound to a value in 0...bound (injectable for tests).
    public var random: @Sendable (Int64) -> Int64

    public init(baseMs: Int64 = 500, capMs: Int64 = 8000, maxRetryAfterMs: Int64 = 120_000,
                random: @escaping @Sendable (Int64) -> Int64 = { Int64.random(in: 0...max(0, $0)) }) {
        self.baseMs = baseMs
        self.capMs = capMs
        self.maxRetryAfterMs = maxRetryAfterMs
        self.random = random
    }

    /// The wait after failed attempt `n` (1-based).
    public func delayMs(afterAttempt n: Int, retryAfterMs: Int64?) -> Int64 {
        let exp = min(capMs, baseMs << Int64(min(max(0, n - 1), 30)))
        let jittered = random(exp)
        guard let after = retryAfterMs else { return jittered }
        return max(jittered, min(after, maxRetryAfterMs))
    }
}
