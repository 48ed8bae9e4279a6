import Spool

// spool-bench: the spool's hot paths through the Spool library, in jobs/s.
//
//   spool-bench MODE DIR N [BATCH]
//
// MODE is one of
//   enqueue-durable   enqueue(_:durability: .durable), one job at a time
//   enqueue-batch     enqueue(batch:durability: .durable), BATCH jobs per call (default 64): group commit
//                     (write all to tmp/, one syncfs, rename all, one fsync of new/)
//   enqueue-volatile  enqueue(_:durability: .volatile), one job at a time
//   claim             waiting() once, then claim(name) for each of N jobs made beforehand (not timed)
//   claim-finish      the same, then finish(claim, answer:) for each
//   finish-batch      the same listing, then, BATCH jobs at a time (default 64): claim(name) for each,
//                     then one finish(batch:) for them all (write all results, one syncfs, rename all,
//                     one fsync of done/, retire all)
// DIR must not exist: the spool is created there, so every run starts on fresh directories.
// Prints one line ending in `jobs/s=RATE`, the figure bench/run.sh reads. Nothing is cleaned up.
#if canImport(Glibc)
import Glibc
#endif

func die(_ message: String) -> Never {
    let line = Array("spool-bench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(64)
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let args = CommandLine.arguments
guard args.count >= 4, let n = Int(args[3]), n > 0 else {
    die("usage: spool-bench enqueue-durable|enqueue-batch|enqueue-volatile|claim|claim-finish|finish-batch DIR N [BATCH]")
}
let mode = args[1], dir = args[2]
let batchSize = args.count > 4 ? (Int(args[4]) ?? 64) : 64
if batchSize < 1 { die("BATCH must be at least 1") }
if access(dir, F_OK) == 0 { die("\(dir) exists; give a fresh directory") }

// A job of about 300 bytes once the spool has added its id and submission time (as in bench/c/ref.c).
let prompt =
    "Summarise the following text in three sentences, for a reader in a hurry: "
    + String(repeating: "lorem ipsum dolor sit amet ", count: 6)
let job = Job(prompt: prompt)
let answer = Answer(response: "A short answer of about the size a small completion has: " + String(repeating: "words ", count: 8))

do {
    let spool = try Spool.create(at: dir)
    var done = 0
    let start: Double
    switch mode {
    case "enqueue-durable", "enqueue-volatile":
        let durability: Durability = mode == "enqueue-durable" ? .durable : .volatile
        start = now()
        for _ in 0..<n { try spool.enqueue(job, durability: durability); done += 1 }
    case "enqueue-batch":
        let batch = [Job](repeating: job, count: batchSize)
        start = now()
        while done < n {
            let k = min(batchSize, n - done)
            done += try spool.enqueue(batch: k == batchSize ? batch : Array(batch[..<k]), durability: .durable).count
        }
    case "claim", "claim-finish", "finish-batch":
        // Make the jobs (untimed), then write everything out so the timed loop does not share the disk with writeback.
        let batch = [Job](repeating: job, count: 1000)
        var made = 0
        while made < n {
            made += try spool.enqueue(batch: Array(batch[..<min(1000, n - made)]), durability: .volatile).count
        }
        sync()
        let finish = mode == "claim-finish"
        start = now()
        let names = try spool.waiting()
        if mode == "finish-batch" {
            var claims: [(Claim, Answer)] = []
            claims.reserveCapacity(batchSize)
            for chunk in stride(from: 0, to: names.count, by: batchSize) {
                claims.removeAll(keepingCapacity: true)
                for name in names[chunk..<min(chunk + batchSize, names.count)] {
                    guard case .claimed(let claim) = try spool.claim(name) else { die("could not claim \(name)") }
                    claims.append((claim, answer))
                }
                let refused = try spool.finish(batch: claims)
                if !refused.isEmpty { die("finish(batch:) refused \(refused.count) claims") }
                done += claims.count
            }
        } else {
            for name in names {
                guard case .claimed(let claim) = try spool.claim(name) else { die("could not claim \(name)") }
                if finish { try spool.finish(claim, answer: answer) }
                done += 1  // without finish, the claim's lock is dropped here and the job stays in cur/
            }
        }
    default:
        die("unknown mode \(mode)")
    }
    let secs = now() - start
    if done != n { die("did \(done) of \(n)") }
    print(
        "llmspool \(mode) n=\(n)\(mode == "enqueue-batch" || mode == "finish-batch" ? " batch=\(batchSize)" : "") secs=\(format3(secs)) jobs/s=\(Int((Double(n) / secs).rounded()))"
    )
} catch {
    die("\(error)")
}

func format3(_ x: Double) -> String {
    let ms = Int((x * 1000).rounded())
    let frac = String(ms % 1000)
    return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
}
