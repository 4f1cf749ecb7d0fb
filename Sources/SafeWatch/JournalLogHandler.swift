import Logging
import SafeWatchSystem

/// Structured journal entries when safe-watch runs as a systemd service: the same message as the
/// terminal's (journald adds the time) plus fields to filter on —
/// `journalctl --user -u safe-watch SAFEWATCH_EVENT=build_failed`, `SAFEWATCH_GENERATION=3`.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let identifier: String

    /// Logger metadata → journal field.
    static let fields = ["event": "SAFEWATCH_EVENT", "generation": "SAFEWATCH_GENERATION", "build": "SAFEWATCH_BUILD"]

    public init(identifier: String = "safe-watch") {
        self.identifier = identifier
    }

    /// Whether to log to the journal: stderr is systemd's journal stream and journald is there.
    public static var isWanted: Bool {
        Journal.isStandardErrorTheJournal() && Journal.isAvailable
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let message = "\(event.message)"
        var entry = [
            ("MESSAGE", message), ("PRIORITY", String(Self.priority(event.level))), ("SYSLOG_IDENTIFIER", self.identifier),
        ]
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, field) in Self.fields.sorted(by: { $0.key < $1.key }) {
            if let value = merged[key] { entry.append((field, "\(value)")) }
        }
        if !Journal.send(entry) {
            // journald went away: lose nothing, stderr is still the journal's stream or a file.
            TerminalLogHandler.write(message + "\n", to: 2)
        }
    }

    /// syslog(3) priorities, as journald files them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: 2
        case .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }
}
