/// A document that is not a valid job (or result): which field, and what is wrong with it.
public struct DocumentError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A path into the document: `prompt`, `messages[2].role`, or `""` for the document itself.
    public var field: String
    public var message: String

    public init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { field.isEmpty ? message : "\(field): \(message)" }
}

extension DocumentError {
    /// `; did you mean "KNOWN"?` when `key` is a near miss of one of `known` (the same letters
    /// ignoring case, `_` and `-`, as job fields are matched), else the empty string.
    public static func didYouMean(_ key: String, in known: [String]) -> String {
        let folded = Job.fold(key)
        return known.first { Job.fold($0) == folded }.map { "; did you mean \"\($0)\"?" } ?? ""
    }
}
