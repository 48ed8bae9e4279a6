/// A date of the proleptic Gregorian calendar, as the two date formats llmspool reads name one:
/// RFC 3339 in job documents and the HTTP-date of a `Retry-After` header.
public struct CivilDate: Sendable, Equatable {
    public var year: Int
    /// 1–12.
    public var month: Int
    /// 1–31, and no more than the month has.
    public var day: Int

    /// Nil unless `month` is 1–12 and `day` exists in that month of that year.
    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), day >= 1, day <= CivilDate.days(inMonth: month, of: year) else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    public static func isLeap(_ year: Int) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

    public static func days(inMonth month: Int, of year: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 (negative before it), by H. Hinnant's days-from-civil algorithm:
    /// constant time, exact for every year an Int64 of seconds can hold.
    public var daysSinceEpoch: Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let monthFromMarch = Int64((month + 9) % 12)
        let dayOfYear = (153 * monthFromMarch + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Seconds since the Unix epoch of `hour:minute:second` UTC on this date (a leap second, 60,
    /// counts as the next second's start).
    public func secondsSinceEpoch(hour: Int, minute: Int, second: Int) -> Int64 {
        daysSinceEpoch * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }
}
