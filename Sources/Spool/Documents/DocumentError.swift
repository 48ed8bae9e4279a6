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
