/// Stops calls to an endpoint that is down, so that an outage costs a few probes rather than
/// every waiting job's attempts. Pure: times are milliseconds of the caller's monotonic clock.
///
/// *Closed* (normal): every call may start; each ending is recorded — failed transiently or not
/// (an answer of any kind, a 429 or a 400 included, shows the endpoint is up). It *opens* when,
/// of the last ``Settings/window`` calls (at least ``Settings/minimumCalls`` of them), the share
/// that failed transiently reaches ``Settings/failureRatio``, or when every call has failed
/// transiently for ``Settings/allFailing``.
///
/// *Open*: no call starts. After ``Settings/probeInterval`` one call may go through as a
/// *probe* (state *probing*, nothing else starts meanwhile). A probe that fails transiently opens
/// it again for twice the interval (up to ``Settings/maxProbeInterval``); any other ending of
/// the probe *closes* it, with a fresh window. While it is not closed, the endings of calls started
/// before it opened count for nothing (they may have been answered before the outage began).
public struct CircuitBreaker: Sendable {
    public struct Settings: Sendable, Equatable {
        public var enabled = true
        /// Calls remembered.
        public var window = 50
        /// Share of remembered calls that failed transiently at which the breaker opens.
        public var failureRatio = 0.5
        /// Calls remembered before the share counts.
        public var minimumCalls = 20
        /// Every call failed transiently for this long: open, however few they were.
        public var allFailing: Duration = .seconds(10)
        /// Wait before the first probe.
        public var probeInterval: Duration = .seconds(1)
        /// Longest wait between probes.
        public var maxProbeInterval: Duration = .seconds(5)

        public init() {}
    }

    public enum State: String, Sendable, Equatable {
        case closed, open, probing
    }

    /// Whether a call may start.
    public enum Permit: Sendable, Equatable {
        case call
        /// Start exactly one call, and report its ending as a probe's.
        case probe
        /// Start nothing before this time (`Int64.max`: until the probe in flight ends).
        case wait(untilMs: Int64)
    }

    public enum Transition: Sendable, Equatable {
        case opened, closed, probeFailed
    }

    public let settings: Settings
    public private(set) var state = State.closed
    /// When it last opened (nil while closed).
    public private(set) var openedAtMs: Int64?
    public private(set) var nextProbeMs: Int64 = 0
    public private(set) var probeIntervalMs: Int64 = 0
    /// Probes since it last opened.
    public private(set) var probes = 0

    private var outcomes: [Bool] = []  // ring: true = failed transiently
    private var next = 0
    private var failures = 0
    private var streakStartMs: Int64?

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Whether a call may start now. On `.probe`, call ``probeStarted()`` once the probe's call starts.
    public func permit(nowMs: Int64) -> Permit {
        guard settings.enabled else { return .call }
        switch state {
        case .closed: return .call
        case .probing: return .wait(untilMs: Int64.max)
        case .open: return nowMs >= nextProbeMs ? .probe : .wait(untilMs: nextProbeMs)
        }
    }

    /// The probe ``permit(nowMs:)`` allowed has started: nothing else starts until it ends.
    public mutating func probeStarted() {
        guard state == .open else { return }
        state = .probing
        probes += 1
    }

    /// Records how a call ended: `failedTransiently` or not; `probe` when it was the probe.
    public mutating func record(failedTransiently: Bool, probe: Bool, nowMs: Int64) -> Transition? {
        guard settings.enabled else { return nil }
        // Once open, only the probe speaks for the endpoint: a call started before it opened may
        // have been answered before the outage began.
        if state != .closed && !probe { return nil }
        if !failedTransiently {
            streakStartMs = nil
            if state != .closed {
                close()
                return .closed
            }
            remember(false)
            return nil
        }
        switch state {
        case .closed:
            remember(true)
            if streakStartMs == nil { streakStartMs = nowMs }
            let ratioReached =
                outcomes.count >= max(1, settings.minimumCalls)
                && Double(failures) >= settings.failureRatio * Double(outcomes.count)
            let allFailing = nowMs - (streakStartMs ?? nowMs) >= settings.allFailing.wholeMilliseconds
            guard ratioReached || allFailing else { return nil }
            state = .open
            openedAtMs = nowMs
            probes = 0
            probeIntervalMs = max(1, settings.probeInterval.wholeMilliseconds)
            nextProbeMs = nowMs + probeIntervalMs
            return .opened
        case .open:
            return nil  // a probe that ended after probeAbandoned
        case .probing:
            state = .open
            probeIntervalMs = min(max(1, settings.maxProbeInterval.wholeMilliseconds), probeIntervalMs * 2)
            nextProbeMs = nowMs + probeIntervalMs
            return .probeFailed
        }
    }

    /// The probe ended without an answer about the endpoint (it did not start, or the worker is
    /// stopping): the next call allowed is a probe again, at once.
    public mutating func probeAbandoned(nowMs: Int64) {
        guard state == .probing else { return }
        state = .open
        nextProbeMs = nowMs
    }

    private mutating func close() {
        state = .closed
        openedAtMs = nil
        probes = 0
        outcomes = []
        next = 0
        failures = 0
        streakStartMs = nil
    }

    private mutating func remember(_ failed: Bool) {
        let size = max(1, settings.window)
        if outcomes.count < size {
            outcomes.append(failed)
        } else {
            if outcomes[next] { failures -= 1 }
            outcomes[next] = failed
            next = (next + 1) % size
        }
        if failed { failures += 1 }
    }
}
