import Foundation
import Spool
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// An `llmspool` process on one of the harness's hosts (Tests/peers/multihost.sh), or on this
/// one when `host` is nil; its stderr goes to a file.
final class HostProcess {
    let process = Process()
    let logPath: String

    init(harness: String? = nil, host: Int? = nil, spool: String, _ args: [String], log: String) throws {
        logPath = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        if let harness, let host {
            process.executableURL = URL(fileURLWithPath: MultiHost.script)
            process.arguments = ["run", harness, "\(host)", CLI.binary] + args
        } else {
            process.executableURL = URL(fileURLWithPath: CLI.binary)
            process.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["LLMSPOOL_SPOOL"] = spool
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// How many times the log says `text`.
    func count(_ text: String) -> Int { log.components(separatedBy: text).count - 1 }

    /// Rebalance lines so far.
    var rebalances: Int { count("partitions assigned") + count("partitions revoked") }

    /// Waits until each of `members` has been assigned partitions and none has logged a rebalance
    /// for `quiet` seconds (the group has settled); false after `limit` seconds.
    static func settled(_ members: [HostProcess], quiet: Double = 3, limit: Double = 60) -> Bool {
        let end = Date().addingTimeInterval(limit)
        var last: [Int] = [], since = Date()
        while Date() < end {
            let now = members.map(\.rebalances)
            if now != last { last = now; since = Date() }
            if members.allSatisfy({ $0.count("partitions assigned") > 0 }), Date().timeIntervalSince(since) >= quiet { return true }
            usleep(50_000)
        }
        return false
    }

    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// The harness of Tests/peers/multihost.sh: hosts in network namespaces of their own.
struct MultiHost {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../peers/multihost.sh").standardized.path

    /// Root, with `ip`, `unshare` and `socat`: the namespaces can be made.
    static let available: Bool = {
        guard getuid() == 0 else { return false }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return ["ip", "unshare", "socat"].allSatisfy { name in
            path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
        }
    }()

    let name: String

    /// Makes `hosts` hosts reaching the mock cluster's brokers at `bootstrap`.
    init(hosts: Int, bootstrap: String) throws {
        let n = Int.random(in: 1...250)
        name = "lst\(n)"
        _ = Self.shell(["down", name])
        let status = Self.shell(["up", name, "\(hosts)", "\(n)", bootstrap])
        guard status == 0 else { throw KafkaMockError(message: "multihost.sh up \(name) failed (\(status))") }
    }

    func cut(_ host: Int) { _ = Self.shell(["cut", name, "\(host)"]) }
    func heal(_ host: Int) { _ = Self.shell(["heal", name, "\(host)"]) }
    func down() { _ = Self.shell(["down", name]) }

    @discardableResult
    static func shell(_ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: script)
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }
}

/// Bridges on several hosts in one consumer group: restarts after `kill -9`, and every job
/// answered exactly once in the spool it was submitted to.
@Suite(
    "Kafka bridge on many hosts", .serialized,
    .enabled(if: kafkaPeersInstalled, "needs kcat and cc (apt-get install kcat librdkafka-dev)"))
struct MultiHostTests {
    /// A short session: librdkafka 2.0.2's mock coordinator ignores `group.instance.id` (it makes
    /// a new member of a restarted static one and waits for the old one's session to end), so
    /// here the session timeout, not static membership, bounds the restart (docs/bridge.md).
    static let group = ["-X", "session.timeout.ms=3000", "-X", "heartbeat.interval.ms=500", "--log-level", "info"]

    static func jobs(_ prefix: String, _ n: Int) -> [Job] {
        (0..<n).map { i in
            var j = Job(prompt: "p\(i)")
            j.jobId = "\(prefix)-\(i)"
            j.userId = "u\(i % 3)"
            return j
        }
    }

    @Test("a --jobs-in bridge killed with -9 and restarted has its partitions back within 5 s, and the group enqueues each job once")
    func restartAfterKill9() throws {
        let s1 = try TestSpool(), s2 = try TestSpool()
        defer { s1.remove(); s2.remove() }
        let mock = try KafkaMock(in: s1.dir, topics: ["jobs:4"])
        defer { mock.stop() }
        let args = ["bridge", "--brokers", mock.bootstrap, "--group", "g", "--jobs-in", "jobs", "--dlq", ""] + Self.group
        let one = try HostProcess(spool: s1.path, args, log: s1.dir.file("one.log"))
        defer { one.stop() }
        var two = try HostProcess(spool: s2.path, args, log: s2.dir.file("two.log"))
        defer { two.stop() }
        let joined = HostProcess.settled([one, two])
        try #require(joined, "the group did not form\n\(one.log)\n\(two.log)")
        try mock.produce("jobs", BridgeFlowTests.jobs("before", 40))
        #expect(WorkerProcessTests.waitUntil(30) { s1.names("new").count + s2.names("new").count >= 40 })

        two.kill9()
        let restarted = Date()
        two = try HostProcess(spool: s2.path, args, log: s2.dir.file("two-again.log"))
        let back = WorkerProcessTests.waitUntil(20) { two.count("partitions assigned") >= 1 }
        let took = Date().timeIntervalSince(restarted)
        print(String(format: "bridge restart after kill -9: partitions back in %.2f s", took))
        #expect(back && took < 5, "partitions back after \(took) s\n\(two.log)")
        // The same static member id both times (from the host name and the spool's path).
        let id = loggedInstance(two.log)
        #expect(id != nil && id == loggedInstance((try? String(contentsOfFile: s2.dir.file("two.log"), encoding: .utf8)) ?? ""))

        try mock.produce("jobs", BridgeFlowTests.jobs("after", 60))
        let all = WorkerProcessTests.waitUntil(30) { s1.names("new").count + s2.names("new").count >= 100 }
        usleep(500_000)  // a job enqueued twice would show up now
        let ids1 = Set(s1.names("new")), ids2 = Set(s2.names("new"))
        #expect(all, "enqueued \(ids1.count) + \(ids2.count) of 100\n\(one.log)\n\(two.log)")
        #expect(ids1.isDisjoint(with: ids2), "enqueued in both spools: \(ids1.intersection(ids2).sorted().prefix(5))")
        #expect(ids2.contains { $0.hasPrefix("after-") }, "the restarted bridge consumed nothing\n\(two.log)")
    }

    /// What the three-host tests share: spools for the origin (host 1) and two worker hosts, a mock
    /// cluster with `jobs` and `results`, the hosts' namespaces, and host 1's bridge sending jobs
    /// out and taking results in (`a`).
    static func withThreeHosts(
        _ body: (_ origin: TestSpool, _ w2: TestSpool, _ w3: TestSpool, _ mock: KafkaMock, _ hosts: MultiHost, _ a: HostProcess) throws -> Void
    ) throws {
        let origin = try TestSpool(), w2 = try TestSpool(), w3 = try TestSpool()
        defer { origin.remove(); w2.remove(); w3.remove() }
        let mock = try KafkaMock(in: origin.dir, topics: ["jobs:6", "results:3"])
        defer { mock.stop() }
        let hosts = try MultiHost(hosts: 3, bootstrap: mock.bootstrap)
        defer { hosts.down() }
        let a = try HostProcess(
            harness: hosts.name, host: 1, spool: origin.path,
            ["bridge", "--brokers", mock.bootstrap, "--jobs-out", "jobs", "--results-in", "results"] + group,
            log: origin.dir.file("a.log"))
        defer { a.stop() }
        try body(origin, w2, w3, mock, hosts, a)
    }

    /// A worker host's bridge: jobs in from the group `w`, results of Kafka's jobs out.
    static func workerBridge(_ mock: KafkaMock) -> [String] {
        [
            "bridge", "--brokers", mock.bootstrap, "--group", "w", "--jobs-in", "jobs", "--dlq", "",
            "--results-out", "results", "--results-of", "kafka",
        ] + group
    }

    @Test(
        "three hosts in namespaces of their own: jobs submitted on one are worked on the other two, one of them killed with -9 and restarted, and each is answered exactly once at home",
        .enabled(if: MultiHost.available, "needs root, iproute2, unshare and socat"))
    func exactlyOnceAtHome() throws {
        try Self.withThreeHosts { origin, w2, w3, mock, hosts, a in
            let workerArgs = Self.workerBridge(mock)
            let h = hosts.name
            let b = try HostProcess(harness: h, host: 2, spool: w2.path, workerArgs, log: w2.dir.file("b.log"))
            defer { b.stop() }
            var c = try HostProcess(harness: h, host: 3, spool: w3.path, workerArgs, log: w3.dir.file("c.log"))
            defer { c.stop() }
            let llm = ["worker", "--llm-url", "builtin:echo?delay=50ms", "--concurrency", "4", "--log-level", "warning"]
            let wb = try HostProcess(harness: h, host: 2, spool: w2.path, llm, log: w2.dir.file("wb.log"))
            defer { wb.stop() }
            let wc = try HostProcess(harness: h, host: 3, spool: w3.path, llm, log: w3.dir.file("wc.log"))
            defer { wc.stop() }
            let formed = HostProcess.settled([a, b, c])
            try #require(formed, "the group did not form\n\(b.log)\n\(c.log)")
            // Different hosts, different static member ids.
            #expect(loggedInstance(b.log) != nil && loggedInstance(b.log) != loggedInstance(c.log))

            let spool = try Spool(path: origin.path)
            let n = 120
            _ = try spool.enqueue(batch: Self.jobs("x", n / 2))
            _ = WorkerProcessTests.waitUntil(20) { w3.names("done").count >= 5 }
            c.kill9()
            _ = try spool.enqueue(batch: Self.jobs("y", n / 2))
            c = try HostProcess(harness: h, host: 3, spool: w3.path, workerArgs, log: w3.dir.file("c-again.log"))

            let home = WorkerProcessTests.waitUntil(90) { origin.names("done").count >= n }
            usleep(1_000_000)  // a second result would be settled (or counted) by now
            let done = origin.names("done")
            #expect(home, "done at home: \(done.count) of \(n)\n\(a.log.suffix(3000))")
            #expect(done.count == n && Set(done).count == n)
            #expect(origin.names("failed").isEmpty && origin.names("forwarded").isEmpty && origin.names("new").isEmpty)
            #expect(Set(done) == Set((Self.jobs("x", n / 2) + Self.jobs("y", n / 2)).map { $0.jobId! + ".json" }))
            let worked = w2.names("done").count + w3.names("done").count
            #expect(worked >= n, "the worker hosts answered \(worked) of \(n)")
            #expect(w2.names("done").count > 0 && w3.names("done").count > 0, "one host did all the work")
            #expect(a.stop() == 0)
            #expect(a.log.contains("resultsSettled=\(n)"), "\(a.log.suffix(2000))")
            print("exactly once at home: \(n) jobs; worked on B \(w2.names("done").count), on C \(w3.names("done").count)")
        }
    }

    @Test(
        "a worker host cut off the brokers while jobs flow, then healed: every job is answered exactly once at home, and a second result is ignored and counted",
        .enabled(if: MultiHost.available, "needs root, iproute2, unshare and socat"))
    func partitionAndHeal() throws {
        try Self.withThreeHosts { origin, w2, w3, mock, hosts, a in
            let workerArgs = Self.workerBridge(mock)
            let h = hosts.name
            let llm = ["worker", "--llm-url", "builtin:echo?delay=100ms", "--concurrency", "4", "--log-level", "warning"]
            let b = try HostProcess(harness: h, host: 2, spool: w2.path, workerArgs, log: w2.dir.file("b.log"))
            defer { b.stop() }
            let c = try HostProcess(harness: h, host: 3, spool: w3.path, workerArgs, log: w3.dir.file("c.log"))
            defer { c.stop() }
            let wb = try HostProcess(harness: h, host: 2, spool: w2.path, llm, log: w2.dir.file("wb.log"))
            defer { wb.stop() }
            let wc = try HostProcess(harness: h, host: 3, spool: w3.path, llm, log: w3.dir.file("wc.log"))
            defer { wc.stop() }
            try #require(HostProcess.settled([a, b, c]), "the group did not form\n\(b.log)\n\(c.log)")

            let spool = try Spool(path: origin.path)
            let n = 160
            _ = try spool.enqueue(batch: Self.jobs("x", n / 2))
            _ = WorkerProcessTests.waitUntil(20) { w3.names("done").count >= 5 }
            // Host 3 loses the brokers for 10 s while more jobs come (LLMSPOOL_TEST_PARTITION_SECONDS=60
            // for the full-length cut; CI keeps it short).
            let cutFor = Double(ProcessInfo.processInfo.environment["LLMSPOOL_TEST_PARTITION_SECONDS"] ?? "") ?? 10
            hosts.cut(3)
            let cutAt = Date()
            _ = try spool.enqueue(batch: Self.jobs("y", n / 2))
            usleep(useconds_t(max(0, cutFor - Date().timeIntervalSince(cutAt)) * 1_000_000))
            let heldByC = Set(w3.names("new") + w3.names("cur") + w3.names("done"))
            hosts.heal(3)

            let home = WorkerProcessTests.waitUntil(120) { origin.names("done").count >= n }
            usleep(2_000_000)  // results sent twice arrive by now
            let done = origin.names("done")
            #expect(home, "done at home: \(done.count) of \(n)\n\(a.log.suffix(3000))")
            #expect(done.count == n && Set(done) == Set((Self.jobs("x", n / 2) + Self.jobs("y", n / 2)).map { $0.jobId! + ".json" }))
            #expect(origin.names("failed").isEmpty && origin.names("forwarded").isEmpty && origin.names("new").isEmpty)
            let on2 = Set(w2.names("done")), on3 = Set(w3.names("done"))
            let twice = on2.intersection(on3)
            // What host 3 held when it was cut off it finished itself after the heal (its spool kept it).
            #expect(heldByC.isSubset(of: on3), "host 3 lost \(heldByC.subtracting(on3).sorted().prefix(5))")
            // A result delivered a second time (as after a redelivery) is ignored and counted.
            let first = try KafkaMock.kcat(["-C", "-b", mock.bootstrap, "-t", "results", "-o", "beginning", "-c", "1", "-f", "%k\t%s\n"])
            let parts = first.stdout.split(separator: "\t", maxSplits: 1).map(String.init)
            try #require(parts.count == 2, "no result on the topic: \(first.stdout)")
            let before = a.count("result already in done/")
            try mock.produce("results", [(parts[0], parts[1].trimmingCharacters(in: .newlines))])
            #expect(WorkerProcessTests.waitUntil(20) { a.count("result already in done/") > before }, "\(a.log.suffix(2000))")
            #expect(origin.names("done").count == n)
            #expect(a.stop() == 0)
            #expect(a.log.contains("resultsSettled=\(n)") && a.log.contains("resultsIgnored="), "\(a.log.suffix(2000))")
            let ignored = a.count("result already in done/")
            #expect(ignored >= twice.count + 1, "answered on both worker hosts: \(twice.count); second results ignored: \(ignored)")
            print(
                "partition: \(n) jobs, host 3 cut off \(Int(cutFor)) s holding \(heldByC.count); answered on both hosts \(twice.count), second results ignored at home \(ignored); worked on B \(on2.count), on C \(on3.count)"
            )
        }
    }

    @Test(
        "back-pressure: a worker host whose worker is stopped holds no more than --max-queued jobs; the other host answers the rest",
        .enabled(if: MultiHost.available, "needs root, iproute2, unshare and socat"))
    func backPressure() throws {
        try Self.withThreeHosts { origin, w2, w3, mock, hosts, a in
            // LLMSPOOL_TEST_MAX_QUEUED=0 runs the same without a limit, to see the skew it prevents.
            let limit = Int(ProcessInfo.processInfo.environment["LLMSPOOL_TEST_MAX_QUEUED"] ?? "") ?? 10
            let workerArgs = Self.workerBridge(mock)
            let h = hosts.name
            // Host 2's worker keeps up; its limit is far above what it ever holds, so it stays in the group.
            let b = try HostProcess(harness: h, host: 2, spool: w2.path, workerArgs + ["--max-queued", "1000"], log: w2.dir.file("b.log"))
            defer { b.stop() }
            let c = try HostProcess(
                harness: h, host: 3, spool: w3.path, workerArgs + (limit > 0 ? ["--max-queued", "\(limit)"] : []),
                log: w3.dir.file("c.log"))
            defer { c.stop() }
            let llm = ["worker", "--llm-url", "builtin:echo?delay=50ms", "--concurrency", "4", "--log-level", "warning"]
            let wb = try HostProcess(harness: h, host: 2, spool: w2.path, llm, log: w2.dir.file("wb.log"))
            defer { wb.stop() }
            // Host 3's worker is stopped: what host 3 takes waits in its new/.
            try #require(HostProcess.settled([a, b, c]), "the group did not form\n\(b.log)\n\(c.log)")

            let n = 120
            let started = Date()
            _ = try Spool(path: origin.path).enqueue(batch: Self.jobs("bp", n))
            var most = 0
            let answered = WorkerProcessTests.waitUntil(90) {
                most = max(most, w3.names("new").count + w3.names("cur").count)
                return origin.names("done").count + w3.names("new").count >= n && origin.names("done").count > 0
            }
            let took = Date().timeIntervalSince(started)
            usleep(1_000_000)  // anything more host 3 would take arrives now
            most = max(most, w3.names("new").count + w3.names("cur").count)
            let held3 = w3.names("new").count, home = origin.names("done").count, on2 = w2.names("done").count
            print(
                String(
                    format: "back-pressure (limit %@): %d jobs; host 3 (worker stopped) holds %d (most seen %d), host 2 answered %d, %d home in %.1f s",
                    limit > 0 ? "\(limit)" : "none", n, held3, most, on2, home, took))
            #expect(answered, "home \(home), host 3 holds \(held3)\n\(c.log.suffix(3000))")
            if limit > 0 {
                #expect(most <= limit, "host 3 held \(most) jobs, more than --max-queued \(limit)\n\(c.log.suffix(3000))")
                #expect(home == n - held3, "home \(home) + held by host 3 \(held3) != \(n)")
                #expect(c.count("leaving the consumer group") >= 1, "\(c.log.suffix(3000))")
            }
            // Host 3's worker starts: what it held is answered, it joins again, and every job is home once.
            let wc = try HostProcess(harness: h, host: 3, spool: w3.path, llm, log: w3.dir.file("wc.log"))
            defer { wc.stop() }
            let all = WorkerProcessTests.waitUntil(60) { origin.names("done").count >= n }
            usleep(500_000)
            #expect(all && origin.names("done").count == n, "done at home: \(origin.names("done").count) of \(n)\n\(a.log.suffix(2000))")
            #expect(origin.names("forwarded").isEmpty && origin.names("failed").isEmpty)
            if limit > 0 {
                #expect(WorkerProcessTests.waitUntil(20) { c.count("joining the consumer group again") >= 1 }, "\(c.log.suffix(3000))")
            }
        }
    }
}

/// The `instance` the jobs consumer logged when it started, if any.
func loggedInstance(_ log: String) -> String? {
    guard let line = log.split(separator: "\n").first(where: { $0.contains("consuming jobs") }),
        let r = line.range(of: "instance=")
    else { return nil }
    return String(line[r.upperBound...].prefix { $0 != " " && $0 != "," && $0 != "]" })
}
