import ArgumentParser
import JSON
import Spool
import Submit

/// `llmspool batch …`: the Batch API (docs/batch.md) from the command line, on the spool directly.
struct BatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "OpenAI Batch API files on the spool: submit a JSONL file, follow it, read its results.",
        discussion: """
            The same batches the CGI endpoint serves under /v1/batches (docs/batch.md). The command \
            acts for whoever may read the spool: it sees every user's batches.
            """,
        subcommands: [SubmitBatch.self, StatusBatch.self, ResultsBatch.self, CancelBatch.self, ListBatches.self])

    /// The store on the spool; `owner` nil sees every batch.
    static func store(_ options: SpoolOptions, owner: Identity? = nil) throws -> BatchStore {
        BatchStore(spool: try options.open(), owner: owner, maxFileBytes: 512 << 20)
    }

    /// Runs a store call, turning its problem into a message and a sysexits code.
    static func call<T>(_ body: () throws(Problem) -> T) throws -> T {
        do { return try body() } catch {
            let code: Int32 =
                switch error.status {
                case 404: ExitStatus.noInput
                case 400, 409, 413, 415, 422: ExitStatus.dataError
                case 503: ExitStatus.temporary
                default: ExitStatus.software
                }
            throw Failed([error.title, error.detail].compactMap { $0 }.joined(separator: ": "), code: code)
        }
    }

    /// One line per batch: id, status, counts, when it was made.
    static func summary(_ b: JSONValue) -> String {
        let c = b["request_counts"]
        let counts = "\(c?["completed"]?.intValue ?? 0)/\(c?["total"]?.intValue ?? 0) done, \(c?["failed"]?.intValue ?? 0) failed"
        let created = b["created_at"]?.intValue.map { Timestamp.format(milliseconds: Int64($0) * 1000) } ?? "?"
        return "\(b["id"]?.stringValue ?? "?")  \(b["status"]?.stringValue ?? "?")  \(counts)  created \(created)"
    }

    struct SubmitBatch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "submit", abstract: "Upload a JSONL file and create its batch; print the batch id.",
            discussion: "Every line is checked first; a bad line fails the batch (exit 65, the errors name their lines) and nothing is enqueued.")
        @OptionGroup var options: SpoolOptions
        @Argument(help: ArgumentHelp("The requests, one per line (OpenAI's batch input format).", valueName: "FILE.jsonl"))
        var file: String
        @Option(help: "The completion window (only 24h).")
        var window = "24h"
        @Option(name: .customLong("user"), help: "The owning user (`userId`) of the batch's jobs; default cli.")
        var user: String?
        @Option(name: .customLong("tenant"), help: "The tenant (`tenantId`) of the batch's jobs.")
        var tenant: String?

        func validate() throws {
            if let user { do { try Job.checkName(user, field: "--user") } catch { throw ValidationError(error.description) } }
            if let tenant { do { try Job.checkName(tenant, field: "--tenant") } catch { throw ValidationError(error.description) } }
        }

        func run() throws {
            try reporting {
                let bytes = try Failed.creating { try Spool.readInput(file, limit: 512 << 20) }
                let store = try BatchCommand.store(options, owner: Identity(userId: user ?? "cli", tenantId: tenant))
                let name = String(file.split(separator: "/").last ?? "batch.jsonl")
                let f = try BatchCommand.call { () throws(Problem) in try store.createFile(bytes, filename: name, purpose: "batch") }
                let b = try BatchCommand.call { () throws(Problem) in
                    try store.createBatch(["input_file_id": f["id"] ?? .null, "endpoint": .string(BatchInput.endpoint), "completion_window": .string(window)])
                }
                if b["status"]?.stringValue == "failed" {
                    for e in b["errors"]?["data"]?.arrayValue ?? [] {
                        Output.error(
                            "\(file):\(e["line"]?.intValue.map(String.init) ?? "-"): \(e["code"]?.stringValue ?? ""): \(e["message"]?.stringValue ?? "")")
                    }
                    throw ExitCode(ExitStatus.dataError)
                }
                Output.line(b["id"]?.stringValue ?? "")
            }
        }
    }

    struct StatusBatch: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a batch, brought up to date.")
        @OptionGroup var options: SpoolOptions
        @Argument(help: ArgumentHelp("The batch id (batch_…).", valueName: "ID")) var id: String
        @Flag(help: "The batch object as JSON (OpenAI's shape).") var json = false
        func run() throws {
            try reporting {
                let store = try BatchCommand.store(options)
                let b = try BatchCommand.call { () throws(Problem) in try store.batch(id) }
                Output.line(json ? b.prettyText() : BatchCommand.summary(b))
            }
        }
    }

    struct ResultsBatch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "results", abstract: "Print a finished batch's output file (JSONL), or with --errors its error file.")
        @OptionGroup var options: SpoolOptions
        @Argument(help: ArgumentHelp("The batch id (batch_…).", valueName: "ID")) var id: String
        @Flag(help: "The error file instead.") var errors = false
        func run() throws {
            try reporting {
                let store = try BatchCommand.store(options)
                let b = try BatchCommand.call { () throws(Problem) in try store.batch(id) }
                guard let file = b[errors ? "error_file_id" : "output_file_id"]?.stringValue else {
                    let status = b["status"]?.stringValue ?? "?"
                    if ["completed", "cancelled", "expired", "failed"].contains(status) { return }  // nothing of that kind
                    throw Failed("batch \(id) is \(status): its results are not ready", code: ExitStatus.temporary)
                }
                let bytes = try BatchCommand.call { () throws(Problem) in try store.fileContent(file) }
                Output.standardOutput(bytes)
            }
        }
    }

    struct CancelBatch: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a batch: waiting requests are dropped, running ones finish.")
        @OptionGroup var options: SpoolOptions
        @Argument(help: ArgumentHelp("The batch id (batch_…).", valueName: "ID")) var id: String
        func run() throws {
            try reporting {
                let store = try BatchCommand.store(options)
                Output.line(BatchCommand.summary(try BatchCommand.call { () throws(Problem) in try store.cancel(id) }))
            }
        }
    }

    struct ListBatches: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every batch in the spool, newest first.")
        @OptionGroup var options: SpoolOptions
        @Flag(help: "One batch object per line, as JSON.") var json = false
        func run() throws {
            try reporting {
                let store = try BatchCommand.store(options)
                var after: String?
                while true {
                    let page = try BatchCommand.call { () throws(Problem) in try store.list(after: after, limit: 100) }
                    for b in page["data"]?.arrayValue ?? [] { Output.line(json ? String(decoding: b.serialized(), as: UTF8.self) : BatchCommand.summary(b)) }
                    guard page["has_more"]?.boolValue == true, let last = page["last_id"]?.stringValue else { break }
                    after = last
                }
            }
        }
    }
}
