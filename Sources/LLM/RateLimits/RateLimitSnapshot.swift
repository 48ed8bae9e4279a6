/// A provider's rate-limit state as its last answer reported it, from the
/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers (OpenAI, vLLM, LiteLLM…).
public struct RateLimitSnapshot: Sendable, Equatable {
    /// One limited quantity (requests or tokens) in the provider's window.
    public struct Window: Sendable, Equatable {
        /// The quota per window.
        public var limit: Int?
        /// What is left of it now.
        public var remaining: Int?
        /// The time until the quota is fully restored.
        public var reset: Duration?

        public init(limit: Int? = nil, remaining: Int? = nil, reset: Duration? = nil) {
            self.limit = limit
            self.remaining = remaining
            self.reset = reset
        }

        public var isEmpty: Bool { limit == nil && remaining == nil && reset == nil }
    }

    public var requests: Window
    public var tokens: Window

    public init(requests: Window = Window(), tokens: Window = Window()) {
        self.requests = requests
        self.tokens = tokens
    }

    /// Reads the headers; absent or unparseable values are nil.
    public init(headers: HTTPHeaders) {
        func window(_ what: String) -> Window {
            Window(
                limit: headers["x-ratelimit-limit-\(what)"].flatMap { Int($0.trimmingSpaces()) },
                remaining: headers["x-ratelimit-remaining-\(what)"].flatMap { Int($0.trimmingSpaces()) },
                reset: headers["x-ratelimit-reset-\(what)"].flatMap(DurationText.parse)
            )
        }
        self.init(requests: window("requests"), tokens: window("tokens"))
    }

    /// True when the answer carried none of the headers.
    public var isEmpty: Bool { requests.isEmpty && tokens.isEmpty }
}

/// Durations as rate-limit headers write them: Go's `time.Duration` text (`6m0s`, `12ms`, `1.5s`,
/// `1h2m3.5s`, `250us`, `100ns`), or a plain number of seconds (`20`, `0.5`).
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        let t = Array(text.trimmingSpaces().utf8)
        guard !t.isEmpty else { return nil }
        if let seconds = Double(String(decoding: t, as: UTF8.self)), seconds.isFinite, seconds >= 0,
            t.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") })
        {
            return .nanoseconds(Int64(min(seconds, 1e9) * 1e9))
        }
        var i = 0
        var total = 0.0
        while i < t.count {
            let start = i
            while i < t.count, (t[i] >= 0x30 && t[i] <= 0x39) || t[i] == UInt8(ascii: ".") { i += 1 }
            guard i > start, let number = Double(String(decoding: t[start..<i], as: UTF8.self)) else { return nil }
            let unitStart = i
            while i < t.count, !(t[i] >= 0x30 && t[i] <= 0x39), t[i] != UInt8(ascii: ".") { i += 1 }
            let unit = String(decoding: t[unitStart..<i], as: UTF8.self)
            let scale: Double
            switch unit {
            case "h": scale = 3600
            case "m": scale = 60
            case "s": scale = 1
            case "ms": scale = 1e-3
            case "us", "µs", "μs": scale = 1e-6
            case "ns": scale = 1e-9
            default: return nil
            }
            total += number * scale
        }
        guard total.isFinite else { return nil }
        return .nanoseconds(Int64(min(total, 1e9) * 1e9))
    }
}
