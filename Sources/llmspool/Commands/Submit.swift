import ArgumentParser
import JSON
import Settings
import Spool

struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enqueue jobs; print each new job id on its own line.",
        discussion: """
            Three ways to give jobs:
              llmspool submit --prompt TEXT [--user U] [--tenant T] [--model M]
              llmspool submit -            (one job document, JSON, on standard input)
              llmspool submit FILE...      (one job document per file)
            Files are all validated before any is enqueued; an invalid one stops the whole \
            submission with exit 65 and nothing is enqueued. Several files are enqueued with one \
            group commit (write all, fsync all, rename all, fsync new/ once). A job is accepted \
            (its id printed) only once it is durable in new/, unless --volatile.
            """)

    @OptionGroup var options: SpoolOptions

    @Option(help: "The prompt text (the job's `prompt`).")
    var prompt: String?

    @Option(name: .customLong("user"), help: "The submitting user (`userId`).")
    var user: String?

    @Option(name: .customLong("tenant"), help: "The tenant (`tenantId`), for rate limits and fairness.")
    var tenant: String?

    @Option(help: "The model to ask (`model`); default: the worker's.")
    var model: String?

    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate (`maxTokens`).")
    var maxTokens: Int?

    @Option(help: "Sampling temperature, 0 to 2 (`temperature`).")
    var temperature: Double?

    @Option(name: .customLong("id"), help: "Use this job id instead of a new UUIDv7 ([A-Za-z0-9][A-Za-z0-9._-]{0,127}).")
    var jobId: String?

    @Flag(help: "Skip fsync: faster bulk loads that a power loss may undo (never corrupts a job).")
    var volatile = false

    @Flag(help: "Wait for the job's result and print its response after the id (exit 69 if the job fails).")
    var wait = false

    @Flag(help: "Ask for the answer to be streamed (`\"stream\": true`); with --wait, print it as it is written.")
    var stream = false

    @Flag(help: "With --wait --stream: print one JSON event per line instead of the text.")
    var json = false

    @Option(help: ArgumentHelp("With --wait: give up after this long (exit 75); default: wait forever.", valueName: "DURATION"))
    var timeout: String?

    @Argument(help: ArgumentHelp("Job documents to enqueue; - reads one from standard input.", valueName: "FILE"))
    var files: [String] = []

    /// Every option of `submit` that takes a value (a test checks this against `--help`).
    static let valueOptions: Set<String> = ["--spool", "--prompt", "--user", "--tenant", "--model", "--max-tokens", "--temperature", "--id", "--timeout"]

    /// `arguments` (`submit` first) with the file operands past the first taken out, and those
    /// operands in order. Operands are what no option takes as its value; after `--`, everything.
    static func setAsideOperands(_ arguments: [String]) -> (kept: [String], operands: [String]) {
        var kept: [String] = [], operands: [String] = []
        kept.reserveCapacity(arguments.count)
        var seenOne = false
        var i = 0
        func operand(_ a: String) {
            if seenOne { operands.append(a) } else { kept.append(a); seenOne = true }
        }
        while i < arguments.count {
            let a = arguments[i]
            if i == 0 || (a.hasPrefix("-") && a != "-") {
                kept.append(a)
                if a == "--" {
                    for rest in arguments[(i + 1)...] { operand(rest) }
                    break
                }
                if valueOptions.contains(a), i + 1 < arguments.count {
                    kept.append(arguments[i + 1])
                    i += 1
                }
            } else {
                operand(a)
            }
            i += 1
        }
        return (kept, operands)
    }

    func validate() throws {
        if prompt == nil && files.isEmpty {
            throw ValidationError("give --prompt TEXT, - (a job document on stdin) or FILE...")
        }
        if prompt != nil && !files.isEmpty { throw ValidationError("give either --prompt or files, not both") }
        if files.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be read only once") }
        if let jobId, let p = JobID.problem(jobId) { throw ValidationError("--id \(jobId) \(p)") }
        if jobId != nil && files.count > 1 { throw ValidationError("--id applies to a single job") }
        if wait && files.count > 1 { throw ValidationError("--wait applies to a single job") }
        if json && !(wait && stream) { throw ValidationError("--json applies to --wait --stream") }
        if let timeout, HumanDuration.parseMilliseconds(timeout) == nil {
            throw ValidationError("--timeout \"\(timeout)\" is not a duration like 90s, 15m or 2h")
        }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            var jobs: [Job] = []
            if let prompt {
                jobs.append(Job(prompt: prompt))
            } else {
                var problems: [String] = []
                for file in files {
                    let name = file == "-" ? "standard input" : file
                    do {
                        jobs.append(try Job.decode(try Spool.readInput(file, limit: spool.limits.maxFileBytes), limits: spool.limits))
                    } catch let e as IntakeError {
                        problems.append("\(name): \(e.fieldAndMessage)")
                    }
                }
                if !problems.isEmpty {
                    for p in problems.dropLast() { Output.error(p) }
                    throw Failed(
                        problems.last! + (problems.count > 1 ? " (\(problems.count) invalid files; nothing enqueued)" : ""),
                        code: ExitStatus.dataError)
                }
            }
            for k in jobs.indices {
                if let user { jobs[k].userId = user }
                if let tenant { jobs[k].tenantId = tenant }
                if let model { jobs[k].model = model }
                if let maxTokens { jobs[k].maxTokens = maxTokens }
                if let temperature { jobs[k].temperature = temperature }
                if let jobId { jobs[k].jobId = jobId }
                if stream { jobs[k].stream = true }
            }
            let durability: Durability = volatile ? .volatile : .durable
            if jobs.count == 1 {
                let id = try spool.enqueue(jobs[0], durability: durability)
                Output.line(id)
                if wait && stream {
                    try Follow.run(id, spool: spool, json: json, timeout: timeout)
                } else if wait {
                    try awaitResult(id, spool: spool)
                }
            } else {
                do throws(BatchEnqueueError) {
                    for id in try spool.enqueue(batch: jobs, durability: durability) { Output.line(id) }
                } catch {
                    for id in error.accepted { Output.line(id) }
                    throw error
                }
            }
        }
    }

    /// Prints the response of job `id` once it is done; a failed job or a timeout is an error.
    func awaitResult(_ id: String, spool: Spool) throws {
        fflushStdout()
        let ms = timeout.flatMap(HumanDuration.parseMilliseconds) ?? -1
        guard let state = try spool.waitForOutcome(of: id, timeoutMilliseconds: ms) else {
            throw Failed("job \(id) is not finished after \(timeout ?? "")", code: ExitStatus.temporary)
        }
        guard let loc = try spool.find(id), let doc = try? JSONParser.parse(loc.bytes) else { throw SpoolError.notFound(id: id) }
        if state == .done {
            Output.line(doc["response"]?.stringValue ?? "")
        } else {
            let e = doc["error"]
            throw Failed(
                "job \(id) failed: \(e?["kind"]?.stringValue ?? "?"): \(e?["message"]?.stringValue ?? "")",
                code: ExitStatus.unavailable)
        }
    }
}
