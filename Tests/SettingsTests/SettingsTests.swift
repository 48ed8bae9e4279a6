import JSON
import Settings
import Spool
import Submit
import Testing

/// The configuration file's top level, the bridge and CGI sections: pure parsing, no process.
@Suite("Configuration file")
struct SettingsTests {
    func split(_ text: String) throws(SettingsError) -> SettingsFile {
        try SettingsFile.parse(Array(text.utf8), path: "f.json")
    }

    func invalidKey(_ text: String) -> String? {
        do {
            _ = try split(text)
            return nil
        } catch {
            if case .invalid(let e) = error.kind { return e.field }
            return "not invalid: \(error)"
        }
    }

    @Test("a file with sections is split; the top-level spool is kept")
    func sections() throws {
        let f = try split(#"{"spool": "/s", "worker": {"model": "m"}, "bridge": {"brokers": "k:1"}, "cgi": {}}"#)
        #expect(!f.isFlatWorkerFile)
        #expect(f.spool == "/s")
        #expect(f.worker["model"] == .string("m"))
        #expect(f.bridge["brokers"] == .string("k:1"))
        #expect(f.workerKey("model") == "worker.model")
    }

    @Test("a file without sections is the worker's flat file: read as the worker section")
    func flat() throws {
        let f = try split(#"{"spool": "/s", "model": "m", "tenants": {}}"#)
        #expect(f.isFlatWorkerFile)
        #expect(f.spool == "/s")
        #expect(f.worker.keys == ["model", "tenants"])
        #expect(f.workerKey("model") == "model")
    }

    @Test(
        "the top level refuses unknown keys, a flat key beside sections, non-objects, and worker.spool",
        arguments: [
            (#"{"worker": {}, "model": "m"}"#, "model"),
            (#"{"bridge": {}, "wroker": {}}"#, "wroker"),
            (#"{"worker": []}"#, "worker"),
            (#"{"cgi": "x"}"#, "cgi"),
            (#"{"spool": 3, "worker": {}}"#, "spool"),
            (#"{"spool": ""}"#, "spool"),
            (#"{"worker": {"spool": "/s"}}"#, "worker.spool"),
            (#"[1]"#, ""),
        ])
    func topLevel(_ text: String, _ key: String) {
        #expect(invalidKey(text) == key)
    }

    @Test("not JSON: the error gives the line and column")
    func syntax() {
        #expect(throws: SettingsError.self) { try split("{\n  \"worker\": {,}\n}") }
        do { _ = try split("{\n  \"worker\": {,}\n}") } catch {
            guard case .syntax(let e) = error.kind else { Issue.record("\(error)"); return }
            #expect(e.line == 2)
            #expect(error.description.hasPrefix("f.json: not valid JSON: "))
        }
    }

    @Test("locate: --config, else LLMSPOOL_CONFIG, else the default (which may be missing)")
    func locate() {
        let env: (String) -> String? = { $0 == "LLMSPOOL_CONFIG" ? "/e.json" : nil }
        #expect(SettingsFile.locate(flag: "/f.json", environment: env) == .init(path: "/f.json", explicit: true))
        #expect(SettingsFile.locate(flag: nil, environment: env) == .init(path: "/e.json", explicit: true))
        #expect(SettingsFile.locate(flag: "", environment: { _ in "" }) == .init(path: SettingsFile.defaultPath, explicit: false))
    }

    @Test("load: a missing default is no file; a missing named file is an error")
    func missing() throws {
        #expect(try SettingsFile.load(.init(path: "/nonexistent/llmspool.json", explicit: false)) == nil)
        #expect(throws: SettingsError(path: "/nonexistent/llmspool.json", kind: .missing)) {
            try SettingsFile.load(.init(path: "/nonexistent/llmspool.json", explicit: true))
        }
    }

    // MARK: bridge

    func bridge(_ text: String) throws(DocumentError) -> BridgeSettings {
        guard case .object(let o) = try! JSONParser.parse(text) else { fatalError() }
        return try BridgeSettings.parse(o)
    }

    @Test("the bridge section: every key read")
    func bridgeKeys() throws {
        let b = try bridge(
            """
            {"brokers": "k1:9092,k2:9092", "group": "g", "jobsIn": "ai-jobs-out-0", "jobsOut": "jo", "resultsIn": "ri",
             "resultsOut": "ai-results-out-0", "resultsGroup": "rg", "resultsOf": "kafka", "deadLetterTopic": "",
             "deltasOut": "ai-deltas", "metricsAddress": "[::1]:9465", "logLevel": "debug", "properties": {"acks": "all", "session.timeout.ms": "6000"}}
            """)
        #expect(b.brokers == "k1:9092,k2:9092" && b.group == "g" && b.jobsIn == "ai-jobs-out-0" && b.jobsOut == "jo")
        #expect(b.resultsIn == "ri" && b.resultsOut == "ai-results-out-0" && b.resultsGroup == "rg" && b.resultsOf == .kafka)
        #expect(b.deadLetterTopic == "" && b.deltasOut == "ai-deltas")
        #expect(b.metricsAddress == "[::1]:9465" && b.logLevel == "debug")
        #expect(b.properties == [.init("acks", "all"), .init("session.timeout.ms", "6000")])
    }

    @Test("the bridge section: instanceId is a static member id, or \"\" for none")
    func bridgeInstanceID() throws {
        #expect(try bridge(#"{"instanceId": "llmspool.web-1.0af3c2d9"}"#).instanceID == "llmspool.web-1.0af3c2d9")
        #expect(try bridge(#"{"instanceId": ""}"#).instanceID == "")
        #expect(try bridge(#"{"instanceId": null}"#).instanceID == nil)
        #expect(!BridgeSettings.isInstanceID(String(repeating: "a", count: 241)))
    }

    @Test(
        "the bridge section: a bad value names its key",
        arguments: [
            (#"{"brokers": "a:1, b:2"}"#, "bridge.brokers"),
            (#"{"brokers": "a:1,,b:2"}"#, "bridge.brokers"),
            (#"{"group": ""}"#, "bridge.group"),
            (#"{"jobsIn": "has space"}"#, "bridge.jobsIn"),
            (#"{"resultsOut": 5}"#, "bridge.resultsOut"),
            (#"{"deltasOut": "a b"}"#, "bridge.deltasOut"),
            (#"{"resultsOf": "some"}"#, "bridge.resultsOf"),
            (#"{"deadLetterTopic": "a/b"}"#, "bridge.deadLetterTopic"),
            (#"{"metricsAddress": "9464"}"#, "bridge.metricsAddress"),
            (#"{"metricsAddress": ""}"#, "bridge.metricsAddress"),
            (#"{"logLevel": "loud"}"#, "bridge.logLevel"),
            (#"{"properties": {"session.timeout.ms": 6000}}"#, "bridge.properties.session.timeout.ms"),
            (#"{"properties": []}"#, "bridge.properties"),
            (#"{"dlq": "x"}"#, "bridge.dlq"),
            (#"{"instanceId": "host a"}"#, "bridge.instanceId"),
            (#"{"instanceId": "h/1"}"#, "bridge.instanceId"),
        ])
    func bridgeBad(_ text: String, _ key: String) {
        #expect(throws: DocumentError.self) { try bridge(text) }
        do { _ = try bridge(text) } catch { #expect(error.field == key, "\(error)") }
    }

    @Test("the bridge section's JSON parses back to the same settings, with the known defaults filled in")
    func bridgeRoundTrip() throws {
        let b = try bridge(#"{"brokers": "k:1", "jobsIn": "jobs", "properties": {"acks": "all"}}"#)
        let json = b.json()
        #expect(json["group"] == .string("llmspool-bridge"))
        #expect(json["deadLetterTopic"] == .string("error.jobs.llmspool-bridge"))
        #expect(json["jobsOut"] == .null)
        #expect(json["stopTimeoutSeconds"] == .double(15))
        guard case .object(let o) = json else { Issue.record("not an object"); return }
        #expect(o.keys == BridgeSettings.keys)
        var again = try BridgeSettings.parse(o)
        #expect(again.deadLetterTopic == "error.jobs.llmspool-bridge", "the default spelled out")
        again.deadLetterTopic = nil
        #expect(again == b)
        #expect(try bridge(#"{"stopTimeoutSeconds": 2.5}"#).stopTimeout == .milliseconds(2_500))
        #expect(try bridge(#"{"maxQueued": null, "maxForwarding": 7}"#).maxForwarding == 7)
        bridgeBad(#"{"maxForwarding": 0}"#, "bridge.maxForwarding")
        bridgeBad(#"{"maxQueued": 1.5}"#, "bridge.maxQueued")
        bridgeBad(#"{"stopTimeoutSeconds": 0}"#, "bridge.stopTimeoutSeconds")
    }

    @Test("the bridge section's JSON hides the values of secret properties")
    func bridgeSecrets() throws {
        let b = try bridge(#"{"properties": {"sasl.username": "u", "sasl.password": "p", "sasl.oauthbearer.client.secret": "s"}}"#)
        #expect(b.properties[1].value == "p", "kept for the bridge")
        #expect(
            b.json()["properties"]
                == .object([
                    "sasl.username": .string("u"), "sasl.password": .string("(hidden)"),
                    "sasl.oauthbearer.client.secret": .string("(hidden)"),
                ]))
    }

    // MARK: cgi

    @Test("the cgi section sets the endpoint's settings; the environment overrides the file")
    func cgi() throws {
        var c = Configuration()
        guard
            case .object(let o) = try JSONParser.parse(
                """
                {"tokensFile": "/t", "defaultTenant": "acme", "maxBodyBytes": 2048, "maxFileBytes": 4096, "maxWaitingPerTenant": 5,
                 "countCacheMilliseconds": 250, "heartbeatSeconds": 3, "maxStreamSeconds": 60, "eventPaddingBytes": 8192}
                """)
        else { return }
        try c.apply(cgiSection: o)
        #expect(c.tokensPath == "/t" && c.defaultTenant == "acme" && c.maxBodyBytes == 2048 && c.maxWaitingPerTenant == 5)
        #expect(c.maxFileBytes == 4096 && c.waitingCountMaxAge == .milliseconds(250))
        #expect(c.heartbeat == .seconds(3) && c.maxStream == .seconds(60) && c.eventPaddingBytes == 8192)
        #expect(c.cgiSectionJSON() == .object(o))
    }

    @Test(
        "the cgi section: a bad value names its key",
        arguments: [
            (#"{"maxBodyBytes": 0}"#, "cgi.maxBodyBytes"),
            (#"{"maxBodyBytes": 1.5}"#, "cgi.maxBodyBytes"),
            (#"{"heartbeatSeconds": "15"}"#, "cgi.heartbeatSeconds"),
            (#"{"defaultTenant": "a b"}"#, "cgi.defaultTenant"),
            (#"{"tokens": "/t"}"#, "cgi.tokens"),
        ])
    func cgiBad(_ text: String, _ key: String) throws {
        guard case .object(let o) = try JSONParser.parse(text) else { return }
        var c = Configuration()
        #expect(throws: DocumentError.self) { try c.apply(cgiSection: o) }
        do { try c.apply(cgiSection: o) } catch { #expect(error.field == key, "\(error)") }
    }
}
