import Foundation
import JSON
import Spool
import Testing

/// The configuration file: `config check` and `config show`, and the file under the flags of
/// `worker`, `bridge` and `cgi` (docs/configuration.md).
@Suite("Configuration file")
struct ConfigTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("contrib/llmspool.json").path

    /// Runs `llmspool ARGS` with no LLMSPOOL_* variable of the test's environment, plus `env`.
    func run(_ args: [String], env: [String: String] = [:], stdin: Data? = nil) throws -> Run {
        try CLI.run(
            args, environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LLMSPOOL_") }.merging(env) { $1 },
            stdin: stdin)
    }

    func write(_ dir: TempDir, _ name: String, _ text: String) throws -> String {
        try text.write(toFile: dir.file(name), atomically: true, encoding: .utf8)
        return dir.file(name)
    }

    static let good = """
        {
          "spool": "/srv/spool",
          "worker": {"llmURL": "https://llm.example/v1", "model": "file-model", "maxInFlight": 8, "maxAttempts": 2,
                     "logPrompts": true, "metricsAddress": "127.0.0.1:9464", "maxConnections": 3,
                     "tenants": {"*": {"maxInFlight": 4}, "acme": {"tokensPerMinute": 5000}}},
          "bridge": {"brokers": "file:9092", "group": "file-group", "jobsIn": "file-jobs", "resultsOut": "file-results",
                     "deadLetterTopic": "file-dlq", "logLevel": "debug",
                     "properties": {"acks": "all", "session.timeout.ms": "6000"}},
          "cgi": {"maxBodyBytes": 2048, "tokensFile": "/etc/llmspool/tokens"}
        }
        """

    // MARK: config check

    @Test("config check: a good file exits 0 with a summary of each section")
    func checkGood() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "good.json", Self.good)
        let r = try run(["config", "check", f])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.first == f + ": ok")
        #expect(r.stdout.contains("spool:  /srv/spool"))
        #expect(r.stdout.contains("llmURL https://llm.example/v1") && r.stdout.contains("model file-model") && r.stdout.contains("limits for *, acme"))
        #expect(r.stdout.contains("brokers file:9092") && r.stdout.contains("jobs in from file-jobs"))
        #expect(r.stdout.contains("max body 2048 bytes"))
        #expect(r.stderr.isEmpty)
        // Named by LLMSPOOL_CONFIG instead of the argument.
        let e = try run(["config", "check"], env: ["LLMSPOOL_CONFIG": f])
        #expect(e.status == 0 && e.lines.first == f + ": ok", "\(e.stderr)")
    }

    @Test("config check: the example config in contrib/ is valid")
    func checkExample() throws {
        let r = try run(["config", "check", Self.example])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(": ok"))
    }

    @Test(
        "config check: an unknown key exits 65 and names it with its section",
        arguments: [
            (#"{"worker": {"maxAtempts": 3}}"#, "worker.maxAtempts: unknown setting"),
            (#"{"worker": {"tenants": {"acme": {"tokensPerMinit": 1}}}}"#, "worker.tenants.acme.tokensPerMinit: unknown setting"),
            (#"{"bridge": {"topic": "x"}}"#, "bridge.topic: unknown setting"),
            (#"{"cgi": {"maxBody": 1}}"#, "cgi.maxBody: unknown setting"),
            (#"{"worker": {}, "model": "x"}"#, "model: unknown top-level setting"),
            // A key in the wrong case, or with _ or -, gets "did you mean", as job fields do.
            (#"{"worker": {"LLMUrl": "builtin:echo"}}"#, #"worker.LLMUrl: unknown setting; did you mean "llmURL"?"#),
            (
                #"{"worker": {"tenants": {"acme": {"tokens_per_minute": 1}}}}"#,
                #"worker.tenants.acme.tokens_per_minute: unknown setting; did you mean "tokensPerMinute"?"#
            ),
            (#"{"bridge": {"Brokers": "h:9092"}}"#, #"bridge.Brokers: unknown setting; did you mean "brokers"?"#),
            (#"{"cgi": {"max-body-bytes": 1}}"#, #"cgi.max-body-bytes: unknown setting; did you mean "maxBodyBytes"?"#),
            (#"{"Worker": {"model": "m"}}"#, #"Worker: unknown top-level setting; did you mean "worker"?"#),
            (#"{"llmurl": "builtin:echo"}"#, #"llmurl: unknown setting; did you mean "llmURL"?"#),
        ])
    func checkUnknownKey(_ text: String, _ expected: String) throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "bad.json", text)
        let r = try run(["config", "check", f])
        #expect(r.status == 65)
        #expect(r.stderr.contains("llmspool: error: \(f): \(expected)"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test("config check: a bad value names the key path and the rule, one error per bad section")
    func checkBadValues() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(
            d, "bad.json",
            """
            {"worker": {"tenants": {"acme": {"tokensPerMinute": 0}}},
             "bridge": {"properties": {"session.timeout.ms": 6000}},
             "cgi": {"heartbeatSeconds": "15"}}
            """)
        let r = try run(["config", "check", f])
        #expect(r.status == 65)
        let errors = r.stderr.split(separator: "\n").map(String.init)
        #expect(
            errors == [
                "llmspool: error: \(f): worker.tenants.acme.tokensPerMinute: must be an integer from 1 to 1000000000",
                "llmspool: error: \(f): bridge.properties.session.timeout.ms: must be a string (librdkafka takes every property as text, e.g. \"6000\")",
                "llmspool: error: \(f): cgi.heartbeatSeconds: must be an integer from 1 to 3600",
            ])
    }

    @Test(
        "config check: bad values of the worker's new keys",
        arguments: [
            (#"{"worker": {"llmURL": "ftp://x"}}"#, "worker.llmURL"),
            (#"{"worker": {"llmURL": "builtin:echo?delay=soon"}}"#, "worker.llmURL"),
            (#"{"worker": {"metricsAddress": "9464"}}"#, "worker.metricsAddress"),
            (#"{"worker": {"logLevel": "verbose"}}"#, "worker.logLevel"),
            (#"{"worker": {"apiKeyFile": ""}}"#, "worker.apiKeyFile"),
            (#"{"worker": {"tenants": {"no spaces": {}}}}"#, "worker.tenants.no spaces"),
            (#"{"worker": {"spool": "/s"}}"#, "worker.spool"),
        ])
    func checkWorkerKeys(_ text: String, _ key: String) throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let r = try run(["config", "check", try write(d, "bad.json", text)])
        #expect(r.status == 65)
        #expect(r.stderr.contains(": \(key): "), "\(r.stderr)")
    }

    @Test("config check: not JSON exits 65 with the line; a missing or unreadable file exits 66")
    func checkSyntaxAndMissing() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let syntax = try run(["config", "check", try write(d, "syntax.json", "{\n  \"worker\": {\"model\": \"m\",}\n}\n")])
        #expect(syntax.status == 65)
        #expect(syntax.stderr.contains("not valid JSON") && syntax.stderr.contains("line 2"), "\(syntax.stderr)")

        let missing = try run(["config", "check", d.file("absent.json")])
        #expect(missing.status == 66)
        #expect(missing.stderr.contains(d.file("absent.json") + ": no such configuration file"), "\(missing.stderr)")
        let missingEnv = try run(["config", "check"], env: ["LLMSPOOL_CONFIG": d.file("absent.json")])
        #expect(missingEnv.status == 66)
        #expect(try run(["config", "check", d.path]).status == 66, "a directory")
        let big = try write(d, "big.json", "{\"spool\": \"" + String(repeating: "x", count: 1 << 20) + "\"}")
        let tooBig = try run(["config", "check", big])
        #expect(tooBig.status == 65)
        #expect(tooBig.stderr.contains("larger than 1 MiB"), "\(tooBig.stderr)")
        // A named file that is missing stops the daemons too, before they start.
        let worker = try run(["worker", "--config", d.file("absent.json"), "--llm-url", "builtin:echo", "--spool", d.path])
        #expect(worker.status == 66, "\(worker.stderr)")
    }

    @Test("the worker's flat file (docs/worker.md before sections) is still read, as the worker section")
    func flatFile() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "worker.json", #"{"model": "flat-model", "maxAttempts": 5, "tenants": {"acme": {"maxInFlight": 2}}}"#)
        let r = try run(["config", "check", f])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.lines.first?.contains("flat worker file") == true)
        let shown = try JSONParser.parse(try run(["worker", "--config", f, "--llm-url", "builtin:echo", "--print-config"]).stdout)
        #expect(shown["worker"]?["model"] == .string("flat-model"))
        #expect(shown["worker"]?["maxAttempts"] == .integer(5))
        #expect(shown["worker"]?["tenants"]?["acme"]?["maxInFlight"] == .integer(2))
        // Its errors name the key as written: no section prefix.
        let bad = try run(["config", "check", try write(d, "bad.json", #"{"tenants": {"acme": {"maxInFlight": 0}}}"#)])
        #expect(bad.status == 65)
        #expect(bad.stderr.contains(": tenants.acme.maxInFlight: must be an integer from 1 to 100000"), "\(bad.stderr)")
    }

    // MARK: flags over the file

    @Test("worker: flags override the environment, which overrides the file, which overrides the defaults")
    func workerPrecedence() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "good.json", Self.good)
        let fileOnly = try JSONParser.parse(try run(["worker", "--config", f, "--print-config"]).stdout)
        #expect(fileOnly["spool"] == .string("/srv/spool"))
        #expect(fileOnly["worker"]?["llmURL"] == .string("https://llm.example/v1"))
        #expect(fileOnly["worker"]?["model"] == .string("file-model"))
        #expect(fileOnly["worker"]?["maxInFlight"] == .integer(8))
        #expect(fileOnly["worker"]?["logPrompts"] == .bool(true))
        #expect(fileOnly["worker"]?["requestTimeoutSeconds"] == .integer(600), "a default")
        #expect(fileOnly["worker"]?["maxConnections"] == .integer(3))

        let env = ["LLMSPOOL_SPOOL": "/env/spool", "LLMSPOOL_LLM_URL": "builtin:echo", "LLMSPOOL_LOG_LEVEL": "warning"]
        let withEnv = try JSONParser.parse(try run(["worker", "--config", f, "--print-config"], env: env).stdout)
        #expect(withEnv["spool"] == .string("/env/spool"))
        #expect(withEnv["worker"]?["llmURL"] == .string("builtin:echo"))
        #expect(withEnv["worker"]?["logLevel"] == .string("warning"))

        let r = try run(
            [
                "worker", "--config", f, "--print-config", "--spool", "/flag/spool", "--llm-url", "http://flag/v1",
                "--model", "flag-model", "--concurrency", "3", "--max-attempts", "7", "--grace-period", "2s",
                "--request-timeout", "90s", "--api-key-env", "FLAG_KEY", "--log-level", "error",
                "--metrics-address", "127.0.0.1:9999", "--no-log-prompts",
            ], env: env)
        #expect(r.status == 0, "\(r.stderr)")
        let flags = try JSONParser.parse(r.stdout)
        let w = flags["worker"]
        #expect(flags["spool"] == .string("/flag/spool"))
        #expect(w?["llmURL"] == .string("http://flag/v1") && w?["model"] == .string("flag-model"))
        #expect(w?["maxInFlight"] == .integer(3) && w?["maxAttempts"] == .integer(7))
        #expect(w?["gracePeriodSeconds"] == .integer(2) && w?["requestTimeoutSeconds"] == .integer(90))
        #expect(w?["apiKeyEnv"] == .string("FLAG_KEY") && w?["logLevel"] == .string("error"))
        #expect(w?["metricsAddress"] == .string("127.0.0.1:9999") && w?["logPrompts"] == .bool(false))
        #expect(w?["tenants"]?["acme"]?["tokensPerMinute"] == .integer(5000), "no flag: the file's")
    }

    @Test("worker: without an LLM URL anywhere it exits 64 and says where to set one")
    func workerNeedsURL() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "c.json", #"{"worker": {"model": "m"}}"#)
        let r = try run(["worker", "--config", f, "--spool", d.path])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--llm-url") && r.stderr.contains("LLMSPOOL_LLM_URL") && r.stderr.contains("worker.llmURL in \(f)"), "\(r.stderr)")
    }

    @Test("bridge: each flag overrides the file's value; -X comes after the file's properties")
    func bridgePrecedence() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "good.json", Self.good)
        let fileOnly = try run(["bridge", "--config", f, "--print-config"])
        #expect(fileOnly.status == 0, "\(fileOnly.stderr)")
        let b0 = try JSONParser.parse(fileOnly.stdout)["bridge"]
        #expect(b0?["brokers"] == .string("file:9092") && b0?["group"] == .string("file-group"))
        #expect(b0?["jobsIn"] == .string("file-jobs") && b0?["resultsOut"] == .string("file-results"))
        #expect(b0?["deadLetterTopic"] == .string("file-dlq") && b0?["logLevel"] == .string("debug"))
        #expect(b0?["properties"] == .object(["acks": .string("all"), "session.timeout.ms": .string("6000")]))

        let r = try run([
            "bridge", "--config", f, "--print-config", "--brokers", "flag:1", "--group", "flag-group",
            "--jobs-in", "flag-jobs", "--results-out", "flag-results", "--dlq", "", "-X", "acks=1",
            "-X", "client.id=flag", "--log-level", "error",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let shown = try JSONParser.parse(r.stdout)
        let b = shown["bridge"]
        #expect(shown["spool"] == .string("/srv/spool"))
        #expect(b?["brokers"] == .string("flag:1") && b?["group"] == .string("flag-group"))
        #expect(b?["jobsIn"] == .string("flag-jobs") && b?["resultsOut"] == .string("flag-results"))
        #expect(b?["deadLetterTopic"] == .string(""), "--dlq \"\" turns the file's DLQ off")
        #expect(b?["logLevel"] == .string("error"))
        #expect(b?["properties"] == .object(["acks": .string("1"), "session.timeout.ms": .string("6000"), "client.id": .string("flag")]))
    }

    @Test("bridge: brokers and a direction may come from the file or the flags, but must come from somewhere")
    func bridgeRequired() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let none = try write(d, "none.json", #"{"bridge": {"jobsIn": "jobs"}}"#)
        let noBrokers = try run(["bridge", "--config", none, "--print-config"])
        #expect(noBrokers.status == 64)
        #expect(noBrokers.stderr.contains("bridge.brokers"), "\(noBrokers.stderr)")
        #expect(try run(["bridge", "--config", none, "--brokers", "k:1", "--print-config"]).status == 0)
        let noTopic = try write(d, "notopic.json", #"{"bridge": {"brokers": "k:1"}}"#)
        #expect(try run(["bridge", "--config", noTopic, "--print-config"]).status == 64)
        #expect(try run(["bridge", "--config", noTopic, "--results-out", "r", "--print-config"]).status == 0)
        // A bad bridge section stops the bridge with the key, as config check would.
        let bad = try run(["bridge", "--config", try write(d, "bad.json", #"{"bridge": {"jobsIn": "a b"}}"#), "--brokers", "k:1"])
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("bridge.jobsIn: must be a Kafka topic name"), "\(bad.stderr)")
        // Every direction and its options come from the file too.
        let all = try run([
            "bridge", "--print-config", "--config",
            try write(
                d, "all.json",
                #"""
                {"bridge": {"brokers": "k:1", "jobsOut": "o", "resultsIn": "r", "resultsGroup": "g2",
                            "resultsOut": "ro", "resultsOf": "kafka", "metricsAddress": "127.0.0.1:9465"}}
                """#),
        ])
        #expect(all.status == 0, "\(all.stderr)")
        let shown = try JSONParser.parse(all.stdout)["bridge"]
        #expect(shown?["jobsOut"] == .string("o") && shown?["resultsIn"] == .string("r") && shown?["resultsGroup"] == .string("g2"))
        #expect(shown?["resultsOf"] == .string("kafka") && shown?["metricsAddress"] == .string("127.0.0.1:9465"))
    }

    @Test("worker: --provider-batch-window keeps providerBatch.windowSeconds's rule, and a window at or below the live margin halves the margin")
    func providerBatchWindowFlag() throws {
        let bad = try run(["worker", "--llm-url", "http://127.0.0.1:9", "--provider-batch-window", "0s", "--print-config"])
        #expect(bad.status == 64 && bad.stderr.contains("--provider-batch-window: must be a duration"), "\(bad.stderr)")
        let tooLong = try run(["worker", "--llm-url", "http://127.0.0.1:9", "--provider-batch-window", "744h", "--print-config"])
        #expect(tooLong.status == 64, "the file's bound (30 days) holds for the flag: \(tooLong.stderr)")
        let short = try run(["worker", "--llm-url", "http://127.0.0.1:9", "--provider-batch-window", "1h", "--print-config"])
        let batch = try JSONParser.parse(short.stdout)["worker"]?["providerBatch"]
        #expect(batch?["windowSeconds"] == .integer(3600) && batch?["liveMarginSeconds"] == .integer(1800), "\(short.stdout)")
    }

    @Test(
        "bridge: a flag's value goes through its setting's rule, and the error names the flag",
        arguments: [
            ("--max-queued", "0", "--max-queued: must be an integer from 1 to 1000000"),
            ("--max-forwarding", "lots", "--max-forwarding: must be an integer from 1 to 100000"),
            ("--stop-timeout", "0s", "--stop-timeout: must be a duration"),
            ("--stop-timeout", "99999999999999999999s", "--stop-timeout: must be a duration"),
            ("--results-of", "some", "--results-of: must be \"all\" or \"kafka\""),
            ("--jobs-in", "a b", "--jobs-in: must be a Kafka topic name"),
            ("--dlq", "a/b", "--dlq: must be a Kafka topic name"),
            ("--instance-id", "h/1", "--instance-id: must be a Kafka group.instance.id"),
            ("--metrics-address", "9464", "--metrics-address: must be HOST:PORT"),
            ("--log-level", "loud", "--log-level: must be one of"),
            ("--brokers", "a:1, b:2", "--brokers: must be a comma-separated list"),
            ("-X", "=v", "-X \"=v\" is not key=value"),
        ])
    func bridgeFlagRules(_ flag: String, _ value: String, _ says: String) throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "c.json", #"{"bridge": {"brokers": "k:1", "jobsIn": "jobs"}}"#)
        let r = try run(["bridge", "--config", f, "--print-config", flag, value])
        #expect(r.status == 64, "\(flag) \(value): \(r.stdout)")
        #expect(r.stderr.contains(says), "\(r.stderr)")
    }

    @Test("bridge: LLMSPOOL_LOG_LEVEL sits between the file and the flag, and a bad value names the variable")
    func bridgeLogLevelVariable() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "c.json", #"{"bridge": {"brokers": "k:1", "jobsIn": "jobs", "logLevel": "debug"}}"#)
        let fromEnv = try run(["bridge", "--config", f, "--print-config"], env: ["LLMSPOOL_LOG_LEVEL": "error"])
        #expect(try JSONParser.parse(fromEnv.stdout)["bridge"]?["logLevel"] == .string("error"), "\(fromEnv.stderr)")
        let fromFlag = try run(["bridge", "--config", f, "--print-config", "--log-level", "notice"], env: ["LLMSPOOL_LOG_LEVEL": "error"])
        #expect(try JSONParser.parse(fromFlag.stdout)["bridge"]?["logLevel"] == .string("notice"), "\(fromFlag.stderr)")
        let bad = try run(["bridge", "--config", f, "--print-config"], env: ["LLMSPOOL_LOG_LEVEL": "loud"])
        #expect(bad.status == 64 && bad.stderr.contains("LLMSPOOL_LOG_LEVEL: must be one of"), "\(bad.stderr)")
    }

    // MARK: config show

    @Test("config show: every setting with defaults filled in, itself a valid file that shows the same")
    func showRoundTrip() throws {
        let d = try TempDir("config")
        defer { d.remove() }
        let f = try write(d, "good.json", Self.good)
        let r = try run(["config", "show", f])
        #expect(r.status == 0, "\(r.stderr)")
        let shown = try JSONParser.parse(r.stdout)
        #expect(shown.objectValue?.keys == ["spool", "worker", "bridge", "cgi"])
        #expect(shown["worker"]?["model"] == .string("file-model"))
        #expect(shown["worker"]?["backoffCapSeconds"] == .integer(300), "a default")
        #expect(shown["worker"]?["retryBudgetSeconds"] == .integer(3600), "a default")
        #expect(shown["worker"]?["circuitBreaker"]?["window"] == .integer(50), "a default")
        #expect(shown["worker"]?["apiKeyFile"] == .null)
        #expect(shown["bridge"]?["resultsOf"] == .string("all"), "a default")
        #expect(shown["bridge"]?["maxQueued"] == .null)
        #expect(shown["cgi"]?["maxBodyBytes"] == .integer(2048))
        #expect(shown["cgi"]?["heartbeatSeconds"] == .integer(15), "a default")

        let again = try write(d, "shown.json", r.stdout)
        #expect(try run(["config", "check", again]).status == 0)
        #expect(try run(["config", "show", again]).stdout == r.stdout)

        // The environment the processes read is applied.
        let env = try JSONParser.parse(try run(["config", "show", f], env: ["LLMSPOOL_SPOOL": "/e", "LLMSPOOL_MAX_BODY": "4096"]).stdout)
        #expect(env["spool"] == .string("/e"))
        #expect(env["cgi"]?["maxBodyBytes"] == .integer(4096))
        // So is --spool, which wins over the environment.
        let flag = try run(["config", "show", f, "--spool", "/flag"], env: ["LLMSPOOL_SPOOL": "/e"])
        #expect(flag.status == 0, "\(flag.stderr)")
        #expect(try JSONParser.parse(flag.stdout)["spool"] == .string("/flag"))
    }

    // MARK: the processes

    @Test(
        "the worker runs from the file alone: its LLM URL, model, attempts and spool",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func workerFromFile() throws {
        let s = try TestSpool()
        let llm = try LLMStandIn()
        defer { llm.stop(); s.remove() }
        let f = try write(
            s.dir, "llmspool.json",
            """
            {"spool": "\(s.path)",
             "worker": {"llmURL": "\(llm.baseURL)", "model": "from-file", "maxAttempts": 2, "backoffBaseSeconds": 0.05,
                        "requestTimeoutSeconds": 5, "logLevel": "warning"}}
            """)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["worker"]
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LLMSPOOL_") }.merging(["LLMSPOOL_CONFIG": f]) { $1 }
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }

        let ok = try CLI.run(["submit", "--prompt", "hello", "--wait", "--timeout", "30s"], spool: s.path)
        #expect(ok.status == 0, "\(ok.stderr)")
        let id = ok.lines.first ?? ""
        #expect(try s.json("done", id + ".json")["model"] == .string("from-file"))

        let prompt = "fake:status=500"
        let failed = try CLI.run(["submit", "--prompt", prompt, "--wait", "--timeout", "30s"], spool: s.path)
        #expect(failed.status == 69)
        #expect(try llm.get("/prompts")[prompt]?.intValue == 2, "maxAttempts 2 from the file")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    @Test("the CGI reads LLMSPOOL_CONFIG's file; its variables override it; a bad file answers 500")
    func cgiFromFile() throws {
        let s = try TestSpool()
        defer { s.remove() }
        let f = try write(s.dir, "llmspool.json", #"{"spool": "\#(s.path)", "cgi": {"maxBodyBytes": 16}}"#)
        let body = Data("a prompt longer than sixteen bytes".utf8)
        func post(_ env: [String: String]) throws -> String {
            let cgiEnv = [
                "REQUEST_METHOD": "POST", "PATH_INFO": "/jobs", "CONTENT_TYPE": "text/plain",
                "CONTENT_LENGTH": String(body.count), "REMOTE_USER": "alice",
            ]
            let r = try run(["cgi"], env: cgiEnv.merging(env) { $1 }, stdin: body)
            return r.stdout.split(separator: "\r\n").first.map(String.init) ?? r.stdout
        }
        #expect(try post(["LLMSPOOL_CONFIG": f]).hasPrefix("Status: 413"))
        #expect(s.names("new").isEmpty)
        #expect(try post(["LLMSPOOL_CONFIG": f, "LLMSPOOL_MAX_BODY": "1024"]).hasPrefix("Status: 202"))
        #expect(s.names("new").count == 1, "the file's spool")
        let bad = try write(s.dir, "bad.json", #"{"cgi": {"maxBodyBytes": "big"}}"#)
        #expect(try post(["LLMSPOOL_CONFIG": bad, "LLMSPOOL_SPOOL": s.path]).hasPrefix("Status: 500"))
        #expect(s.names("new").count == 1)
    }
}
