import JSON
import Settings
import Spool
import Submit
import TestSupport
import Testing

/// The settings are declared once (``Setting``); these check that the file, the environment and
/// the docs all follow the declaration.
@Suite("Settings declared once")
struct DeclarationTests {
    @Test("docs/configuration.md's cgi table is the declaration's")
    func cgiTableMatches() throws {
        let want = Setting.markdownTable(Configuration.cgiSettings, defaults: Configuration(), variables: true)
        let have = DocTables.table(after: "## `cgi`", in: try DocTables.read("docs/configuration.md"))
        #expect(have == want, "replace the table under ## `cgi` with:\n\(want)")
    }

    @Test("docs/configuration.md's bridge table is the declaration's")
    func bridgeTableMatches() throws {
        let want = Setting.markdownTable(BridgeSettings.settings, defaults: BridgeSettings(), variables: false)
        let have = DocTables.table(after: "## `bridge`", in: try DocTables.read("docs/configuration.md"))
        #expect(have == want, "replace the table under ## `bridge` with:\n\(want)")
    }

    @Test("every bridge setting but properties has a flag, and the section read back gives the same settings")
    func bridgeRoundTrip() throws {
        for s in BridgeSettings.settings where s.key != "properties" { #expect(s.flag != nil, "\(s.key) has no flag") }
        var b = BridgeSettings()
        b.brokers = "k:1"
        b.jobsIn = "in"
        b.deadLetterTopic = ""
        b.instanceID = ""
        b.resultsOf = .kafka
        b.stopTimeout = .milliseconds(1_500)
        b.maxQueued = 9
        b.properties = [.init("acks", "all")]
        guard case .object(let section) = b.json() else { Issue.record("not an object"); return }
        #expect(try BridgeSettings.parse(section, at: "") == b)
    }

    @Test("every cgi setting has a variable, and reading the section back gives the same settings")
    func cgiRoundTrip() throws {
        for s in Configuration.cgiSettings { #expect(s.variable != nil, "\(s.key) has no variable") }
        var c = Configuration()
        c.tokensPath = "/etc/t"
        c.defaultTenant = "acme"
        c.maxBodyBytes = 4096
        c.waitingCountMaxAge = .zero
        c.heartbeat = .seconds(7)
        guard case .object(let section) = c.cgiSectionJSON() else { Issue.record("not an object"); return }
        var back = Configuration()
        try back.apply(cgiSection: section)
        #expect(back == c)
    }

    @Test(
        "a variable with a bad value is not passed over: it is the settings error, naming the variable",
        arguments: [
            ("LLMSPOOL_MAX_BODY", "lots"), ("LLMSPOOL_MAX_BODY", "0"), ("LLMSPOOL_HEARTBEAT", "99999"),
            ("LLMSPOOL_TENANT", "../x"), ("LLMSPOOL_COUNT_CACHE", "-1"), ("LLMSPOOL_EVENTS_PAD", "1e3"),
        ])
    func badVariable(_ pair: (String, String)) {
        let c = Configuration.from(env: { $0 == pair.0 ? pair.1 : nil })
        #expect(c.settingsError?.hasPrefix(pair.0 + ":") == true, "\(c.settingsError ?? "no error")")
    }

    @Test("variables set every cgi setting, over the defaults")
    func variablesSet() {
        let env = [
            "LLMSPOOL_MAX_BODY": "2048", "LLMSPOOL_COUNT_CACHE": "0", "LLMSPOOL_STREAM_MAX": "60", "LLMSPOOL_TENANT": "t1",
            "LLMSPOOL_TOKENS": "/x", "LLMSPOOL_MAX_FILE": "10", "LLMSPOOL_MAX_WAITING": "3", "LLMSPOOL_HEARTBEAT": "2",
            "LLMSPOOL_EVENTS_PAD": "8192",
        ]
        let c = Configuration.from(env: { env[$0] })
        #expect(c.settingsError == nil)
        #expect(c.maxBodyBytes == 2048 && c.waitingCountMaxAge == .zero && c.maxStream == .seconds(60))
        #expect(c.defaultTenant == "t1" && c.tokensPath == "/x" && c.maxFileBytes == 10 && c.maxWaitingPerTenant == 3)
        #expect(c.heartbeat == .seconds(2) && c.eventPaddingBytes == 8192)
    }

    @Test("an unknown key in a section names the known ones and the nearest")
    func unknownKey() {
        var c = Configuration()
        #expect(throws: DocumentError.self) { try c.apply(cgiSection: ["maxBodyByte": .integer(1)]) }
        do { try c.apply(cgiSection: ["maxBodyByte": .integer(1)]) } catch {
            #expect(error.description.contains("cgi.maxBodyByte"))
            #expect(error.description.contains("maxBodyBytes"))
        }
    }
}
