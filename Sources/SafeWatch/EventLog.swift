import Foundation
import Logging
import SafeWatchCore
import Synchronization

/// Every event safe-watch logs, numbered, with the last `ControlRequest.eventsKept` kept for
/// `safe-watch events --since N`, and handed to each subscriber as it happens.
public final class EventLog: Sendable {
    private struct State {
        var next = 1
        var kept: [EventRecord] = []
        var subscribers: [Int: @Sendable (EventRecord) -> Void] = [:]
        var nextSubscriber = 0
    }

    private let state = Mutex(State())
    private let capacity: Int

    public init(capacity: Int = ControlRequest.eventsKept) {
        self.capacity = capacity
    }

    func append(level: Logger.Level, event: String, message: String, generation: Generation?, build: BuildID?) {
        let (record, subscribers): (EventRecord, [@Sendable (EventRecord) -> Void]) = self.state.withLock { state in
            let record = EventRecord(
                seq: state.next, time: Date(), level: level.rawValue, event: event, message: message, generation: generation,
                build: build)
            state.next += 1
            state.kept.append(record)
            if state.kept.count > self.capacity { state.kept.removeFirst(state.kept.count - self.capacity) }
            return (record, Array(state.subscribers.values))
        }
        for subscriber in subscribers { subscriber(record) }
    }

    /// The last `since` events, and from then on every new one to `deliver` until `unsubscribe`
    /// — with none lost or repeated in between.
    public func subscribe(since: Int, _ deliver: @escaping @Sendable (EventRecord) -> Void) -> (backlog: [EventRecord], id: Int) {
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

extension EventRecord {
    /// The record as one JSON line (newline included).
    public var jsonLine: String {
        guard let data = try? JSONEncoder.controlLine.encode(self) else { return "" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
