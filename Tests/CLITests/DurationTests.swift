import Foundation
import Testing

@Suite("Durations on the command line")
struct DurationTests {
    @Test(
        "a duration too large for 64 bits is a usage error (64), not a crash",
        arguments: [
            ["submit", "--prompt", "x", "--wait", "--timeout", "99999999999999999999s"],
            ["submit", "--prompt", "x", "--wait", "--timeout", "9999999999999999"],
            ["worker", "--llm-url", "builtin:echo", "--grace-period", "9223372036854775807m"],
            ["purge", "--older-than", "99999999999999999d"],
        ])
    func overflow(_ args: [String]) throws {
        let s = try TestSpool()
        defer { s.remove() }
        let r = try CLI.run(args, spool: s.path)
        #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
        #expect(r.stderr.hasPrefix("llmspool: error:"), "\(r.stderr)")
        #expect(s.names("new").isEmpty)
    }
}
