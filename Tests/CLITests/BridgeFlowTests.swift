import Foundation
import JSON
import Spool
import TestSupport
import Testing

extension HostProcess {
    /// `llmspool bridge ARGS` on this host, its log in a file (a pipe nobody drains would block a
    /// chatty bridge).
    static func bridge(spool: String, _ args: [String], log: String) throws -> HostProcess {
        try HostProcess(spool: spool, ["bridge"] + args, log: log)
    }
}

let kafkaPeersInstalled = ["kcat", "cc"].allSatisfy { name in
    (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        .contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
}

/// The bridge's four directions together, its consumer groups and its faults, against librdkafka's
/// mock cluster (3 brokers) with kcat as the outside client.
@Suite(
    "Kafka bridge: forwarding, groups and faults", .serialized,
    .enabled(if: kafkaPeersInstalled, "needs kcat and cc (apt-get install kcat librdkafka-dev)"))
struct BridgeFlowTests {
    /// Short group timeouts: the mock coordinator (librdkafka 2.0.2) waits a whole session timeout
    /// before it rebalances around a member that left or died.
    static let fast = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "--log-level", "info"]

    /// The value of the first sample of `name` whose labels contain `label`.
    static func sample(_ text: String, _ name: String, _ label: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") && line.contains(label) {
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    static func jobs(_ prefix: String, _ n: Int) -> [(key: String, value: String)] {
        (0..<n).map { i in
            let id = "\(prefix)-\(i)"
            return (id, #"{"jobId":"\#(id)","prompt":"p\#(i)","userId":"u\#(i % 3)"}"#)
        }
    }

    @Test("two hosts: a job submitted on A is forwarded, worked on B, and comes back done on A for its owner; --results-of kafka keeps B's own results home")
    func twoHosts() throws {
        let a = try TestSpool(), b = try TestSpool()
        defer { a.remove(); b.remove() }
        let mock = try KafkaMock(in: a.dir, topics: ["jobs:3", "results:3"])
        defer { mock.stop() }
        let bridgeA = try HostProcess.bridge(
            spool: a.path, ["--brokers", mock.bootstrap, "--jobs-out", "jobs", "--results-in", "results"] + Self.fast,
            log: a.dir.file("bridge-a.log"))
        let port = UInt16(try freeLoopbackPort())
        let bridgeB = try HostProcess.bridge(
            spool: b.path,
            [
                "--brokers", mock.bootstrap, "--jobs-in", "jobs", "--results-out", "results",
                "--results-of", "kafka", "--metrics-address", "127.0.0.1:\(port)",
            ] + Self.fast,
            log: b.dir.file("bridge-b.log"))
        let (worker, _) = try WorkerProcessTests.startWorker(b.path, ["--llm-url", "builtin:echo"])
        defer {
            kill(worker.processIdentifier, SIGTERM)
            worker.waitUntilExit()
            bridgeA.stop()
            bridgeB.stop()
        }
        // B's own job: answered on B, not published (it did not come from Kafka).
        #expect(try CLI.run(["submit", "--prompt", "local to B", "--id", "b-local"], spool: b.path).status == 0)

        var ids: [String] = []
        for i in 0..<20 {
            let r = try CLI.run(["submit", "--prompt", "question \(i)", "--user", "alice", "--tenant", "acme"], spool: a.path)
            try #require(r.status == 0, "submit on A: \(r.stderr)")
            ids.append(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let waited = try CLI.run(["submit", "--prompt", "waited for", "--wait", "--timeout", "60s"], spool: a.path)
        #expect(waited.status == 0, "submit --wait on A: \(waited.stderr)")
        #expect(waited.stdout.contains("waited for"), "the echo answer came back to A: \(waited.stdout)")

        let back = WorkerProcessTests.waitUntil(60) { a.names("done").count == 21 }
        #expect(back, "A's done/ has \(a.names("done").count) of 21\nA: \(bridgeA.log)\nB: \(bridgeB.log)")
        #expect(a.names("new").isEmpty && a.names("cur").isEmpty && a.names("forwarded").isEmpty, "A left jobs behind")
        for (i, id) in ids.enumerated() {
            let doc = try a.json("done", id + ".json")
            #expect(doc["response"]?.stringValue == "question \(i)")
            #expect(doc["userId"]?.stringValue == "alice" && doc["tenantId"]?.stringValue == "acme", "the local owner is kept")
            #expect(doc["receivedFrom"]?["topic"]?.stringValue == "results")
        }
        // B's metrics: valid exposition, and the 21 jobs counted in and their results out.
        let scrape = try MetricsTests.get(port, "/metrics")
        #expect(MetricsTests.validate(scrape.body).isEmpty, "\(MetricsTests.validate(scrape.body))\n\(scrape.body)")
        #expect(Self.sample(scrape.body, "llmspool_bridge_consumed_total", #"outcome="enqueued""#) == 21, "\(scrape.body)")
        #expect(Self.sample(scrape.body, "llmspool_bridge_delivered_total", #"kind="result""#) == 21, "\(scrape.body)")
        #expect(Self.sample(scrape.body, "llmspool_bridge_consumer_lag", #"topic="jobs""#) != nil, "\(scrape.body)")
        // Per partition, once the gauges' 5 s turn has seen the partitions' watermarks.
        var partitionLag = ""
        let perPartition = try WorkerProcessTests.waitUntil(12) {
            partitionLag = try MetricsTests.get(port, "/metrics").body
            return Self.sample(partitionLag, "llmspool_bridge_partition_lag", #"topic="jobs""#) != nil
        }
        #expect(perPartition, "\(partitionLag)")
        let show = try CLI.run(["show", ids[0]], spool: a.path)
        #expect(show.status == 0 && show.stdout.contains("done"), "show on A: \(show.stdout)")
        #expect(b.names("done").contains("b-local.json"))
        #expect(!FileManager.default.fileExists(atPath: b.path + "/.published/b-local"), "B published a result that did not come from Kafka")
        let published = Set(try mock.keys("results"))
        #expect(published.isSuperset(of: ids) && published.count == 21, "results topic: \(published.count) keys")
        #expect(!published.contains("b-local"))
        #expect(bridgeA.stop() == 0)
        #expect(bridgeA.log.contains("forwarded=21"), "\(bridgeA.log)")
        #expect(bridgeA.log.contains("resultsSettled=21"), "\(bridgeA.log)")
    }

    @Test("two --jobs-in bridges in one group share the partitions and, between them, enqueue each job once, through a join and a leave")
    func consumerGroup() throws {
        let s1 = try TestSpool(), s2 = try TestSpool()
        defer { s1.remove(); s2.remove() }
        let mock = try KafkaMock(in: s1.dir, topics: ["jobs:6"])
        defer { mock.stop() }
        let args = ["--brokers", mock.bootstrap, "--group", "shared", "--jobs-in", "jobs", "--dlq", ""] + Self.fast
        try mock.produce("jobs", Self.jobs("first", 150))
        let one = try HostProcess.bridge(spool: s1.path, args, log: s1.dir.file("one.log"))
        defer { one.stop() }
        #expect(WorkerProcessTests.waitUntil(30) { s1.names("new").count == 150 }, "\(one.log)")
        // A second member joins: the partitions are split between the two.
        let two = try HostProcess.bridge(spool: s2.path, args, log: s2.dir.file("two.log"))
        defer { two.stop() }
        let split = WorkerProcessTests.waitUntil(45) {
            two.log.contains("partitions assigned") && one.log.components(separatedBy: "partitions assigned").count >= 3
        }
        #expect(split, "no rebalance\n\(one.log)\n\(two.log)")
        try mock.produce("jobs", Self.jobs("second", 150))
        #expect(WorkerProcessTests.waitUntil(60) { s1.names("new").count + s2.names("new").count >= 300 })
        let secondOnTwo = s2.names("new").filter { $0.hasPrefix("second-") }.count
        #expect(secondOnTwo > 0 && secondOnTwo < 150, "the second batch was not shared: \(secondOnTwo) of 150 on the second bridge")
        // The first member leaves (SIGTERM: commit, leave the group): the second takes every partition.
        #expect(one.stop() == 0)
        #expect(WorkerProcessTests.waitUntil(30) { two.log.contains("jobs[0,1,2,3,4,5]") }, "\(two.log)")
        try mock.produce("jobs", Self.jobs("third", 100))
        let all = WorkerProcessTests.waitUntil(60) { s1.names("new").count + s2.names("new").count >= 400 }
        usleep(500_000)  // anything enqueued twice would show up now
        #expect(two.stop() == 0)
        let ids1 = Set(s1.names("new")), ids2 = Set(s2.names("new"))
        #expect(all, "enqueued \(ids1.count) + \(ids2.count) of 400\n\(one.log)\n\(two.log)")
        #expect(ids1.count + ids2.count == 400, "\(ids1.count) + \(ids2.count)")
        #expect(ids1.isDisjoint(with: ids2), "enqueued in both spools: \(ids1.intersection(ids2).sorted().prefix(5))")
        let expected = Self.jobs("first", 150) + Self.jobs("second", 150) + Self.jobs("third", 100)
        #expect(ids1.union(ids2) == Set(expected.map { $0.key + ".json" }))
    }

    @Test("faults: all brokers down while jobs are submitted, then up, with injected Produce errors: every job reaches the topic once and waits in forwarded/")
    func brokersDownAndUp() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let mock = try KafkaMock(in: s.dir, topics: ["jobs:3"])
        defer { mock.stop() }
        let bridge = try HostProcess.bridge(
            spool: s.path, ["--brokers", mock.bootstrap, "--jobs-out", "jobs"] + Self.fast,
            log: s.dir.file("bridge.log"))
        defer { bridge.stop() }
        #expect(try CLI.run(["submit", "--prompt", "before", "--id", "before"], spool: s.path).status == 0)
        #expect(WorkerProcessTests.waitUntil(30) { s.names("forwarded") == ["before.json"] }, "\(bridge.log)")

        for id in 1...3 { try mock.command("down \(id)") }
        // The spool keeps accepting jobs while Kafka is away.
        for i in 0..<30 { #expect(try CLI.run(["submit", "--prompt", "p\(i)", "--id", "down-\(i)"], spool: s.path).status == 0) }
        usleep(2_000_000)
        #expect(s.names("forwarded").count == 1, "jobs were recorded as forwarded while every broker was down")
        try mock.command("errors 0 4 19")  // the next 4 Produce requests: NOT_ENOUGH_REPLICAS (retriable)
        for id in 1...3 { try mock.command("up \(id)") }

        let all = WorkerProcessTests.waitUntil(90) { s.names("forwarded").count == 31 }
        #expect(all, "forwarded \(s.names("forwarded").count) of 31\n\(bridge.log)")
        #expect(s.names("new").isEmpty && s.names("cur").isEmpty)
        #expect(bridge.stop() == 0)
        let keys = try mock.keys("jobs")
        #expect(keys.count == 31, "the idempotent producer sent \(keys.count) messages for 31 jobs")
        #expect(Set(keys) == Set(["before"] + (0..<30).map { "down-\($0)" }))
        let status = try CLI.run(["status", "--json"], spool: s.path)
        #expect(try JSONParser.parse(status.stdout)["forwarded"]?.intValue == 31)
    }

    @Test("kill -9: a jobs-in bridge and a jobs-out bridge killed mid-stream and restarted lose nothing, and no job is twice in a spool")
    func killNine() throws {
        let inbound = try TestSpool(), outbound = try TestSpool()
        defer { inbound.remove(); outbound.remove() }
        let mock = try KafkaMock(in: inbound.dir, topics: ["in:3", "out:3"])
        defer { mock.stop() }
        let expected = Self.jobs("k", 400)
        try mock.produce("in", expected)
        for i in 0..<200 {
            _ = try CLI.run(["submit", "--prompt", "o\(i)", "--id", "o-\(i)", "--volatile"], spool: outbound.path)
        }
        let inArgs = ["--brokers", mock.bootstrap, "--group", "chaos", "--jobs-in", "in"] + Self.fast
        let outArgs = ["--brokers", mock.bootstrap, "--jobs-out", "out"] + Self.fast
        var rng = SplitMix(seed: 7)
        for round in 0..<4 {
            let a = try HostProcess.bridge(spool: inbound.path, inArgs, log: inbound.dir.file("in-\(round).log"))
            let b = try HostProcess.bridge(spool: outbound.path, outArgs, log: outbound.dir.file("out-\(round).log"))
            // Let each get going (joining the group takes a moment), then kill both mid-stream.
            _ = WorkerProcessTests.waitUntil(20) { a.log.contains("enqueued") || a.log.contains("partitions assigned") }
            usleep(UInt32(50_000 + rng.next() % 250_000))
            a.kill9()
            b.kill9()
        }
        let a = try HostProcess.bridge(spool: inbound.path, inArgs, log: inbound.dir.file("in-last.log"))
        let b = try HostProcess.bridge(spool: outbound.path, outArgs, log: outbound.dir.file("out-last.log"))
        _ = WorkerProcessTests.waitUntil(30) { a.log.contains("partitions assigned") }
        let inDone = WorkerProcessTests.waitUntil(90) { inbound.names("new").count >= 400 }
        let outDone = WorkerProcessTests.waitUntil(90) { outbound.names("forwarded").count >= 200 }
        #expect(a.stop() == 0)
        #expect(b.stop() == 0)
        #expect(inDone, "jobs in: \(inbound.names("new").count) of 400\n\(a.log)")
        #expect(Set(inbound.names("new")) == Set(expected.map { $0.key + ".json" }))
        #expect(inbound.names("cur").isEmpty && inbound.names("failed").isEmpty)
        #expect(outDone, "jobs out: \(outbound.names("forwarded").count) of 200\n\(b.log)")
        #expect(
            outbound.names("new").isEmpty && outbound.names("cur").isEmpty && outbound.names("failed").isEmpty,
            "left behind: new \(outbound.names("new").count), cur \(outbound.names("cur").count), failed \(outbound.names("failed"))")
        // At-least-once: every job reached the topic; a kill between produce and confirmation may repeat one.
        let keys = try mock.keys("out")
        #expect(Set(keys) == Set((0..<200).map { "o-\($0)" }), "topic has \(Set(keys).count) distinct of 200")
    }
}
