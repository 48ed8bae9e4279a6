import Synchronization
import Testing

@testable import Spool

@Suite("Job ids")
struct JobIDTests {
    @Test(arguments: [
        "a", "Z", "0", "a.b_c-d", "0123-uuid", "A..", "a-", "x_", String(repeating: "a", count: 128),
        "019a2b3c-4d5e-7f00-8a1b-2c3d4e5f6071", "job.json",
    ])
    func validIds(_ id: String) {
        #expect(JobID.isValid(id))
        #expect(JobID.problem(id) == nil)
    }

    @Test(arguments: [
        "", String(repeating: "a", count: 129), ".a", "..", ".", "-a", "_a", "a/b", "/a", "../etc", "a b", "é", "ab€",
        "a\u{0}b", "a\n", "a:b", "日本", "a\\b", "a*", "~a", " a",
    ])
    func invalidIds(_ id: String) {
        #expect(!JobID.isValid(id))
        #expect(JobID.problem(id) != nil)
    }

    @Test func problemSaysWhatIsWrong() {
        #expect(JobID.problem("") == "is empty")
        #expect(JobID.problem(String(repeating: "a", count: 129))?.contains("longer than 128") == true)
        #expect(JobID.problem(".a")?.contains("[A-Za-z0-9][A-Za-z0-9._-]{0,127}") == true)
        // Length is in bytes: 43 three-byte characters are 129 bytes.
        #expect(JobID.problem(String(repeating: "€", count: 43))?.contains("longer") == true)
    }

    @Test func generatedIdIsAUUIDv7() throws {
        let before = Timestamp.nowMilliseconds()
        let id = JobID.generate()
        let after = Timestamp.nowMilliseconds()
        #expect(JobID.isValid(id))
        let chars = Array(id)
        #expect(chars.count == 36)
        for (k, c) in chars.enumerated() {
            if [8, 13, 18, 23].contains(k) {
                #expect(c == "-", "position \(k) of \(id)")
            } else {
                #expect("0123456789abcdef".contains(c), "position \(k) of \(id)")
            }
        }
        #expect(chars[14] == "7", "version nibble of \(id)")
        #expect("89ab".contains(chars[19]), "variant of \(id)")
        // The first 48 bits are the Unix time in milliseconds.
        let hex = String(chars[0..<8]) + String(chars[9..<13])
        let ms = try #require(Int64(hex, radix: 16))
        #expect(ms >= before)
        #expect(ms <= after + 1000, "may run a little ahead when the counter borrows milliseconds")
    }

    @Test func tenThousandIdsAreUniqueAndIncreasing() {
        var previous = JobID.generate()
        var seen: Set<String> = [previous]
        for _ in 0..<10_000 {
            let id = JobID.generate()
            #expect(id > previous, "\(id) after \(previous)")
            seen.insert(id)
            previous = id
        }
        #expect(seen.count == 10_001)
    }

    @Test func taggedIdIsAUUIDv8CarryingItsTag() throws {
        let before = Timestamp.nowMilliseconds()
        let id = JobID.generate(tag: 0xDEAD_BEEF)
        #expect(JobID.isValid(id))
        let chars = Array(id)
        #expect(chars.count == 36)
        #expect(chars[14] == "8", "version nibble of \(id)")
        #expect("89ab".contains(chars[19]), "variant of \(id)")
        #expect(id.hasSuffix("deadbeef"), "the tag is the last 8 hex digits of \(id)")
        let ms = try #require(Int64(String(chars[0..<8]) + String(chars[9..<13]), radix: 16))
        #expect(ms >= before && ms <= Timestamp.nowMilliseconds() + 1000, "the same time prefix as a UUIDv7")
        #expect(JobID.tag(of: id) == 0xDEAD_BEEF)
        #expect(JobID.tag(of: id + ".json") == 0xDEAD_BEEF, "read from the file name too")
        #expect(JobID.tag(of: JobID.generate(tag: 0)) == 0)
        #expect(JobID.tag(of: JobID.generate(tag: .max)) == .max)
    }

    @Test(
        "only names shaped like the ids of generate(tag:) have a tag",
        arguments: [
            "job-42", "job-42.json", "a", "",
            "019a2b3c-4d5e-7f00-8a1b-2c3d4e5f6071",  // a UUIDv7
            "019a2b3c-4d5e-8f00-8a1b-2c3d4e5f6071.json.bak", "019a2b3c-4d5e-8f00-8a1b-2c3d4e5f6071.txt",
            "019A2B3C-4D5E-8F00-8A1B-2C3D4E5F6071",  // upper case: not what generate makes
            "019a2b3c-4d5e-8f00-ca1b-2c3d4e5f6071",  // wrong variant
            "019a2b3c_4d5e-8f00-8a1b-2c3d4e5f6071", "019a2b3c-4d5e-8f00-8a1b-2c3d4e5f607g", ".019a2b3c-4d5e-8f00-8a1b-2c3d4e5f6071",
        ])
    func untagged(_ name: String) {
        #expect(JobID.tag(of: name) == nil)
    }

    @Test func taggedIdsAreUniqueAndIncreasingLikeUUIDv7s() {
        var previous = JobID.generate(tag: 7)
        var seen: Set<String> = [previous]
        for _ in 0..<10_000 {
            let id = JobID.generate(tag: 7)
            #expect(id > previous, "\(id) after \(previous)")
            seen.insert(id)
            previous = id
        }
        #expect(seen.count == 10_001)
    }

    @Test func idsFromManyThreadsAreUnique() async {
        let all = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 {
                group.addTask { (0..<2000).map { _ in JobID.generate() } }
            }
            var all: [String] = []
            for await ids in group { all += ids }
            return all
        }
        #expect(Set(all).count == 16_000)
    }
}

@Suite("RFC 3339 timestamps")
struct TimestampTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (1_795_687_200_000, "2026-11-26T10:00:00.000Z"),
        (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
        (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ])
    func formatAndParseRoundTrip(_ ms: Int64, _ text: String) {
        #expect(Timestamp.format(milliseconds: ms) == text)
        #expect(Timestamp.parse(text) == ms)
    }

    @Test func roundTripOverManyValues() {
        var ms: Int64 = 0
        while ms < 4_102_444_800_000 {
            #expect(Timestamp.parse(Timestamp.format(milliseconds: ms)) == ms)
            ms += 86_400_000 * 37 + 3_600_000 * 5 + 61_001
        }
    }

    static let base: Int64 = 1_795_687_200_000  // 2026-11-26T10:00:00Z

    static let parseCases: [(String, Int64)] = [
        ("2026-11-26T10:00:00Z", base),
        ("2026-11-26T12:00:00+02:00", base),
        ("2026-11-26T04:30:00-05:30", base),
        ("2026-11-26T10:00:00+00:00", base),
        ("2026-11-26T10:00:00-00:00", base),
        ("2026-11-26t10:00:00z", base),
        ("2026-11-26 10:00:00Z", base),
        ("2026-11-26T00:30:00+01:00", base - 37_800_000),
        ("2026-11-26T23:30:00-01:00", base + 52_200_000),
        ("2026-11-26T10:00:00.5Z", base + 500),
        ("2026-11-26T10:00:00.05Z", base + 50),
        ("2026-11-26T10:00:00.123Z", base + 123),
        ("2026-11-26T10:00:00.123456Z", base + 123),
        ("2026-11-26T10:00:00.999999999+00:00", base + 999),
        ("2026-11-26T11:00:00.250+01:00", base + 250),
        ("2024-02-29T12:34:56.789Z", 1_709_210_096_789),
        ("2000-02-29T00:00:00Z", 951_782_400_000),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),
    ]

    @Test(arguments: parseCases)
    func parses(_ text: String, _ ms: Int64) {
        #expect(Timestamp.parse(text) == ms)
    }

    @Test(arguments: [
        "", "2026-11-26", "2026-11-26T10:00:00", "2026-11-26T10:00Z", "2026-11-26T10:00:00 Z",
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-32T00:00:00Z",
        "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
        "2026-11-26T24:00:00Z", "2026-11-26T10:60:00Z", "2026-11-26T10:00:61Z", "2026-11-26T10:00:00.Z",
        "2026-11-26T10:00:00+0200", "2026-11-26T10:00:00+02", "2026-11-26T10:00:00+24:00",
        "2026-11-26T10:00:00+02:60", "2026-11-26T10:00:00Zjunk", "2026-11-26T10:00:00ZZ", " 2026-11-26T10:00:00Z",
        "2026-11-26T10:00:00Z ", "2026/11/26T10:00:00Z", "2026-11-26X10:00:00Z", "２０２６-11-26T10:00:00Z",
        "26-11-26T10:00:00Z", "+2026-11-26T10:00:00Z", "2026-1-26T10:00:00Z", "2026-11-26T1:00:00Z",
        "2026-11-26T10:00:00,5Z", "2026-11-26T10:00:00.5", "2026-11-26T10:00:00+02:00:00", "now",
    ])
    func rejects(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test func nowIsCurrentAndParses() throws {
        let before = Timestamp.nowMilliseconds()
        let now = Timestamp.now()
        let after = Timestamp.nowMilliseconds()
        let ms = try #require(Timestamp.parse(now))
        #expect(ms >= before && ms <= after)
        #expect(now.hasSuffix("Z") && now.count == 24)
    }
}
