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

    func append(level: Logger.Level, event: String, message: String, generation: Generation?, build: BuildID?) {
        let text = message.utf8.count > Self.maximumMessageLength
            ? String(decoding: message.utf8.prefix(Self.maximumMessageLength), as: UTF8.self) + "…" : message
        // Numbered, kept and handed out under one lock: subscribers see the order of `seq`.
        // Each subscriber only queues the line (a control client) or writes it once (stderr).
        self.state.withLock { state in
            let record = EventRecord(
                seq: state.next, time: Date(), level: level.rawValue, event: event, message: text, generation: generation,
                build: build)
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
            generation: merged["generation"].flatMap { Int("\($0)") }, build: merged["build"].flatMap { Int("\($0)") })
    }
}
