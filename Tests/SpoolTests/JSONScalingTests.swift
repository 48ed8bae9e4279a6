import Testing

@testable import Spool

// The parser and the object type must cost time linear in the input: a body of 100,000 keys once
// took minutes because every key was compared with every earlier one. These tests time the same
// kind of document at 10k and 100k members and fail when the larger costs more than 20× the smaller.
#if canImport(Glibc)
import Glibc
import JSON
#endif

/// CPU time of the calling thread, in nanoseconds: what the work cost this thread, whatever else the
/// machine runs (two cores shared with other builds make wall time too noisy for a ratio).
private func threadCPUNanoseconds() -> Int {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return t.tv_sec * 1_000_000_000 + t.tv_nsec
}

private func cpuNanoseconds(_ body: () throws -> Void) rethrows -> Int {
    let start = threadCPUNanoseconds()
    try body()
    return max(1, threadCPUNanoseconds() - start)
}

/// `{"k0":0,"k1":1,…}` with `n` distinct keys.
func manyKeysDocument(_ n: Int) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "{")]
    out.reserveCapacity(n * 14)
    for k in 0..<n {
        if k > 0 { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: "\"k\(k)\":\(k % 10)".utf8)
    }
    out.append(UInt8(ascii: "}"))
    return out
}

/// Measures `work(small)` and `work(large)` and returns the ratio of their costs, each the least of
/// several runs (7 small; large ones until one is within 20×, at most 9). A large run over 100× the
/// small one is not noise: it is not repeated (a quadratic path would take minutes per run).
private func costRatio(small: Int, large: Int, _ work: (Int) throws -> Void) rethrows -> (ratio: Double, small: Int, large: Int) {
    try work(small)  // warm up: first-touch page faults, lazy globals
    var bestSmall = Int.max
    for _ in 0..<7 { bestSmall = min(bestSmall, try cpuNanoseconds { try work(small) }) }
    var bestLarge = Int.max
    for _ in 0..<9 {
        bestLarge = min(bestLarge, try cpuNanoseconds { try work(large) })
        let ratio = Double(bestLarge) / Double(bestSmall)
        if ratio <= 20 || ratio > 100 { break }
    }
    let ratio = Double(bestLarge) / Double(bestSmall)
    print("cost at \(small): \(ms(bestSmall)), at \(large): \(ms(bestLarge)), ratio \(Int(ratio * 10)) tenths")
    return (ratio, bestSmall, bestLarge)
}

private func ms(_ ns: Int) -> String {
    let tenths = (ns + 50_000) / 100_000
    return "\(tenths / 10).\(tenths % 10) ms"
}

@Suite("JSON: cost grows linearly with the input", .serialized)
struct JSONScalingTests {
    /// No member limit here: the point is what the parser's own work costs per member.
    static let unlimited = JSONParser.Limits(maxDepth: 64, maxMembers: .max, maxValues: .max)

    @Test("parsing an object of 100k keys costs at most 20× one of 10k")
    func parserIsLinearInKeys() throws {
        let docs = [10_000: manyKeysDocument(10_000), 100_000: manyKeysDocument(100_000)]
        let r = try costRatio(small: 10_000, large: 100_000) { n in
            let value = try JSONParser.parse(docs[n]!, limits: Self.unlimited)
            #expect(value.objectValue?.members.count == n)
        }
        #expect(r.ratio <= 20, "10k keys: \(ms(r.small)), 100k keys: \(ms(r.large)): \(r.ratio)×")
    }

    @Test("a duplicate found after 100k keys costs at most 20× one after 10k")
    func duplicateCheckIsLinear() throws {
        func withDuplicate(_ n: Int) -> [UInt8] { manyKeysDocument(n).dropLast() + Array(#","k0":1}"#.utf8) }
        let docs = [10_000: withDuplicate(10_000), 100_000: withDuplicate(100_000)]
        let r = costRatio(small: 10_000, large: 100_000) { n in
            do throws(JSONParseError) {
                _ = try JSONParser.parse(docs[n]!, limits: Self.unlimited)
                Issue.record("a duplicate key was accepted")
            } catch {
                #expect(error.message.contains("duplicate key \"k0\""))
            }
        }
        #expect(r.ratio <= 20, "10k keys: \(ms(r.small)), 100k keys: \(ms(r.large)): \(r.ratio)×")
    }

    @Test("building an object member by member, then reading each back, is linear")
    func objectSubscriptsAreLinear() {
        let r = costRatio(small: 10_000, large: 100_000) { n in
            var o = JSONObject()
            for k in 0..<n { o["k\(k)"] = .integer(k) }
            var found = 0
            for k in stride(from: 0, to: n, by: 1) where o["k\(k)"] != nil { found += 1 }
            #expect(found == n)
        }
        #expect(r.ratio <= 20, "10k members: \(ms(r.small)), 100k members: \(ms(r.large)): \(r.ratio)×")
    }

    @Test("a job of 100k unknown fields decodes and re-encodes at most 20× one of 10k")
    func jobWithManyUnknownFieldsIsLinear() throws {
        func job(_ n: Int) -> [UInt8] { Array(#"{"prompt":"hi","#.utf8) + manyKeysDocument(n).dropFirst() }
        let docs = [10_000: job(10_000), 100_000: job(100_000)]
        var limits = Limits()
        limits.maxFileBytes = 4 << 20
        let r = try costRatio(small: 10_000, large: 100_000) { n in
            let value = try JSONParser.parse(docs[n]!, limits: Self.unlimited)
            let decoded = try Job(json: value, limits: limits)
            #expect(decoded.extra.count == n)
            #expect(decoded.json().objectValue?.members.count == n + 1)
        }
        #expect(r.ratio <= 20, "10k fields: \(ms(r.small)), 100k fields: \(ms(r.large)): \(r.ratio)×")
    }
}
