import ArgumentParser
import JSON
import Settings
import Spool

struct Requeue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put dead-lettered jobs from failed/ back into new/ (attempts reset, history kept).",
        discussion: """
            Prints each requeued id. ID may also be the name a file was dropped under when it could \
            not become a job (its dead letter has a new key): such a dead letter cannot be requeued \
            as it is, and the message names its key; fix its failed/KEY.original (or give it a free \
            jobId, after an id clash) and submit it.
            """)

    @OptionGroup var options: SpoolOptions

    @Flag(help: "Requeue every job in failed/ that can be.")
    var failed = false

    @Argument(help: "Job ids to requeue.")
    var ids: [String] = []

    func validate() throws {
        if failed == !ids.isEmpty { throw ValidationError("give job ids or --failed") }
        for id in ids where id.isEmpty || id.contains("/") { throw ValidationError("job id \"\(id)\" is not a job id or a file name") }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            // Each target: a key in the spool, and the name it was dropped under when that is not its key.
            var targets: [(id: String, droppedAs: String?)] = []
            if failed {
                targets = try spool.list([.failed]).map { ($0.id, $0.droppedAs) }
            } else {
                for id in ids {
                    if JobID.isValid(id), try spool.find(id) != nil { targets.append((id, nil)); continue }
                    let dead = try spool.deadLetters(droppedAs: id)
                    targets += dead.isEmpty ? [(id, nil)] : dead.map { ($0.id, id) }
                }
            }
            var last: (any Error)?
            for (id, droppedAs) in targets {
                do {
                    try spool.requeue(id)
                    Output.line(id)
                } catch SpoolError.cannotRequeue(let id, let reason) where failed {
                    Output.warning("skipped \(id)\(droppedAs.map { " (dropped as \($0))" } ?? ""): \(reason)")
                } catch SpoolError.cannotRequeue(let id, let reason) where droppedAs != nil {
                    if let e = last { Output.error(Failed(e).message) }
                    last = Failed("cannot requeue \(id) (dropped as \(droppedAs!)): \(reason)", code: ExitStatus.dataError)
                } catch {
                    if let e = last { Output.error(Failed(e).message) }
                    last = error
                }
            }
            if let last { throw last }
        }
    }
}

struct Recover: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One pass of crash recovery: give back claims of dead workers, finish interrupted moves.",
        discussion: """
            A claim (a file in cur/) is dead when no process holds its lock: its worker exited or was \
            killed. Dead claims go back to new/ with attempts raised, or are removed if their result \
            is already in done/ or failed/. Live claims are never touched. Safe to run at any time, \
            from any number of processes.
            """)

    @OptionGroup var options: SpoolOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try reporting {
            let r = try options.open().recover()
            if json {
                Output.line(
                    JSONValue.object([
                        "givenBack": .array(r.givenBack.map { .string($0) }),
                        "alreadySettled": .array(r.alreadySettled.map { .string($0) }),
                        "deadLettered": .array(r.deadLettered.map { .string($0) }),
                        "live": .integer(r.live), "repairedRejections": .integer(r.repairedRejections),
                        "removedTemporaries": .integer(r.removedTemporaries),
                        "removedMarkers": .integer(r.removedMarkers), "removedLeases": .integer(r.removedLeases),
                    ]).text)
            } else {
                Output.line(
                    "gave back \(r.givenBack.count), already settled \(r.alreadySettled.count), dead-lettered \(r.deadLettered.count), live \(r.live), repaired \(r.repairedRejections), removed \(r.removedTemporaries) from tmp/, \(r.removedMarkers) markers, \(r.removedLeases) dead leases"
                )
            }
        }
    }
}

struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete finished jobs from done/ and/or failed/ older than a duration.",
        discussion:
            "DURATION is like 90s, 15m, 12h, 7d or 1h30m (0 removes everything). Prints what was removed, e.g. `removed 3 results from done/ last changed more than 7d ago`."
    )

    @OptionGroup var options: SpoolOptions

    @Flag(help: "Purge done/.")
    var done = false

    @Flag(help: "Purge failed/ (dead letters and their .original files).")
    var failed = false

    @Option(name: .customLong("older-than"), help: ArgumentHelp("Only jobs last changed longer ago than this.", valueName: "DURATION"))
    var olderThan: String

    func validate() throws {
        if !done && !failed { throw ValidationError("give --done, --failed or both") }
        if HumanDuration.parseMilliseconds(olderThan) == nil {
            throw ValidationError("--older-than \"\(olderThan)\" is not a duration like 90s, 15m, 12h or 7d")
        }
    }

    func run() throws {
        try reporting {
            let spool = try options.open()
            let age = HumanDuration.parseMilliseconds(olderThan)!
            var counted: [String] = []
            if done { counted.append("\(try spool.purge(.done, olderThanMilliseconds: age)) results from done/") }
            if failed { counted.append("\(try spool.purge(.failed, olderThanMilliseconds: age)) dead letters from failed/") }
            Output.line("removed \(counted.joined(separator: " and ")) last changed more than \(olderThan) ago")
        }
    }
}

/// Hidden: claims jobs like a worker would, for tests and shell experiments.
struct DebugClaim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug-claim",
        abstract: "Claim jobs as a worker would (for tests and debugging; not a worker).",
        shouldDisplay: false)

    @OptionGroup var options: SpoolOptions

    @Option(help: "Most jobs to claim.")
    var max = Int.max

    @Option(help: "Answer each claimed job with its own prompt (marked as an echo), or hold the claims: echo | hold.")
    var then = "echo"

    @Option(help: "With --then hold: seconds to hold the claims before exiting without finishing them.")
    var holdSeconds = 3600

    func run() throws {
        try reporting {
            let spool = try options.open()
            var held: [Claim] = []
            var claimed = 0
            for name in try spool.waiting() where claimed < max {
                guard case .claimed(let claim) = try spool.claim(name) else { continue }
                claimed += 1
                if then == "hold" {
                    held.append(claim)
                } else {
                    try spool.finish(claim, answer: Answer(response: "[echo] " + (claim.job.prompt ?? ""), model: "debug-echo"))
                }
                Output.line(claim.id)
                fflushStdout()
            }
            if then == "hold" {
                Output.line("holding")
                fflushStdout()
                sleepSeconds(holdSeconds)
            }
            _ = held
        }
    }
}
