public import Logging

/// Logging for the daemons (worker, bridge): swift-log to stderr, which systemd sends to the journal.
public enum DaemonLogging {
    /// Installs the stderr handler at `level` (validated by the command) and returns a logger.
    public static func bootstrap(label: String, level: String) -> Logger {
        let threshold = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = threshold
            return h
        }
        return Logger(label: label)
    }
}
