extension Duration {
    /// The whole duration in nanoseconds, saturating at `Int64.min`/`Int64.max`.
    public var nanoseconds: Int64 {
        let (s, atto) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? Int64.min : Int64.max }
        let (sum, over) = ns.addingReportingOverflow(atto / 1_000_000_000)
        return over ? (s < 0 ? Int64.min : Int64.max) : sum
    }

    /// Whole milliseconds (a positive duration rounded down), saturating.
    public var wholeMilliseconds: Int64 {
        let (s, atto) = components
        let (ms, overflow) = s.multipliedReportingOverflow(by: 1000)
        if overflow { return s < 0 ? Int64.min : Int64.max }
        let (sum, over) = ms.addingReportingOverflow(atto / 1_000_000_000_000_000)
        return over ? (s < 0 ? Int64.min : Int64.max) : sum
    }

    /// Whole milliseconds, rounded up: at least 1 for any positive duration.
    public var roundedUpMilliseconds: Int64 {
        let ns = nanoseconds
        return ns <= 0 ? 0 : (ns / 1_000_000) + (ns % 1_000_000 == 0 ? 0 : 1)
    }

    /// Seconds as a number (`1.5` for 1,500 ms): how the configuration file writes a duration.
    public var inSeconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
