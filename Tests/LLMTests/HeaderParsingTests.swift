import Testing

@testable import LLM

@Suite("Header parsing")
struct HeaderParsingTests {
    @Test(
        "HTTP-date in its three forms",
        arguments: [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ])
    func httpDate(text: String) {
        #expect(HTTPDate.parse(text) == 784_111_777)
    }

    @Test(
        "not HTTP-dates",
        arguments: [
            "", "tomorrow", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "06 Nov 1994 08:49:37 GMT",
        ])
    func notHTTPDate(text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }

    @Test func dateArithmetic() {
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT") == 0)
        #expect(HTTPDate.parse("Tue, 29 Feb 2028 12:00:00 GMT") == 1_835_438_400)
        #expect(HTTPDate.parse("Fri, 31 Dec 1999 23:59:59 GMT") == 946_684_799)
    }

    @Test("retry-after-ms comes first")
    func retryAfterMs() {
        let h: HTTPHeaders = ["Retry-After": "7", "retry-after-ms": "1500"]
        #expect(RetryAfter.parse(h, now: 0) == .milliseconds(1500))
        #expect(RetryAfter.parse(["retry-after-ms": "12.5"], now: 0) == .microseconds(12_500))
        // An unusable retry-after-ms falls back to retry-after.
        #expect(RetryAfter.parse(["retry-after-ms": "soon", "retry-after": "3"], now: 0) == .seconds(3))
    }

    @Test("retry-after in seconds or as a date")
    func retryAfter() {
        #expect(RetryAfter.parse(["Retry-After": "120"], now: 0) == .seconds(120))
        #expect(RetryAfter.parse(["Retry-After": " 2 "], now: 0) == .seconds(2))
        #expect(RetryAfter.parse(["Retry-After": "0.25"], now: 0) == .milliseconds(250))
        #expect(RetryAfter.parse(["Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"], now: 784_111_777 - 30) == .seconds(30))
        #expect(RetryAfter.parse(["Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"], now: 784_111_777 + 30) == .zero)
        #expect(RetryAfter.parse(["Retry-After": "-5"], now: 0) == nil)
        #expect(RetryAfter.parse(["Retry-After": "later"], now: 0) == nil)
        #expect(RetryAfter.parse([:], now: 0) == nil)
    }

    @Test(
        "durations of rate-limit headers",
        arguments: [
            ("6m0s", Duration.seconds(360)), ("12ms", .milliseconds(12)), ("1.5s", .milliseconds(1500)),
            ("1h2m3.5s", .milliseconds(3_723_500)), ("250us", .microseconds(250)), ("250µs", .microseconds(250)),
            ("100ns", .nanoseconds(100)), ("0s", .zero), ("20", .seconds(20)), ("0.5", .milliseconds(500)), ("2m", .seconds(120)),
        ])
    func durations(text: String, expected: Duration) {
        #expect(DurationText.parse(text) == expected)
    }

    @Test("not durations", arguments: ["", "s", "5x", "1.2.3s", "-1s", "5 s", "m5"])
    func notDurations(text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    @Test func rateLimitSnapshot() {
        let headers: HTTPHeaders = [
            "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-reset-requests": "6m0s", "X-RateLimit-Limit-Tokens": "1000000",
            "x-ratelimit-remaining-tokens": "999000", "x-ratelimit-reset-tokens": "12ms",
        ]
        let s = RateLimitSnapshot(headers: headers)
        #expect(s.requests == .init(limit: 10000, remaining: 9999, reset: .seconds(360)))
        #expect(s.tokens == .init(limit: 1_000_000, remaining: 999_000, reset: .milliseconds(12)))
        #expect(!s.isEmpty)
        #expect(RateLimitSnapshot(headers: ["x-ratelimit-remaining-tokens": "lots"]).isEmpty)
    }

    @Test func headersIgnoreCase() {
        var h: HTTPHeaders = ["Content-Type": "a"]
        h.add("set-cookie", "1")
        h.add("Set-Cookie", "2")
        #expect(h["content-type"] == "a")
        #expect(h.values("SET-COOKIE") == ["1", "2"])
        h.set("SET-COOKIE", "3")
        #expect(h.values("set-cookie") == ["3"])
        h.set("content-type", nil)
        #expect(h["Content-Type"] == nil)
    }

    @Test(
        "URLs in messages lose credentials and queries",
        arguments: [
            ("https://user:secret@api.example.com/v1?key=abc", "https://api.example.com/v1"),
            ("http://127.0.0.1:8000/v1/chat/completions", "http://127.0.0.1:8000/v1/chat/completions"),
            ("https://host/p#frag", "https://host/p"),
            ("https://a@b@host/x", "https://host/x"),
        ])
    func redaction(url: String, expected: String) {
        #expect(redactedURL(url) == expected)
    }

    @Test func requestValidation() {
        #expect(throws: LLMError.self) { try HTTPRequest(url: "ftp://x/").validate() }
        #expect(throws: LLMError.self) { try HTTPRequest(url: "http://x/", headers: ["A": "b\r\nEvil: 1"]).validate() }
        #expect(throws: LLMError.self) { try HTTPRequest(url: "http://x/", headers: ["Bad Name": "1"]).validate() }
        #expect(throws: LLMError.self) { try HTTPRequest(method: "post", url: "http://x/").validate() }
        #expect(throws: Never.self) { try HTTPRequest(method: "POST", url: "HTTPS://x/", headers: ["X-A": ""]).validate() }
    }
}
