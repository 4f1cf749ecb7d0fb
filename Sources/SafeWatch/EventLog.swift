import Foundation
import Logging
import SafeWatchCore
import Synchronization

/// Every event safe-watch logs, numbered, with the last `ControlRequest.eventsKept` kept for
/// `safe-watch events --since N`, and handed to each subscriber as it happens.
public final class EventLog: Sendable {
    private struct State {
        var next = 1
        /// Each kept event as its JSON line.
        var kept: [String] = []
        var subscribers: [Int: @Sendable (String) -> Void] = [:]
        var nextSubscriber = 0
    }

    /// A message longer than this (a server's minified JSON, say) is cut, so that the kept events
    /// stay small.
    static let maximumMessageLength = 8192
    private static let encoder = JSONEncoder.controlLine

    private let state = Mutex(State())
    private let capacity: Int

    public init(capacity: Int = ControlRequest.eventsKept) {
        self.capacity = capacity
    }

    func append(
        level: Logger.Level, event: String, message: String, generation: Generation?, build: BuildID?, path: String? = nil,
        diagnostics: [StatusSnapshot.Diagnostic]? = nil
    ) {
        let text = message.utf8.count > Self.maximumMessageLength
            ? String(decoding: message.utf8.prefix(Self.maximumMessageLength), as: UTF8.self) + "…" : message
        // Numbered, kept and handed out under one lock: subscribers see the order of `seq`.
        // Each subscriber only queues the line (a control client) or writes it once (stderr).
        self.state.withLock { state in
            let record = EventRecord(
                seq: state.next, time: Date(), level: level.rawValue, event: event, message: text, generation: generation,
                build: build, path: path, diagnostics: diagnostics)
            state.next += 1
            let line = (try? Self.encoder.encode(record)).map { String(decoding: $0, as: UTF8.self) + "\n" } ?? ""
            state.kept.append(line)
            if state.kept.count > self.capacity { state.kept.removeFirst(state.kept.count - self.capacity) }
            for subscriber in state.subscribers.values { subscriber(line) }
        }
    }

    /// The last `since` events' lines, and from then on every new one to `deliver` until
    /// `unsubscribe` — with none lost or repeated in between.
    public func subscribe(since: Int, _ deliver: @escaping @Sendable (String) -> Void) -> (backlog: [String], id: Int) {
        self.state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = deliver
            return (Array(state.kept.suffix(since)), id)
        }
    }

    public func unsubscribe(_ id: Int) {
        _ = self.state.withLock { $0.subscribers.removeValue(forKey: id) }
    }
}

/// Feeds the event log from the logger: the `event`, `generation` and `build` metadata the
/// reporter attaches become the record's fields.
public struct EventLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let log: EventLog

    public init(log: EventLog) {
        self.log = log
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        self.log.append(
            level: event.level, event: merged["event"].map { "\($0)" } ?? "log", message: "\(event.message)",
            generation: merged["generation"].flatMap { Int("\($0)") }, build: merged["build"].flatMap { Int("\($0)") },
            path: merged["path"].map { "\($0)" }, diagnostics: merged["diagnostics"].flatMap(Self.diagnostics))
    }

    /// The diagnostics the reporter attaches to `build_failed` (`Reporter.diagnosticsMetadata`).
    static func diagnostics(_ value: Logger.Metadata.Value) -> [StatusSnapshot.Diagnostic]? {
        guard case .array(let items) = value else { return nil }
        return items.compactMap { item in
            guard case .dictionary(let fields) = item, let file = fields["file"].map({ "\($0)" }),
                let line = fields["line"].flatMap({ Int("\($0)") })
            else { return nil }
            return StatusSnapshot.Diagnostic(
                file: file, line: line, column: fields["column"].flatMap { Int("\($0)") },
                severity: fields["severity"].map { "\($0)" } ?? "error", message: fields["message"].map { "\($0)" } ?? "")
        }
    }
}
