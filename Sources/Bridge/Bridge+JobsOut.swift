import CKafka
import Logging
import Spool

/// Jobs out: jobs arriving in `new/` are claimed, produced to `--jobs-out`, and moved to
/// `forwarded/` once Kafka confirms them.
extension Bridge {
    /// Claims and produces waiting jobs while fewer than `maxForwarding` await their reports.
    /// Returns false if it stopped early (capacity, a full producer queue, an error) and should run again.
    func forwardWaiting() -> Bool {
        guard let p = producer, let topic = configuration.jobsOut else { return true }
        // Claims whose produce failed before go first.
        let retry = unsent
        unsent.removeAll()
        for (k, claim) in retry.enumerated() where !produceJob(claim, p, topic) {
            unsent += retry[(k + 1)...]
            return false
        }
        let names: [String]
        do { names = try spool.waiting() } catch {
            logger.error("cannot list new/: \(error)")
            retryAt = Self.nowMs() + 1_000
            return false
        }
        for name in names {
            if pending.count + unsent.count >= configuration.maxForwarding || stopper.isStopping { return false }
            let outcome: ClaimOutcome
            do { outcome = try spool.claim(name) } catch {
                logger.error("claim failed: \(error)", metadata: ["file": "\(name)"])
                retryAt = Self.nowMs() + 1_000
                return false
            }
            switch outcome {
            case .claimed(let claim):
                if !produceJob(claim, p, topic) { return false }
            case .rejected(let key, let why):
                logger.error("not a valid job, dead-lettered: \(why)", metadata: ["file": "\(name)", "failed": "\(key)"])
            case .busy, .gone, .settling:
                continue
            }
        }
        return true
    }

    /// Produces one claimed job (value: the job with its id; key: the id). On a refusal the claim
    /// is kept in `unsent` for the next round.
    private func produceJob(_ claim: Claim, _ p: OpaquePointer, _ topic: String) -> Bool {
        var job = claim.job
        job.jobId = claim.id
        var headers: [(String, [UInt8])] = [("contentType", Array("application/json".utf8)), ("jobId", Array(claim.id.utf8))]
        if let u = job.userId { headers.append(("userId", Array(u.utf8))) }
        if let t = job.tenantId { headers.append(("tenantId", Array(t.utf8))) }
        let seq = nextSeq
        let err = Kafka.produce(p, topic: topic, key: Array(claim.id.utf8), value: job.json().serialized(), headers: headers, opaque: seq)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            unsent.append(claim)
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                _ = rd_kafka_poll(p, 100)
                settleDeliveries()
            } else {
                BridgeMetrics.deliveryError(topic: topic, kind: "job")
                logger.error("produce failed: \(Kafka.errorString(err))", metadata: ["jobId": "\(claim.id)"])
                retryAt = Self.nowMs() + 1_000
            }
            return false
        }
        nextSeq += 1
        pending[seq] = .job(claim)
        return true
    }

    /// Moves the confirmed jobs to `forwarded/` (one fsync for all).
    func moveConfirmed() {
        guard !confirmed.isEmpty else { return }
        let batch = confirmed
        confirmed.removeAll()
        do {
            try spool.forward(batch: batch)
            counts.forwarded += batch.count
            for claim in batch { logger.info("forwarded", metadata: ["jobId": "\(claim.id)", "topic": "\(configuration.jobsOut ?? "")"]) }
        } catch {
            // They are in Kafka already; left claimed, they would block. Back to new/ (sent again later: at-least-once).
            logger.error("cannot move forwarded jobs: \(error)")
            for claim in batch where !claim.isReleased { giveBack(claim, "could not record the hand-over: \(error)") }
        }
    }

    func giveBack(_ claim: Claim, _ reason: String) {
        do { try spool.giveBack(claim, reason: reason, countAttempt: false) } catch {
            // Left in cur/ with our lock; when we exit, recovery gives it back.
            logger.error("cannot give back: \(error)", metadata: ["jobId": "\(claim.id)"])
        }
    }

    /// Gives back the claims of dead processes (a bridge killed before its jobs were confirmed).
    func recoverDeadClaims() {
        do {
            let r = try spool.recover()
            if !r.givenBack.isEmpty || !r.deadLettered.isEmpty {
                logger.notice("recovered dead claims", metadata: ["givenBack": "\(r.givenBack.count)", "deadLettered": "\(r.deadLettered.count)"])
            }
        } catch {
            logger.error("recovery failed: \(error)")
        }
    }
}
