import Basics
import Glibc

/// The wait a response asks for, from its headers.
public enum RetryAfter {
    /// `retry-after-ms` (milliseconds, decimals allowed) if present and valid, else `retry-after`
    /// (delay-seconds, decimals tolerated, or an HTTP-date taken relative to `now`, in seconds since
    /// 1970). A date in the past gives zero. Nil when neither header is usable.
    public static func parse(_ headers: HTTPHeaders, now: Double = wallClockSeconds()) -> Duration? {
        if let ms = headers["retry-after-ms"].flatMap(nonNegativeNumber) {
            return .nanoseconds(Int64(min(ms, 1e12) * 1_000_000))
        }
        guard let value = headers["retry-after"] else { return nil }
        if let seconds = nonNegativeNumber(value) {
            return .nanoseconds(Int64(min(seconds, 1e9) * 1_000_000_000))
        }
        if let date = HTTPDate.parse(value) {
            let seconds = Double(date) - now
            return seconds <= 0 ? .zero : .nanoseconds(Int64(min(seconds, 1e9) * 1_000_000_000))
        }
        return nil
    }

    /// Seconds since 1970 by the system's real-time clock.
    public static func wallClockSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func nonNegativeNumber(_ text: String) -> Double? {
        let t = text.trimmingSpaces()
        guard !t.isEmpty, t.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") }),
            let v = Double(t), v.isFinite, v >= 0
        else { return nil }
        return v
    }
}

/// HTTP-date (RFC 9110 §5.6.7): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete
/// RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994` forms.
public enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// Seconds since 1970-01-01T00:00:00Z, or nil if `text` is not an HTTP-date.
    public static func parse(_ text: String) -> Int64? {
        var tokens = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" || $0 == "\t" }).map(String.init)
        guard tokens.count >= 5 else { return nil }
        // The weekday is not checked against the date (RFC 9110 lets recipients ignore it).
        guard tokens[0].allSatisfy(\.isLetter) else { return nil }
        tokens.removeFirst()
        let day: Int?, month: Int?, year: Int?, time: String
        if tokens[0].first?.isNumber == true {
            // fixdate / RFC 850: day month year time GMT
            guard tokens.count == 5, tokens[4].uppercased() == "GMT" || tokens[4].uppercased() == "UTC" else { return nil }
            day = Int(tokens[0])
            month = monthNumber(tokens[1])
            year = fullYear(tokens[2])
            time = tokens[3]
        } else {
            // asctime: month day time year
            guard tokens.count == 4 else { return nil }
            month = monthNumber(tokens[0])
            day = Int(tokens[1])
            time = tokens[2]
            year = tokens[3].count == 4 ? Int(tokens[3]) : nil
        }
        let hms = time.split(separator: ":").map { Int($0) }
        guard let day, let month, let year, hms.count == 3, let h = hms[0], let m = hms[1], let s = hms[2],
            let date = CivilDate(year: year, month: month, day: day), (0...23).contains(h), (0...59).contains(m), (0...60).contains(s)
        else { return nil }
        return date.secondsSinceEpoch(hour: h, minute: m, second: s)
    }

    private static func monthNumber(_ token: String) -> Int? {
        months.firstIndex(of: token.lowercased()).map { $0 + 1 }
    }

    private static func fullYear(_ token: String) -> Int? {
        guard let y = Int(token), token.allSatisfy(\.isNumber) else { return nil }
        switch token.count {
        case 4: return y
        case 2: return y < 70 ? 2000 + y : 1900 + y
        default: return nil
        }
    }
}
