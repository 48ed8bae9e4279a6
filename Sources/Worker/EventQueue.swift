import Synchronization

/// Events for the worker's loop, from any thread, taken in batches: everything that arrived while
/// the loop was busy comes out of one ``next()``, so a burst of call endings is scheduled (and
/// its claims made) in one round, with one trip to the disk threads.
final class EventQueue<Event: Sendable>: Sendable {
    private struct State {
        var events: [Event] = []
        var waiter: CheckedContinuation<[Event]?, Never>?
        var closed = false
    }

    private let state = Mutex(State())

    init() {}

    /// Adds an event (dropped once the queue is finished).
    func yield(_ event: Event) {
        let waiter: CheckedContinuation<[Event]?, Never>? = state.withLock { s in
            if s.closed { return nil }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.events.append(event)
            return nil
        }
        waiter?.resume(returning: [event])
    }

    /// Every event queued, waiting for one if there is none; nil once finished or when the
    /// calling task is cancelled. One caller at a time.
    func next() async -> [Event]? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<[Event]?, Never>) in
                let ready: [Event]?? = state.withLock { s in
                    if !s.events.isEmpty {
                        defer { s.events = [] }
                        return .some(s.events)
                    }
                    if s.closed { return .some(nil) }
                    s.waiter = c
                    return .none
                }
                if let ready { c.resume(returning: ready) }
            }
        } onCancel: {
            finish()
        }
    }

    /// Ends the queue: a waiting ``next()`` returns nil; later events are dropped.
    func finish() {
        let waiter = state.withLock { s in
            s.closed = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }
}
