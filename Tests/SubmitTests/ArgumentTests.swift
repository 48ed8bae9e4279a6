import Foundation
import JSON
import Spool
import Submit
import Testing

/// The CGI program run directly, as a server would, with a command line an attacker wrote.
/// Apache's mod_cgid makes a query string without `=` into arguments; before the fix, `--tokens
/// FILE` chose the token file and `--tokens -` read it from standard input (the request body).
@Suite("The CGI's command line belongs to the client")
struct ArgumentTests {
    /// (program, arguments before the attacker's): both ways a server can run the endpoint.
    static let programs: [(String, [String])] = [(Bin.cgi, []), (Bin.llmspool, ["cgi"])]

    func request(
        _ program: (String, [String]), _ args: [String], spool: String, method: String = "GET", path: String = "/jobs",
        token: String, body: [UInt8]? = nil, tokens: String? = nil
    ) throws -> Output {
        var env = [
            "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path,
            "QUERY_STRING": args.joined(separator: "+"), "LLMSPOOL_SPOOL": spool, "HTTP_AUTHORIZATION": "Bearer " + token,
        ]
        if let tokens { env["LLMSPOOL_TOKENS"] = tokens }
        if let body { env["CONTENT_LENGTH"] = String(body.count); env["CONTENT_TYPE"] = "text/plain" }
        return try run(program.0, program.1 + args, env: env, stdin: body ?? [], inheritEnvironment: false)
    }

    @Test("--tokens FILE, --tokens -, --spool DIR and --help on the command line are ignored", arguments: [0, 1])
    func ignored(_ which: Int) throws {
        let program = ArgumentTests.programs[which]
        let dir = try TempDir("args")
        defer { dir.remove() }
        let spool = dir.file("spool"), other = dir.file("other")
        try Spool.create(at: spool)
        try Spool.create(at: other)
        let real = "sha256:\(SHA256.hex(Array("alice-token".utf8))) alice acme\n"
        try real.write(toFile: dir.file("tokens"), atomically: true, encoding: .utf8)
        let forged = "sha256:\(SHA256.hex(Array("attacker".utf8))) alice acme\n"
        try forged.write(toFile: dir.file("forged"), atomically: true, encoding: .utf8)

        // alice's job, submitted the proper way.
        let posted = try request(program, [], spool: spool, method: "POST", token: "alice-token", body: Array("secret".utf8), tokens: dir.file("tokens"))
        #expect(posted.text.hasPrefix("Status: 202"), "\(posted.text) \(posted.stderr)")

        for (args, tokens) in [
            (["--tokens", dir.file("forged")], nil), (["--tokens=" + dir.file("forged")], nil),
            (["--tokens", "-"], nil), (["--tokens", "-"], dir.file("tokens")),
            (["--tokens", dir.file("forged")], dir.file("tokens")),
        ] as [([String], String?)] {
            // GET with the forged token: the token file on the command line (or the body) must not count.
            let list = try request(program, args, spool: spool, token: "attacker", tokens: tokens)
            #expect(list.text.hasPrefix("Status: 401"), "\(args) \(tokens ?? "-"): \(list.text)")
            #expect(!list.text.contains("secret"))
            // POST whose body is a token file: `--tokens -` would have read it.
            let post = try request(program, args, spool: spool, method: "POST", token: "attacker", body: Array(forged.utf8), tokens: tokens)
            #expect(post.text.hasPrefix("Status: 401"), "\(args): \(post.text)")
        }
        // --spool on the command line does not move the endpoint to another spool.
        let moved = try request(
            program, ["--spool", other], spool: spool, method: "POST", token: "alice-token",
            body: Array("where".utf8), tokens: dir.file("tokens"))
        #expect(moved.text.hasPrefix("Status: 202"), "\(moved.text)")
        #expect(try Spool(path: other).names(in: .new).isEmpty)
        #expect(try Spool(path: spool).names(in: .new).count == 2)
        // --help is a request like any other: a CGI answer, not a usage text.
        let help = try request(program, ["--help"], spool: spool, token: "alice-token", tokens: dir.file("tokens"))
        #expect(help.text.hasPrefix("Status: 200"), "\(help.text.prefix(300))")
        #expect(help.status == 0)
    }

    @Test("a token file named - is a file, never standard input")
    func dashIsAFile() throws {
        let dir = try TempDir("dash")
        defer { dir.remove() }
        let spool = dir.file("spool")
        try Spool.create(at: spool)
        let forged = "sha256:\(SHA256.hex(Array("attacker".utf8))) alice acme\n"
        let r = try request(ArgumentTests.programs[0], [], spool: spool, method: "POST", token: "attacker", body: Array(forged.utf8), tokens: "-")
        #expect(!r.text.hasPrefix("Status: 202"), "\(r.text)")
        #expect(try Spool(path: spool).names(in: .new).isEmpty)
    }

    @Test("HEAD: the GET's status and headers, Content-Length included, and not one byte more")
    func head() throws {
        let dir = try TempDir("head")
        defer { dir.remove() }
        let spool = dir.file("spool")
        try Spool.create(at: spool)
        try "sha256:\(SHA256.hex(Array("t".utf8))) alice acme\n".write(toFile: dir.file("tokens"), atomically: true, encoding: .utf8)
        let program = ArgumentTests.programs[0]
        let posted = try request(program, [], spool: spool, method: "POST", token: "t", body: Array("x".utf8), tokens: dir.file("tokens"))
        let id = try #require(try JSONParser.parse(Array(posted.text.split(separator: "\r\n\r\n").last!.utf8))["jobId"]?.stringValue)
        let stream = try request(program, [], spool: spool, method: "HEAD", path: "/jobs/\(id)/events", token: "t", tokens: dir.file("tokens"))
        #expect(stream.text.hasPrefix("Status: 200") && stream.text.contains("text/event-stream"), "\(stream.text)")
        #expect(stream.text.hasSuffix("\r\n\r\n"), "HEAD on the event stream sent a body: \(stream.text)")
        for path in ["/jobs/\(id)", "/jobs", "/jobs/nope"] {
            let get = try request(program, [], spool: spool, path: path, token: "t", tokens: dir.file("tokens"))
            let head = try request(program, [], spool: spool, method: "HEAD", path: path, token: "t", tokens: dir.file("tokens"))
            let headers = head.text.components(separatedBy: "\r\n\r\n")
            #expect(headers.count == 2 && headers[1].isEmpty, "HEAD \(path) sent a body: \(head.text)")
            #expect(get.text.hasPrefix(headers[0] + "\r\n\r\n"), "HEAD \(path) differs from GET: \(head.text) vs \(get.text.prefix(300))")
            #expect(head.status == 0)
        }
    }
}
