import CKafka
import JSON
import Spool
import Testing

@testable import Bridge

@Suite("Results state machines")
struct ResultsStateMachineTests {
    let t0 = ContinuousClock.now

    @Test("results-in waits for the mover to let its job go, and only that job")
    func waitsForMover() {
        var m = ResultsInStateMachine()
        m.waitForMover(id: "x")
        #expect(!m.isReady)
        let r1 = m.released(ids: ["y", "z"]); #expect(!r1)
        #expect(!m.isReady)
        let r2 = m.released(ids: ["y", "x"]); #expect(r2)
        #expect(m.isReady)
    }

    @Test("results-in retries a result the spool refused a second later")
    func retry() {
        var m = ResultsInStateMachine()
        let r3 = m.storeFailed(now: t0); #expect(r3 == t0 + .seconds(1))
        #expect(m.retryAt == t0 + .seconds(1))
        let r4 = m.retryDue(now: t0 + .milliseconds(10)); #expect(!r4)
        let r5 = m.retryDue(now: t0 + .seconds(1)); #expect(r5)
        #expect(m.isReady && m.retryAt == nil)
    }

    @Test("results-out: published, ignored and in-flight results are not looked at again; a failed one is")
    func resultsOut() {
        var m = ResultsOutStateMachine(published: ["old"])
        #expect(!m.wants("old") && m.wants("a"))
        m.ignore("remote")
        #expect(!m.wants("remote"))
        m.produced("a", done: true, seq: 1)
        m.produced("b", done: false, seq: 2)
        #expect(!m.wants("a") && m.inFlight == 2)
        let r6 = m.delivered(seq: 1, ok: true, now: t0); #expect(r6 == .published(id: "a", done: true))
        let r7 = m.delivered(seq: 2, ok: false, now: t0); #expect(r7 == .failed(id: "b", retryAt: t0 + .seconds(1)))
        #expect(!m.wants("a") && m.wants("b") && m.inFlight == 0)
        let r8 = m.delivered(seq: 2, ok: true, now: t0); #expect(r8 == .unknown)
    }
}

@Suite("Message decoding")
struct MessageDecodingTests {
    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test("a Spring JobEvent takes its id from the key and its owner from headers; a JSON-quoted content type is JSON")
    func springJob() throws {
        let r = MessageDecoding.job(
            Self.bytes(#"{"prompt":"hi"}"#), key: "k1", contentType: "\"application/json\"",
            userId: "alice", tenantId: "acme", limits: Limits())
        let job = try r.get()
        #expect(job.jobId == "k1" && job.userId == "alice" && job.tenantId == "acme")
        let own = try MessageDecoding.job(
            Self.bytes(#"{"jobId":"j","prompt":"hi","userId":"bob"}"#), key: "k1", contentType: nil,
            userId: "alice", tenantId: nil, limits: Limits()
        ).get()
        #expect(own.jobId == "j" && own.userId == "bob", "the payload's fields win")
    }

    @Test("a content type other than JSON, and a value that is not a job, are refused with a reason")
    func invalidJobs() {
        if case .failure(let f) = MessageDecoding.job(Self.bytes("{}"), key: nil, contentType: "text/plain", userId: nil, tenantId: nil, limits: Limits()) {
            #expect(f.message.contains("text/plain"))
        } else {
            Issue.record("text/plain accepted")
        }
        if case .success = MessageDecoding.job(Self.bytes("not json"), key: "k", contentType: nil, userId: nil, tenantId: nil, limits: Limits()) {
            Issue.record("not json accepted")
        }
    }

    @Test("results: a string error becomes a remote dead letter; a result needs a response; the id must be valid")
    func results() throws {
        let failed = try MessageDecoding.result(Self.bytes(#"{"jobId":"a","error":"boom"}"#), key: nil, jobIdHeader: nil, contentType: nil).get()
        #expect(failed.state == .failed && failed.fields["error"]?["kind"]?.stringValue == "remote")
        let spring = try MessageDecoding.result(Self.bytes(#"{"response":"ok"}"#), key: "k", jobIdHeader: "h", contentType: nil).get()
        #expect(spring.id == "h" && spring.state == .done)
        if case .success = MessageDecoding.result(Self.bytes(#"{"jobId":"a"}"#), key: nil, jobIdHeader: nil, contentType: nil) {
            Issue.record("a result without response or error accepted")
        }
        if case .success = MessageDecoding.result(Self.bytes(#"{"jobId":"../x","response":"r"}"#), key: nil, jobIdHeader: nil, contentType: nil) {
            Issue.record("an id that is a path accepted")
        }
    }

    @Test("results out publishes a job's own result in scope, never one that came from Kafka or a rejected file's")
    func publishable() throws {
        let own = try JSONParser.parse(Self.bytes(#"{"jobId":"a","job":{"origin":{"kafka":{}}}}"#))
        let local = try JSONParser.parse(Self.bytes(#"{"jobId":"a","job":{}}"#))
        let received = try JSONParser.parse(Self.bytes(#"{"jobId":"a","receivedFrom":{}}"#))
        #expect(MessageDecoding.isPublishable(own, id: "a", scope: .kafka))
        #expect(MessageDecoding.isPublishable(local, id: "a", scope: .all))
        #expect(!MessageDecoding.isPublishable(local, id: "a", scope: .kafka))
        #expect(!MessageDecoding.isPublishable(received, id: "a", scope: .all))
        #expect(!MessageDecoding.isPublishable(own, id: "other-name", scope: .all))
        #expect(!MessageDecoding.isPublishable(nil, id: "a", scope: .all))
    }
}

@Suite("Kafka errors")
struct KafkaErrorTests {
    @Test("a KafkaError carries librdkafka's code and name with the message")
    func codeAndName() {
        let e = KafkaError("produce to jobs", .init(-184))  // RD_KAFKA_RESP_ERR__QUEUE_FULL
        #expect(e.code == -184)
        #expect(e.name == "_QUEUE_FULL")
        #expect(e.description.hasPrefix("produce to jobs: ") && e.description.hasSuffix("(_QUEUE_FULL)"))
        let own = KafkaError("mkdir x: denied")
        #expect(own.code == 0 && own.name == "none" && own.description == "mkdir x: denied")
    }
}
