/// A budget that refills continuously: `perMinute` units a minute, holding at most `perMinute`.
///
/// Reservations may take the level below zero (a refund or a correction from `usage` may bring
/// it back): the next reservation then waits until the debt is repaid.
public struct TokenBucket: Sendable, Equatable {
    public let perMinute: Double
    public private(set) var level: Double
    private var updatedMs: Int64

    public init(perMinute: Int, nowMs: Int64) {
        self.perMinute = Double(max(1, perMinute))
        level = self.perMinute
        updatedMs = nowMs
    }

    mutating func refill(_ nowMs: Int64) {
        guard nowMs > updatedMs else { return }
        level = min(perMinute, level + Double(nowMs - updatedMs) * perMinute / 60_000)
        updatedMs = nowMs
    }

    /// Milliseconds until `amount` can be reserved (0: now). An amount larger than the whole
    /// budget is allowed once the bucket is full, so an oversized job is slowed, never starved.
    public mutating func delay(for amount: Double, nowMs: Int64) -> Int64 {
        refill(nowMs)
        let need = min(amount, perMinute)
        if level >= need { return 0 }
        return Int64(((need - level) * 60_000 / perMinute).rounded(.up))
    }

    /// Takes `amount` (callers check ``delay(for:nowMs:)`` first).
    public mutating func reserve(_ amount: Double, nowMs: Int64) {
        refill(nowMs)
        level -= amount
    }

    /// Gives back an over-estimate (positive) or charges an under-estimate (negative).
    public mutating func adjust(by amount: Double, nowMs: Int64) {
        refill(nowMs)
        level = min(perMinute, level + amount)
    }
}
