/// The opaque tag of a produced message: a sequence number, and which direction owns its
/// delivery report. The four producing directions share one producer; the tag routes each
/// report back to its owner without a table.
struct DeliveryTag: Hashable, Sendable {
    enum Owner: Int, Sendable, CaseIterable {
        case jobsOut = 0, resultsOut = 1, deadLetters = 2, deltasOut = 3
    }

    let seq: Int
    let owner: Owner

    var raw: Int { seq << 3 | owner.rawValue }

    init(seq: Int, owner: Owner) {
        precondition(seq > 0, "sequence numbers start at 1")
        self.seq = seq
        self.owner = owner
    }

    /// Nil for a tag no direction made (0, or an owner that does not exist).
    init?(raw: Int) {
        guard raw > 7, let owner = Owner(rawValue: raw & 7) else { return nil }
        self.init(seq: raw >> 3, owner: owner)
    }
}

/// Hands out increasing delivery tags.
struct DeliverySequence {
    private var next = 1

    mutating func take(for owner: DeliveryTag.Owner) -> DeliveryTag {
        defer { next += 1 }
        return DeliveryTag(seq: next, owner: owner)
    }
}
