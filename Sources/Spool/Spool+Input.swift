import SystemPackage

extension Spool {
    /// Reads a job file given on the command line (`-` is standard input), refusing more than `limit` bytes.
    public static func readInput(_ path: String, limit: Int) throws(SpoolError) -> [UInt8] {
        do {
            if path == "-" { return try Sys.readAll(.standardInput, limit: limit, path: "standard input") }
        } catch {
            throw .system(error)
        }
        return try readFile(path, limit: limit)
    }

    /// Reads the file at `path`, refusing more than `limit` bytes. Unlike ``readInput(_:limit:)``,
    /// `-` is a file name like any other: settings files are never standard input.
    public static func readFile(_ path: String, limit: Int) throws(SpoolError) -> [UInt8] {
        do {
            let fd = try Sys.openForReading(path, in: .current)
            defer { Sys.close(fd) }
            return try Sys.readAll(fd, limit: limit, path: path)
        } catch {
            throw .system(error)
        }
    }
}
