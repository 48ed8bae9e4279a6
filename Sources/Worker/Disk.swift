import Dispatch

/// Runs blocking file-system work — fsync, directory listings, file reads, claims, renames — on
/// Dispatch's threads, off the cooperative pool: the caller's task suspends, no pool thread waits.
enum Disk {
    static let queue = DispatchQueue(label: "llmspool.disk", attributes: .concurrent)

    static func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { c in
            queue.async { c.resume(returning: Result { () throws(E) -> T in try body() }) }
        }
        return try result.get()
    }
}
