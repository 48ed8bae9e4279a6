/// The idle timeouts of streamed transfers (``HTTPRequest/idleTimeout``), kept by the engine's loop.
///
/// One list per distinct idle timeout (a client uses one, so there are few), each an intrusive
/// doubly-linked list of transfers ordered by their last body byte: a byte moves its transfer to
/// the tail, so the head is the next to expire. Costs: O(1) per received chunk (no allocation);
/// per loop turn, the number of lists plus the transfers that expired — never a walk of every
/// transfer in flight, of which there may be 10,000. A transfer joins its list with its first body
/// byte (the wait for the response before it is the whole-call timeout's) and leaves when it ends;
/// with no transfer in any list there is no deadline, and an idle engine sleeps.
///
/// Loop thread only.
final class IdleTimers {
    /// The transfers with one idle timeout, oldest activity first.
    final class List {
        let timeout: UInt64
        fileprivate(set) var oldest: Transfer?
        fileprivate(set) var newest: Transfer?
        fileprivate(set) var count = 0

        init(timeout: UInt64) { self.timeout = timeout }

        fileprivate func append(_ t: Transfer) {
            t.idleOlder = newest
            t.idleNewer = nil
            if let newest { newest.idleNewer = t } else { oldest = t }
            newest = t
            count += 1
        }

        fileprivate func unlink(_ t: Transfer) {
            if let older = t.idleOlder { older.idleNewer = t.idleNewer } else { oldest = t.idleNewer }
            if let newer = t.idleNewer { newer.idleOlder = t.idleOlder } else { newest = t.idleOlder }
            t.idleOlder = nil
            t.idleNewer = nil
            count -= 1
        }
    }

    private var lists: [UInt64: List] = [:]

    /// Lists with at least one transfer (for tests).
    var listCount: Int { lists.count }

    /// Transfers being timed, all lists together (for tests).
    var count: Int { lists.values.reduce(0) { $0 + $1.count } }

    /// Records that `transfer` received body bytes at `now` (monotonic nanoseconds): it joins or
    /// moves to the tail of the list of its ``Transfer/idleNanoseconds``. O(1).
    func touch(_ transfer: Transfer, now: UInt64) {
        transfer.lastActivity = now
        if let list = transfer.idleList {
            guard list.newest !== transfer else { return }
            list.unlink(transfer)
            list.append(transfer)
            return
        }
        guard let timeout = transfer.idleNanoseconds else { return }
        let list: List
        if let existing = lists[timeout] {
            list = existing
        } else {
            list = List(timeout: timeout)
            lists[timeout] = list
        }
        transfer.idleList = list
        list.append(transfer)
    }

    /// Stops timing `transfer` (it ended, or was cancelled). O(1); a list left empty is dropped.
    func remove(_ transfer: Transfer) {
        guard let list = transfer.idleList else { return }
        list.unlink(transfer)
        transfer.idleList = nil
        if list.count == 0 { lists[list.timeout] = nil }
    }

    /// The earliest deadline of every transfer timed (monotonic nanoseconds), nil when none is.
    var nextDeadline: UInt64? {
        var earliest: UInt64?
        for list in lists.values {
            guard let head = list.oldest else { continue }
            let deadline = head.lastActivity &+ list.timeout
            if earliest.map({ deadline < $0 }) ?? true { earliest = deadline }
        }
        return earliest
    }

    /// Takes out and returns the transfers whose last byte is at least their idle timeout before
    /// `now`, oldest first per list.
    func expire(now: UInt64) -> [Transfer] {
        var expired: [Transfer] = []
        var emptied: [UInt64] = []
        for list in lists.values {
            while let head = list.oldest, head.lastActivity &+ list.timeout <= now {
                list.unlink(head)
                head.idleList = nil
                expired.append(head)
            }
            if list.count == 0 { emptied.append(list.timeout) }
        }
        for timeout in emptied { lists[timeout] = nil }
        return expired
    }
}
