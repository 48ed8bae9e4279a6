import Basics
import Spool
import Testing

@Suite("Basics: civil dates, HTTP whitespace and Duration units")
struct BasicsTests {
    @Test("every day from 1900 to 2100 maps to the day gmtime gives back for its seconds")
    func civilDaysMatchGmtime() {
        var checked = 0
        for year in 1900...2100 {
            for month in 1...12 {
                for day in 1...CivilDate.days(inMonth: month, of: year) {
                    let date = CivilDate(year: year, month: month, day: day)!
                    let text = Timestamp.format(milliseconds: date.secondsSinceEpoch(hour: 12, minute: 0, second: 0) * 1000)
                    let want = "\(year)-\(month < 10 ? "0" : "")\(month)-\(day < 10 ? "0" : "")\(day)T12:00:00.000Z"
                    #expect(text == want)
                    checked += 1
                }
            }
        }
        #expect(checked == 201 * 365 + 49)  // 1904…2096 are leap, 1900 and 2100 are not
        #expect(CivilDate(year: 1970, month: 1, day: 1)!.daysSinceEpoch == 0)
        #expect(CivilDate(year: 1969, month: 12, day: 31)!.daysSinceEpoch == -1)
    }

    @Test("dates that do not exist are refused", arguments: [(2023, 2, 29), (1900, 2, 29), (2026, 4, 31), (2026, 13, 1), (2026, 0, 1), (2026, 1, 0)])
    func impossibleDates(_ ymd: (Int, Int, Int)) {
        #expect(CivilDate(year: ymd.0, month: ymd.1, day: ymd.2) == nil)
        #expect(Timestamp.parse("\(ymd.0)-\(ymd.1 < 10 ? "0" : "")\(ymd.1)-\(ymd.2 < 10 ? "0" : "")\(ymd.2)T00:00:00Z") == nil)
    }

    @Test("a leap day exists in 2000 and 2024, not in 2100")
    func leapDays() {
        #expect(CivilDate(year: 2000, month: 2, day: 29) != nil)
        #expect(CivilDate(year: 2024, month: 2, day: 29) != nil)
        #expect(CivilDate(year: 2100, month: 2, day: 29) == nil)
    }

    @Test("only spaces and tabs at the ends are trimmed")
    func trimming() {
        #expect(" \t a b \t ".trimmingSpaces() == "a b")
        #expect("\t\t".trimmingSpaces() == "")
        #expect("".trimmingSpaces() == "")
        #expect("\u{A0}x\n".trimmingSpaces() == "\u{A0}x\n")
        #expect("ab"[...].trimmingSpaces() == "ab")
        #expect(" é ".trimmingSpaces() == "é")
    }

    @Test("a Duration in whole units: toward zero, rounded up where asked, saturating at the ends of Int64")
    func durationUnits() {
        #expect(Duration.milliseconds(1_500).wholeMilliseconds == 1_500)
        #expect(Duration.nanoseconds(1_999_999).wholeMilliseconds == 1)
        #expect(Duration.nanoseconds(1_999_999).roundedUpMilliseconds == 2)
        #expect(Duration.nanoseconds(1).roundedUpMilliseconds == 1)
        #expect(Duration.zero.roundedUpMilliseconds == 0)
        #expect(Duration.seconds(-2).wholeMilliseconds == -2_000)
        #expect(Duration.seconds(90).nanoseconds == 90_000_000_000)
        #expect(Duration.seconds(Int64.max).wholeMilliseconds == .max)
        #expect(Duration.seconds(Int64.min).wholeMilliseconds == .min)
        #expect(Duration.seconds(Int64.max / 1000).nanoseconds == .max)
        #expect((Duration.seconds(9_223_372_036) + .milliseconds(999)).nanoseconds == .max, "the sum of the parts overflows")
    }
}
