import Spool

/// Group commit for results: answers that arrive while a commit is on disk wait for the next
/// one, and each commit writes its whole batch with one `syncfs`, renames each result into
/// `done/` and fsyncs `done/` once (``Spool/finish(batch:)``). One fsync per result would cap a
/// worker near the disk's fsync rate; batching lets throughput grow with concurrency.
actor ResultCommitter {
    private let spool: Spool
    private let maxBatch: Int
    private var pending: [(Claim, Answer, CheckedContinuation<Void, any Error>)] = []
    private var draining = false

    init(spool: Spool, maxBatch: Int = 256) {
        self.spool = spool
        self.maxBatch = maxBatch
    }

    /// Returns once the result is durable in `done/` and the claim retired; throws if it is not.
    func commit(_ claim: Claim, _ answer: Answer) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            pending.append((claim, answer, c))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !pending.isEmpty {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            let spool = self.spool
            let items = batch.map { ($0.0, $0.1) }
            do {
                let refused = try await Disk.run { try spool.finish(batch: items) }
                let refusedIDs = Set(refused.map { ObjectIdentifier($0) })
                for (claim, _, c) in batch {
                    if refusedIDs.contains(ObjectIdentifier(claim)) {
                        c.resume(throwing: SpoolError.idExists(id: claim.id, state: .done))
                    } else {
                        c.resume()
                    }
                }
            } catch {
                for (_, _, c) in batch { c.resume(throwing: error) }
            }
        }
        draining = false
    }
}
