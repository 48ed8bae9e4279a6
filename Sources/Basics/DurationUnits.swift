extension Duration {
    /// The whole duration in nanoseconds (toward zero), saturating at `Int64.min`/`Int64.max`.
    public var nanoseconds: Int64 { whole(perSecond: 1_000_000_000) }

    /// Whole milliseconds (toward zero: a positive duration rounded down), saturating.
    public var wholeMilliseconds: Int64 { whole(perSecond: 1000) }

    /// Whole milliseconds, rounded up: at least 1 for any positive duration.
    public var roundedUpMilliseconds: Int64 {
        let ns = nanoseconds
        return ns <= 0 ? 0 : (ns / 1_000_000) + (ns % 1_000_000 == 0 ? 0 : 1)
    }

    /// The duration in units of 1/`perSecond` s (a divisor of 10¹⁸), toward zero, saturating.
    private func whole(perSecond: Int64) -> Int64 {
        let (s, atto) = components
        let (n, overflow) = s.multipliedReportingOverflow(by: perSecond)
        if overflow { return s < 0 ? .min : .max }
        let (sum, over) = n.addingReportingOverflow(atto / (1_000_000_000_000_000_000 / perSecond))
        return over ? (s < 0 ? .min : .max) : sum
    }
}
