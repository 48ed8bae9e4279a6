import JSON

// json-bench: time JSONParser.parse on whole documents, beside a byte-scan floor over the same bytes.
//
//     json-bench [--reps N] FILE...
//
// For each file, one line: its size, the least and median milliseconds of N parses (each until
// its value is freed; the least also until the value is made) with the
// member and value limits lifted (the parser's own work; nesting stays at the default 64), what
// the default limits make of it (the least of 5 parses), and the least milliseconds of a loop
// that reads every byte once.
// Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a machine shared with builds,
// wall time measures the neighbours more than the parser.
// Built with -DJSON_OLD_API it calls the parser as it was before limits (commit 2e6ae7d).
#if canImport(Glibc)
import Glibc
#endif

func now() -> Int {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return t.tv_sec * 1_000_000_000 + t.tv_nsec
}

func readFile(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { fatalError("cannot open \(path)") }
    defer { fclose(f) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n == 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return out
}

func ms(_ ns: Int) -> String {
    let hundredths = (ns + 5_000) / 10_000
    let frac = hundredths % 100
    return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
}

/// Every byte read once, in a loop the compiler cannot drop: the least any parser must do.
@inline(never) func scan(_ bytes: [UInt8]) -> Int {
    var structural = 0
    bytes.withUnsafeBufferPointer { b in
        for c in b where c == UInt8(ascii: "\"") || c == UInt8(ascii: ",") || c == UInt8(ascii: ":") { structural &+= 1 }
    }
    return structural
}

#if JSON_OLD_API
func parseUnlimited(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue { try JSONParser.parse(bytes) }
func parseDefault(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue { try JSONParser.parse(bytes) }
#else
let unlimited = JSONParser.Limits(maxDepth: 64, maxMembers: .max, maxValues: .max)
func parseUnlimited(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue { try JSONParser.parse(bytes, limits: unlimited) }
func parseDefault(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue { try JSONParser.parse(bytes) }
#endif

var args = Array(CommandLine.arguments.dropFirst())
var reps = 21
if args.first == "--reps", args.count >= 2, let n = Int(args[1]) {
    reps = n
    args.removeFirst(2)
}
if args.isEmpty {
    print("usage: json-bench [--reps N] FILE...")
    exit(2)
}

for path in args {
    let bytes = readFile(path)
    // Each parse is timed twice: until the value is made, and until it is freed again (as Python's
    // json.loads(data) is, as a statement).
    var times: [Int] = [], parseOnly = Int.max
    for _ in 0..<reps {
        let t0 = now()
        var value: JSONValue? = try parseUnlimited(bytes)
        let t1 = now()
        precondition(value != .null)
        value = nil
        times.append(now() - t0)
        parseOnly = min(parseOnly, t1 - t0)
    }
    times.sort()
    var defaults = "accepted", defaultTime = Int.max
    for _ in 0..<5 {
        let t0 = now()
        do throws(JSONParseError) { _ = try parseDefault(bytes) } catch { defaults = "refused (\(error.message))" }
        defaultTime = min(defaultTime, now() - t0)
    }
    var floor = Int.max, sink = 0
    for _ in 0..<reps {
        let t = now()
        sink &+= scan(bytes)
        floor = min(floor, now() - t)
    }
    let name = path.split(separator: "/").last.map(String.init) ?? path
    print(
        "\(name) bytes=\(bytes.count) parse_min_ms=\(ms(times[0])) parse_median_ms=\(ms(times[times.count / 2])) "
            + "unfreed_min_ms=\(ms(parseOnly)) "
            + "scan_min_ms=\(ms(floor)) default_limits_ms=\(ms(defaultTime)) default_limits=\(defaults) sink=\(sink % 10)")
}
