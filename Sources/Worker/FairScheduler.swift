/// Limits for one tenant. A nil limit is no limit.
public struct TenantLimits: Sendable, Equatable {
    public var tokensPerMinute: Int?
    public var requestsPerMinute: Int?
    /// Most calls of this tenant in flight at once.
    public var maxInFlight: Int?

    public init(tokensPerMinute: Int? = nil, requestsPerMinute: Int? = nil, maxInFlight: Int? = nil) {
        self.tokensPerMinute = tokensPerMinute
        self.requestsPerMinute = requestsPerMinute
        self.maxInFlight = maxInFlight
    }
}

/// Picks which job runs next: round-robin across tenants that have work and budget, so one
/// tenant's backlog cannot starve another's single job; within a tenant, oldest first (with
/// work that is already claimed — retries — ahead of new work).
///
/// Pure logic: it knows names, tenants and token estimates, never the disk or the network.
public struct FairScheduler<Item: Sendable>: Sendable {
    struct Entry: Sendable {
        var item: Item
        var tokens: Int
    }

    struct Tenant: Sendable {
        var queue: [Entry] = []
        var head = 0
        var tokens: TokenBucket?
        var requests: TokenBucket?
        var inFlight = 0
        var maxInFlight: Int?
        var count: Int { queue.count - head }

        mutating func pop() -> Entry {
            let e = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return e
        }
    }

    /// A job chosen to run, with what it reserved (to settle later).
    public struct Pick: Sendable {
        public var item: Item
        public var tenant: String
        public var reservedTokens: Int
    }

    public enum Decision: Sendable {
        case run(Pick)
        /// Every tenant with work is over budget: try again in this many milliseconds.
        case wait(Int64)
        /// Nothing to run.
        case idle
    }

    private var tenants: [String: Tenant] = [:]
    private var ring: [String] = []  // tenants with queued work, in round-robin order
    private var cursor = 0
    private let limitsFor: @Sendable (String) -> TenantLimits
    public private(set) var queued = 0

    public init(limits: @escaping @Sendable (String) -> TenantLimits) {
        limitsFor = limits
    }

    /// Runs `body` on a tenant's state in place (no copy of its queue), creating it on first use.
    private mutating func withTenant<R>(_ name: String, nowMs: Int64, _ body: (inout Tenant) -> R) -> R {
        if tenants[name] == nil {
            let l = limitsFor(name)
            var t = Tenant()
            t.tokens = l.tokensPerMinute.map { TokenBucket(perMinute: $0, nowMs: nowMs) }
            t.requests = l.requestsPerMinute.map { TokenBucket(perMinute: $0, nowMs: nowMs) }
            t.maxInFlight = l.maxInFlight
            tenants[name] = t
        }
        return body(&tenants[name]!)
    }

    /// Queues an item for `tenant` with an estimate of the tokens its call will use.
    public mutating func add(_ item: Item, tenant name: String, tokens: Int, nowMs: Int64, first: Bool = false) {
        let wasEmpty = withTenant(name, nowMs: nowMs) { t in
            let empty = t.count == 0
            if empty {
                t.queue.removeAll(keepingCapacity: true)
                t.head = 0
            }
            if first {
                t.queue.insert(Entry(item: item, tokens: tokens), at: t.head)
            } else {
                t.queue.append(Entry(item: item, tokens: tokens))
            }
            return empty
        }
        if wasEmpty { ring.append(name) }
        queued += 1
    }

    /// The next job to run, round-robin across tenants with budget; reserves its budget.
    public mutating func next(nowMs: Int64) -> Decision {
        guard !ring.isEmpty else { return .idle }
        var soonest = Int64.max
        for step in 0..<ring.count {
            let k = (cursor + step) % ring.count
            let name = ring[k]
            let picked: Entry? = withTenant(name, nowMs: nowMs) { t in
                if let m = t.maxInFlight, t.inFlight >= m { return nil }
                let e = t.queue[t.head]
                var wait: Int64 = 0
                if t.tokens != nil { wait = max(wait, t.tokens!.delay(for: Double(e.tokens), nowMs: nowMs)) }
                if t.requests != nil { wait = max(wait, t.requests!.delay(for: 1, nowMs: nowMs)) }
                if wait > 0 {
                    soonest = min(soonest, wait)
                    return nil
                }
                _ = t.pop()
                t.tokens?.reserve(Double(e.tokens), nowMs: nowMs)
                t.requests?.reserve(1, nowMs: nowMs)
                t.inFlight += 1
                return e
            }
            guard let e = picked else { continue }
            queued -= 1
            if tenants[name]!.count == 0 {
                ring.remove(at: k)
                cursor = ring.isEmpty ? 0 : k % ring.count
            } else {
                cursor = (k + 1) % ring.count
            }
            return .run(Pick(item: e.item, tenant: name, reservedTokens: e.tokens))
        }
        return soonest == Int64.max ? .idle : .wait(soonest)
    }

    /// A picked job's call ended: frees its in-flight slot and corrects the token reservation
    /// with what the provider reported (`usedTokens`), refunding an over-estimate.
    public mutating func finished(tenant name: String, reservedTokens: Int, usedTokens: Int?, nowMs: Int64) {
        guard tenants[name] != nil else { return }
        withTenant(name, nowMs: nowMs) { t in
            t.inFlight = max(0, t.inFlight - 1)
            if let used = usedTokens { t.tokens?.adjust(by: Double(reservedTokens - used), nowMs: nowMs) }
        }
    }

    /// Queued items of a tenant (for status and tests).
    public func queued(tenant: String) -> Int { tenants[tenant]?.count ?? 0 }

    /// In-flight calls of a tenant.
    public func inFlight(tenant: String) -> Int { tenants[tenant]?.inFlight ?? 0 }

    /// Drops queued items matching `predicate` (jobs that vanished from new/).
    public mutating func removeAll(where predicate: (Item) -> Bool) {
        var removed = 0
        for name in ring {
            withTenant(name, nowMs: 0) { t in
                let before = t.count
                t.queue = t.queue[t.head...].filter { !predicate($0.item) }
                t.head = 0
                removed += before - t.count
            }
        }
        queued -= removed
        ring.removeAll { tenants[$0]!.count == 0 }
        if cursor >= ring.count { cursor = 0 }
    }
}
