import JSON
import Settings
import Spool
import TestSupport
import Testing
import Worker

/// The worker's settings are declared once (``WorkerConfiguration/settings``): the file, the
/// variables, the flags and the docs' table follow the declaration.
@Suite("Worker settings declared once")
struct WorkerSettingsTests {
    @Test("docs/configuration.md's worker table is the declaration's")
    func tableMatches() throws {
        let want = Setting.markdownTable(WorkerConfiguration.settings, defaults: WorkerConfiguration(), variables: false)
        let have = DocTables.table(after: "## `worker`", in: try DocTables.read("docs/configuration.md"))
        #expect(have == want, "replace the table under ## `worker` with:\n\(want)")
    }

    @Test("docs/configuration.md's circuitBreaker and providerBatch tables are the declarations'")
    func nestedTablesMatch() throws {
        let doc = try DocTables.read("docs/configuration.md")
        let breaker = Setting.markdownTable(WorkerConfiguration.breakerSettings, defaults: CircuitBreaker.Settings(), variables: false)
        #expect(DocTables.table(after: "`circuitBreaker` holds", in: doc) == breaker, "replace the circuitBreaker table with:\n\(breaker)")
        let batch = Setting.markdownTable(ProviderBatchSettings.settings, defaults: ProviderBatchSettings(), variables: false)
        #expect(DocTables.table(after: "`providerBatch` holds", in: doc) == batch, "replace the providerBatch table with:\n\(batch)")
    }

    @Test("the section written by json() reads back to the same section, every key present")
    func roundTrip() throws {
        var c = WorkerConfiguration()
        try c.apply(
            json: try JSONParser.parse(
                """
                {"maxInFlight": 7, "gracePeriodSeconds": 1.5, "logPrompts": true, "metricsAddress": "127.0.0.1:9", "model": "m",
                 "tenants": {"acme": {"tokensPerMinute": 100}}, "circuitBreaker": {"window": 9}, "streamIdleTimeoutSeconds": 5}
                """), source: "t")
        #expect(c.maxInFlight == 7 && c.gracePeriod == .milliseconds(1500) && c.logPrompts && c.streamIdleTimeout == .seconds(5))
        let section = c.json()
        #expect(section.objectValue?.keys == WorkerConfiguration.keys)
        var back = WorkerConfiguration()
        try back.apply(json: section, source: "round trip")
        #expect(back.json() == section)
    }

    @Test(
        "a value from a flag or a variable keeps the file's rule, and the error names where it came from",
        arguments: [
            ("maxInFlight", "0", "--concurrency"), ("gracePeriodSeconds", "5x", "--grace-period"),
            ("gracePeriodSeconds", "99999999999999999999s", "--grace-period"), ("logLevel", "loud", "LLMSPOOL_LOG_LEVEL"),
            ("llmURL", "ftp://x", "LLMSPOOL_LLM_URL"), ("metricsAddress", "nowhere", "--metrics-address"),
            ("logPrompts", "maybe", "--log-prompts"), ("streamIdleTimeoutSeconds", "50ms", "--stream-idle-timeout"),
        ])
    func textRules(_ c: (key: String, text: String, source: String)) {
        var conf = WorkerConfiguration()
        do {
            try WorkerConfiguration.setting(c.key).apply(text: c.text, from: c.source, to: &conf)
            Issue.record("\(c.source) \(c.text) was accepted")
        } catch {
            #expect(error.description.hasPrefix(c.source + ":"), "\(error.description)")
        }
    }

    @Test("durations from a flag: units, a bare number of seconds, and the floor a setting keeps")
    func durations() throws {
        var conf = WorkerConfiguration()
        try WorkerConfiguration.setting("gracePeriodSeconds").apply(text: "1m30s", from: "--grace-period", to: &conf)
        #expect(conf.gracePeriod == .seconds(90))
        try WorkerConfiguration.setting("requestTimeoutSeconds").apply(text: "0", from: "--request-timeout", to: &conf)
        #expect(conf.requestTimeout == .milliseconds(1))
        try WorkerConfiguration.setting("rescanIntervalSeconds").apply(text: "10ms", from: "x", to: &conf)
        #expect(conf.rescanInterval == .milliseconds(100))
    }

    @Test("an unknown key names the nearest known one and the section")
    func unknownKey() {
        var conf = WorkerConfiguration()
        do {
            try conf.apply(json: .object(["maxInflight": .integer(3)]), source: "t")
            Issue.record("accepted")
        } catch {
            #expect(error.field == "maxInflight")
            #expect(error.message.contains("maxInFlight") && error.message.contains("worker settings"))
        }
    }
}
