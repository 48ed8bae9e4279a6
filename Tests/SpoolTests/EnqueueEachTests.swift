import Testing

@testable import Spool

@Suite("Spool: enqueue(each:) — one group commit, an outcome per job")
struct SpoolEnqueueEachTests {
    @Test func eachJobGetsItsOwnOutcome() throws {
        let t = try TestSpool()
        defer { t.remove() }
        var waiting = Job(prompt: "already waiting")
        waiting.jobId = "w"
        try t.spool.enqueue(waiting)
        t.drop("d.json", #"{"jobId":"d","status":"done","response":"r"}"#, into: .done)

        var jobs: [Job] = []
        for (id, prompt) in [("a", "fine"), ("w", "again"), ("d", "again"), ("a", "twice in the batch"), ("b", "fine too")] {
            var j = Job(prompt: prompt)
            j.jobId = id
            jobs.append(j)
        }
        var bad = Job(prompt: "x")
        bad.temperature = 7
        jobs.append(bad)

        let outcomes = try t.spool.enqueue(each: jobs)
        #expect(outcomes.count == 6)
        #expect(outcomes[0] == .enqueued(id: "a"))
        #expect(outcomes[1] == .duplicate(id: "w", state: .new))
        #expect(outcomes[2] == .duplicate(id: "d", state: .done))
        #expect(outcomes[3] == .duplicate(id: "a", state: .new))
        #expect(outcomes[4] == .enqueued(id: "b"))
        guard case .invalid(let e) = outcomes[5] else { Issue.record("\(outcomes[5])"); return }
        #expect(e.field == "temperature")
        #expect(t.visible(.new) == ["a.json", "b.json", "w.json"])
        #expect(try t.document(.new, "w.json")["prompt"] == .string("already waiting"), "a duplicate never replaces")
        #expect(t.visible(.tmp).isEmpty, "no temporary file left behind")
    }
}
