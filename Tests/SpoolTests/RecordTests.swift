import Foundation
import Testing

@testable import Spool

@Suite("Spool: side records")
struct RecordTests {
    @Test("records: written whole (durably or not), replaced only when asked, appended to only when present")
    func records() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let area = Spool.waitingCountArea
        #expect(try t.spool.readRecord("abc", in: area) == nil)
        #expect(try t.spool.appendRecord("abc", in: area, bytes: [0x2B]) == false, "no record: nothing is created")
        #expect(!FileManager.default.fileExists(atPath: t.root + "/.waiting/abc"))

        #expect(try t.spool.writeRecord("abc", in: area, bytes: Array("1 2\n".utf8), durability: .volatile))
        #expect(try t.spool.writeRecord("abc", in: area, bytes: Array("9 9\n".utf8)) == false, "kept without replacing")
        #expect(try t.spool.appendRecord("abc", in: area, bytes: [0x2B]))
        #expect(try t.spool.appendRecord("abc", in: area, bytes: [0x2B]))
        #expect(try t.spool.readRecord("abc", in: area)?.bytes == Array("1 2\n++".utf8))
        #expect(try t.spool.writeRecord("abc", in: area, bytes: Array("3 4\n".utf8), replacing: true, durability: .volatile))
        #expect(try t.spool.readRecord("abc", in: area)?.bytes == Array("3 4\n".utf8))
        #expect(t.visible(.tmp).isEmpty, "the temporary files were renamed away")
        #expect(try t.spool.readRecord("../new", in: area) == nil, "names are ids, never paths")
        #expect(try t.spool.appendRecord("../x", in: area, bytes: [0x2B]) == false)
    }

    @Test("countWaiting stops at its limit")
    func countUpTo() throws {
        let t = try TestSpool()
        defer { t.remove() }
        let jobs = (0..<50).map { k in
            var j = Job(prompt: "\(k)")
            j.jobId = JobID.generate(tag: 9)
            return j
        }
        _ = try t.spool.enqueue(batch: jobs, durability: .volatile)
        #expect(try t.spool.countWaiting(tag: 9) == 50)
        #expect(try t.spool.countWaiting(tag: 9, upTo: 20) == 20)
        #expect(try t.spool.countWaiting(tag: 9, upTo: 50) == 50)
        #expect(try t.spool.countWaiting(tag: 8, upTo: 20) == 0)
    }
}
