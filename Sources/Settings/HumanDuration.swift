/// Durations such as `90s`, `15m`, `12h`, `7d` or `1h30m`; a bare number is seconds.
public enum HumanDuration {
    public static func parseMilliseconds(_ text: String) -> Int64? {
        if let n = Int64(text), n >= 0 {
            let (ms, overflow) = n.multipliedReportingOverflow(by: 1000)
            return overflow ? nil : ms
        }
        var total: Int64 = 0, number: Int64 = 0, digits = 0
        var chars = Array(text)
        var i = 0
        guard !chars.isEmpty else { return nil }
        chars.append(" ")
        while i < chars.count - 1 {
            let c = chars[i]
            if let d = c.wholeNumberValue, c.isASCII {
                let (times10, o1) = number.multipliedReportingOverflow(by: 10)
                let (next, o2) = times10.addingReportingOverflow(Int64(d))
                guard !o1, !o2 else { return nil }  // more than Int64 holds: not a duration
                number = next
                digits += 1
                i += 1
                continue
            }
            guard digits > 0 else { return nil }
            let unit: Int64
            if c == "m" && chars[i + 1] == "s" {
                unit = 1; i += 1
            } else if c == "s" {
                unit = 1000
            } else if c == "m" {
                unit = 60_000
            } else if c == "h" {
                unit = 3_600_000
            } else if c == "d" {
                unit = 86_400_000
            } else if c == "w" {
                unit = 7 * 86_400_000
            } else {
                return nil
            }
            let (part, o1) = number.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(part)
            guard !o1, !o2 else { return nil }
            total = sum
            number = 0
            digits = 0
            i += 1
        }
        return digits == 0 ? total : nil
    }

    /// `2m05s`-style text for an age.
    public static func format(milliseconds ms: Int64) -> String {
        let s = ms / 1000
        if s < 60 { return s == 0 ? "\(ms)ms" : "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60 < 10 ? "0" : "")\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60 < 10 ? "0" : "")\(s % 3600 / 60)m" }
        return "\(s / 86400)d\(s % 86400 / 3600)h"
    }
}
