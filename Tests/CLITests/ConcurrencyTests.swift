import Foundation
import JSON
import Spool
import Testing

/// Many processes on one spool: enqueue and claim races, and claimers killed with SIGKILL.
@Suite("Processes racing on one spool", .serialized)
struct ConcurrencyTests {
    @Test("concurrent submit from several processes: every id unique, every job in new/")
    func concurrentSubmit() throws {
        let s = try TestSpool()
        defer { s.remove() }
        // Six processes each submitting a batch of 25 files, and six submitting 10 prompts one by one.
        var files: [String] = []
        for k in 0..<25 {
            let f = s.dir.file("job\(k).json")
            try Data("{\"prompt\":\"batch job \(k)\",\"tenantId\":\"t\(k % 3)\"}".utf8).write(to: URL(fileURLWithPath: f))
            files.append(f)
        }
        var procs: [(Process, Pipe, Pipe)] = []
        for _ in 0..<6 { procs.append(CLI.process(["submit"] + files, spool: s.path)) }
        for k in 0..<6 {
            let script = "for i in 1 2 3 4 5 6 7 8 9 10; do \"\(CLI.binary)\" submit --prompt \"single \(k) $i\" || exit 1; done"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script]
            p.environment = ["LLMSPOOL_SPOOL": s.path, "PATH": "/usr/bin:/bin"]
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            procs.append((p, out, err))
        }
        for (p, _, _) in procs { try p.run() }
        var ids: [String] = []
        for (p, out, err) in procs {
            let data = out.fileHandleForReading.readDataToEndOfFile()
            let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "submit failed: \(errText)")
            ids += String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        #expect(ids.count == 6 * 25 + 6 * 10)
        #expect(Set(ids).count == ids.count, "duplicate job ids")
        #expect(s.names("new") == ids.map { $0 + ".json" }.sorted())
        #expect(s.names("tmp").isEmpty)
        for id in ids.prefix(20) {
            #expect(try s.json("new", id + ".json")["jobId"]?.stringValue == id)
        }
    }

    @Test("claimers racing for the same jobs claim each exactly once")
    func racingClaimers() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let spool = try Spool(path: s.path)
        let jobs = (0..<1500).map { Job(prompt: "job \($0)") }
        let ids = try spool.enqueue(batch: jobs, durability: .volatile)
        let procs = (0..<4).map { _ in CLI.process(["debug-claim", "--then", "echo"], spool: s.path) }
        for (p, _, _) in procs { try p.run() }
        var claimedBy: [[String]] = []
        for (p, out, _) in procs {
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            claimedBy.append(String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init))
        }
        let all = claimedBy.flatMap { $0 }
        #expect(all.count == ids.count, "claims: \(claimedBy.map(\.count))")
        #expect(Set(all) == Set(ids))
        #expect(claimedBy.filter { !$0.isEmpty }.count >= 2, "the race did not happen: one process took everything")
        #expect(s.names("done").count == ids.count)
        #expect(s.names("new").isEmpty && s.names("cur").isEmpty && s.names("failed").isEmpty)
    }

    /// Starts `llmspool debug-claim` claiming up to `count` jobs and holding them; returns the
    /// process and the ids it says it holds, once it says so.
    func startClaimer(claiming count: Int, spool: String) throws -> (Process, [String]) {
        let (p, out, _) = CLI.process(["debug-claim", "--max", "\(count)", "--then", "hold"], spool: spool)
        try p.run()
        var text = ""
        while !text.contains("holding\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        return (p, text.split(separator: "\n").map(String.init).filter { $0 != "holding" })
    }

    @Test("a claimer killed with SIGKILL: recovery gives back exactly its jobs, and never a live claim")
    func killedClaimerIsRecovered() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let spool = try Spool(path: s.path)
        let ids = try spool.enqueue(batch: (0..<50).map { Job(prompt: "job \($0)") })
        let (p, held) = try startClaimer(claiming: 20, spool: s.path)
        #expect(held.count == 20)
        #expect(s.names("cur") == held.map { $0 + ".json" }.sorted())

        // While the claimer lives, recovery leaves its claims alone.
        let live = try JSONParser.parse(try CLI.run(["recover", "--json"], spool: s.path).stdout)
        #expect(live["live"]?.intValue == 20)
        #expect(live["givenBack"]?.arrayValue?.isEmpty == true)
        #expect(s.names("cur").count == 20)
        let status = try JSONParser.parse(try CLI.run(["status", "--json"], spool: s.path).stdout)
        #expect(status["liveClaims"]?.intValue == 20 && status["deadClaims"]?.intValue == 0)

        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        let deadStatus = try JSONParser.parse(try CLI.run(["status", "--json"], spool: s.path).stdout)
        #expect(deadStatus["deadClaims"]?.intValue == 20)

        let r = try JSONParser.parse(try CLI.run(["recover", "--json"], spool: s.path).stdout)
        let back = r["givenBack"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(Set(back) == Set(held))
        #expect(back.count == 20)
        #expect(s.names("cur").isEmpty)
        #expect(s.names("new") == ids.map { $0 + ".json" }.sorted())
        for id in ids {
            let job = try s.json("new", id + ".json")
            if held.contains(id) {
                #expect(job["attempts"]?.intValue == 1)
                #expect(job["history"]?.arrayValue?.last?["kind"]?.stringValue == "abandoned")
            } else {
                #expect(job["attempts"] == nil)
            }
        }
        // A second pass finds nothing to do.
        let again = try JSONParser.parse(try CLI.run(["recover", "--json"], spool: s.path).stdout)
        #expect(again["givenBack"]?.arrayValue?.isEmpty == true)
    }

    @Test(
        "a claimer holding 400 parked claims uses a handful of descriptors; killed, three recoverers at once give each back exactly once and clear its markers and lease"
    )
    func killedParkedClaimerIsRecoveredOnce() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let ids = try Spool(path: s.path).enqueue(batch: (0..<500).map { Job(prompt: "job \($0)") }, durability: .volatile)
        let (p, held) = try startClaimer(claiming: 400, spool: s.path)
        #expect(held.count == 400)
        let descriptors = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p.processIdentifier)/fd")) ?? []).count
        #expect(descriptors > 0 && descriptors < 40, "the claimer holds \(descriptors) descriptors for 400 claims")
        let leases = { ((try? FileManager.default.contentsOfDirectory(atPath: s.path + "/.leases")) ?? []).sorted() }
        let curAll = { ((try? FileManager.default.contentsOfDirectory(atPath: s.path + "/cur")) ?? []).sorted() }
        #expect(leases().count == 1)
        #expect(curAll().filter { $0.hasSuffix(".lease") }.count == 400)
        let live = try JSONParser.parse(try CLI.run(["recover", "--json"], spool: s.path).stdout)
        #expect(live["live"]?.intValue == 400 && live["givenBack"]?.arrayValue?.isEmpty == true)

        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let status = try JSONParser.parse(try CLI.run(["status", "--json"], spool: s.path).stdout)
        #expect(status["deadClaims"]?.intValue == 400 && status["liveClaims"]?.intValue == 0)

        let recoverers = (0..<3).map { _ in CLI.process(["recover", "--json"], spool: s.path) }
        for (r, _, _) in recoverers { try r.run() }
        var back: [String] = []
        for (r, rOut, _) in recoverers {
            let data = rOut.fileHandleForReading.readDataToEndOfFile()
            r.waitUntilExit()
            #expect(r.terminationStatus == 0)
            back += (try JSONParser.parse(Array(data)))["givenBack"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        // A recoverer that met the dead lease locked by another counted its claims live; one more pass settles any rest.
        let last = try JSONParser.parse(try CLI.run(["recover", "--json"], spool: s.path).stdout)
        back += last["givenBack"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(back.count == 400, "given back \(back.count) times for 400 claims")
        #expect(Set(back) == Set(held))
        #expect(curAll().isEmpty, "cur/ still has \(curAll().prefix(3))")
        #expect(leases().isEmpty)
        #expect(s.names("new") == ids.map { $0 + ".json" }.sorted())
        for id in held.prefix(50) { #expect(try s.json("new", id + ".json")["attempts"]?.intValue == 1) }
    }

    @Test("claim-and-finish processes killed 12 times mid-stream: every job done exactly once, none lost")
    func chaos() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let spool = try Spool(path: s.path)
        let ids = try spool.enqueue(batch: (0..<1000).map { Job(prompt: "job \($0)") }, durability: .volatile)
        var rng = SystemRandomNumberGenerator()
        var kills = 0
        for _ in 0..<12 {
            let procs = (0..<2).map { _ in CLI.process(["debug-claim", "--then", "echo"], spool: s.path) }
            for (p, _, _) in procs { try p.run() }
            usleep(UInt32.random(in: 5_000...60_000, using: &rng))
            for (p, _, _) in procs {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                if p.terminationReason == .uncaughtSignal { kills += 1 }
            }
            let r = try CLI.run(["recover"], spool: s.path)
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(kills >= 12, "too few processes were killed mid-stream (\(kills))")
        let last = try CLI.run(["debug-claim", "--then", "echo"], spool: s.path)
        #expect(last.status == 0)
        let done = s.names("done")
        #expect(done == ids.map { $0 + ".json" }.sorted(), "done/ has \(done.count) results")
        #expect(s.names("new").isEmpty && s.names("cur").isEmpty && s.names("failed").isEmpty)
        for name in done.prefix(100) {
            let doc = try s.json("done", name)
            #expect(doc["jobId"]?.stringValue == Job.id(fromFileName: name))
            #expect(doc["status"]?.stringValue == "done")
        }
    }
}
