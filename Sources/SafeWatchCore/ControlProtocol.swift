import Foundation

/// The control socket's protocol (`.safe-watch/control.sock`): the client sends one line, a JSON
/// object such as `{"command":"events","since":20}` — or the same as words, `events 20`, for
/// people typing into `socat` — and reads JSON lines back. Every answer but `events` is one line,
/// then the connection closes; `events` streams one line per event until the client leaves.
public enum ControlRequest: Equatable, Sendable {
    case status
    case rebuild
    case rollback
    case stop
    /// The last `since` events first (none when nil), then every new one.
    case events(since: Int?)

    /// A request line longer than this is refused: no command needs more.
    public static let maximumLength = 4096
    /// How many past events safe-watch keeps for `events --since`.
    public static let eventsKept = 1000

    public var line: String {
        switch self {
        case .status: return #"{"command":"status"}"#
        case .rebuild: return #"{"command":"rebuild"}"#
        case .rollback: return #"{"command":"rollback"}"#
        case .stop: return #"{"command":"stop"}"#
        case .events(let since): return since.map { #"{"command":"events","since":\#($0)}"# } ?? #"{"command":"events"}"#
        }
    }

    private struct Wire: Decodable {
        var command: String
        var since: Int?
    }

    private static let knownCommands: Set = ["status", "rebuild", "rollback", "stop", "events"]

    private static func unknown(_ command: String) -> String {
        "unknown command \"\(command.prefix(40))\": use status, rebuild, rollback, stop or events"
    }

    /// Parses one request line (without its newline).
    public init(parsing line: String) throws(ControlProtocolError) {
        let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
        let command: String
        var since: Int?
        if text.hasPrefix("{") {
            guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(text.utf8)) else {
                throw ControlProtocolError("not a request: expected a JSON object with a \"command\" string, e.g. {\"command\":\"status\"}")
            }
            command = wire.command
            since = wire.since
        } else {
            let words = text.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = words.first else { throw ControlProtocolError("empty request: send a command such as status") }
            command = String(first)
            if words.count > 1 {
                guard command == "events" else {
                    throw ControlProtocolError(Self.knownCommands.contains(command) ? "\(command) takes no argument" : Self.unknown(command))
                }
                guard words.count == 2, let number = Int(words[1]) else {
                    throw ControlProtocolError("\"\(text.prefix(80))\": events takes one argument, a number")
                }
                since = number
            }
        }
        switch command {
        case "status": self = .status
        case "rebuild": self = .rebuild
        case "rollback": self = .rollback
        case "stop": self = .stop
        case "events":
            if let since, since < 0 { throw ControlProtocolError("events: since must be 0 or more, got \(since)") }
            self = .events(since: since)
        default:
            throw ControlProtocolError(Self.unknown(command))
        }
        if since != nil, self != .events(since: since) { throw ControlProtocolError("\(command) takes no argument") }
    }
}

public struct ControlProtocolError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One answer line (every command but `events`).
public struct ControlReply: Codable, Equatable, Sendable {
    public var ok: Bool
    /// What happened, for people: "build 4 started", "rolling back from gen 3 to gen 2".
    public var message: String?
    /// Why the request was refused.
    public var error: String?
    public var status: StatusSnapshot?

    public init(ok: Bool, message: String? = nil, error: String? = nil, status: StatusSnapshot? = nil) {
        self.ok = ok
        self.message = message
        self.error = error
        self.status = status
    }

    public static func refused(_ error: String) -> ControlReply { ControlReply(ok: false, error: error) }
}

/// One event of `safe-watch events` and of `--log-format json`: everything safe-watch logs, with
/// a sequence number and a timestamp.
public struct EventRecord: Codable, Equatable, Sendable {
    /// 1, 2, 3… since safe-watch started.
    public var seq: Int
    public var time: Date
    /// trace, debug, info, notice, warning, error, critical.
    public var level: String
    /// What kind: build_started, swapped, output (a server's line), diagnostic, log (anything else)…
    public var event: String
    public var message: String
    public var generation: Generation?
    public var build: BuildID?
    /// The file an `asset_changed` event is about, relative to the project.
    public var path: String?
    /// A `build_failed` event's diagnostics, all of them.
    public var diagnostics: [StatusSnapshot.Diagnostic]?

    public init(
        seq: Int, time: Date, level: String, event: String, message: String, generation: Generation?, build: BuildID?,
        path: String? = nil, diagnostics: [StatusSnapshot.Diagnostic]? = nil
    ) {
        self.seq = seq
        self.time = time
        self.level = level
        self.event = event
        self.message = message
        self.generation = generation
        self.build = build
        self.path = path
        self.diagnostics = diagnostics
    }
}

extension JSONEncoder {
    /// The control socket's and `--log-format json`'s encoding: one line, keys in snake_case and in
    /// a fixed order, times in ISO 8601 with milliseconds.
    public static var controlLine: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(date))
        }
        return encoder
    }
}

extension JSONDecoder {
    public static var controlLine: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 time: \(text)"))
            }
            return date
        }
        return decoder
    }
}

/// Where a project's control socket lives: `.safe-watch/control.sock`, unless that path is too long
/// for a Unix socket address (108 bytes), then a name made from the project's path in
/// `$XDG_RUNTIME_DIR` (private to the user), else /tmp — the same for the server and every client.
public enum ControlSocketLocation {
    public static func path(forProject directory: String, runtimeDirectory: String? = nil) -> String {
        let path = directory + "/.safe-watch/control.sock"
        if path.utf8.count < 100 { return path }
        let runtime = runtimeDirectory ?? ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        // FNV-1a: stable across runs and processes (Hasher is seeded per process).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in directory.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return "\(runtime)/safe-watch-\(String(hash, radix: 16)).sock"
    }
}
