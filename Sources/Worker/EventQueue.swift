import Basics
import Dispatch
import Synchronization

/// Events for the worker's loop, from any thread, taken in batches by the loop's own thread:
/// everything that arrived while the loop was busy comes out of one ``wait(until:)``, so a burst
/// of call endings is scheduled, and its claims made, in one round.
final class EventQueue<Event: Sendable>: Sendable {
    private struct State {
        var events: [Event] = []
        /// The loop sleeps on `wake` and wants a signal.
        var waiting = false
        var closed = false
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)

    init() {}

    /// Adds an event (dropped once the queue is finished).
    func yield(_ event: Event) {
        let signal = state.withLock { s in
            if s.closed { return false }
            s.events.append(event)
            defer { s.waiting = false }
            return s.waiting
        }
        if signal { wake.signal() }
    }

    /// Every event queued, blocking the calling thread until there is one or `deadline` passes
    /// (then `[]`); nil once finished. One caller at a time; never call it on the cooperative pool.
    func wait(until deadline: ContinuousClock.Instant?) -> [Event]? {
        let ready: [Event]?? = state.withLock { s in
            if !s.events.isEmpty { return .some(take(&s)) }
            if s.closed { return .some(nil) }
            s.waiting = true
            return .none
        }
        if let ready { return ready }
        var timedOut = false
        if let deadline {
            // Waits on the monotonic clock; a wait cut short or long only means one more turn of the loop.
            let left = min(max(.zero, deadline - .now), .seconds(3600))
            timedOut = wake.wait(timeout: .now() + .nanoseconds(Int(left.wholeMilliseconds) * 1_000_000 + 999_999)) == .timedOut
        } else {
            wake.wait()
        }
        let (events, signalled): ([Event]?, Bool) = state.withLock { s in
            // Timed out, but a producer cleared `waiting` first: its signal is on the way, take it below.
            let late = timedOut && !s.waiting
            s.waiting = false
            if s.events.isEmpty && s.closed { return (nil, late) }
            return (take(&s), late)
        }
        if signalled { wake.wait() }
        return events
    }

    private func take(_ s: inout State) -> [Event] {
        var taken: [Event] = []
        swap(&taken, &s.events)
        return taken
    }

    /// Ends the queue: a waiting ``wait(until:)`` returns nil; later events are dropped.
    func finish() {
        let signal = state.withLock { s in
            s.closed = true
            defer { s.waiting = false }
            return s.waiting
        }
        if signal { wake.signal() }
    }
}
