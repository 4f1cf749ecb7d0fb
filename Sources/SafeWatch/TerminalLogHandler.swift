import Glibc
import Logging
import SafeWatchProcesses
import SafeWatchSystem
import Synchronization

/// The terminal format: `06:21:05 ✓ gen 3 healthy in 240 ms, swapped`, one line per transition,
/// colours only on a TTY and never with NO_COLOR.
public struct TerminalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let colours: Bool
    private let output: Int32

    /// Lines from several threads must not interleave.
    private static let writing = Mutex(())

    public init(label: String, output: Int32 = 2, colours: Bool? = nil) {
        self.label = label
        self.output = output
        self.colours = colours ?? Self.wantsColours(fd: output)
    }

    public static func wantsColours(fd: Int32) -> Bool {
        isatty(fd) == 1 && getenv("NO_COLOR") == nil && getenv("TERM").map { String(cString: $0) } != "dumb"
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(Self.clock()) "
        let text = "\(event.message)"
        if self.colours {
            let colour: String
            switch event.level {
            case .error, .critical: colour = "\u{1B}[31m"
            case .warning: colour = "\u{1B}[33m"
            case .notice: colour = "\u{1B}[32m"
            case .debug, .trace: colour = "\u{1B}[2m"
            case .info: colour = ""
            }
            line = "\u{1B}[2m\(line)\u{1B}[0m" + (colour.isEmpty ? text : "\(colour)\(text)\u{1B}[0m")
        } else {
            line += text
        }
        Self.write(line + "\n", to: self.output)
    }

    /// Writes `text` whole, retrying short writes, serialised with every other line. Best effort:
    /// a closed or broken stdout/stderr leaves nowhere to say so.
    public static func write(_ text: String, to fd: Int32) {
        writing.withLock { _ in
            try? FileDescriptor(rawValue: fd).writeAll(Array(text.utf8), descriptorMayBeClosed: true)
        }
    }

    /// Local wall-clock time, HH:MM:SS: now, or `seconds` since the epoch.
    public static func clock(_ seconds: Double? = nil) -> String {
        var now = seconds.map { time_t($0) } ?? time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}
