import Foundation
import SafeWatchSystem
import Synchronization

/// A private temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        let template = NSTemporaryDirectory() + "safe-watch-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard mkdtemp(&bytes) != nil else { throw POSIXError(.EIO) }
        self.path = bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    func write(_ relative: String, _ text: String = "x\n") throws {
        let url = URL(fileURLWithPath: self.path + "/" + relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: false, encoding: .utf8)
    }

    func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: self.path + "/" + relative, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// Collects what a watcher reports, and lets a test wait for a specific change (never a sleep:
/// it returns as soon as the change arrives; the limit only bounds a failing test).
final class ChangeLog: Sendable {
    private let changes = Mutex<[WatchedChange]>([])
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (self.stream, self.continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func record(_ batch: [WatchedChange]) {
        self.changes.withLock { $0 += batch }
        self.continuation.yield()
    }

    var all: [WatchedChange] { self.changes.withLock { $0 } }

    func clear() { self.changes.withLock { $0 = [] } }

    /// Waits until `predicate` holds for the changes seen so far; false after `limit`.
    func wait(limit: Duration = .seconds(10), until predicate: @escaping @Sendable ([WatchedChange]) -> Bool) async -> Bool {
        if predicate(self.all) { return true }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in self.stream where predicate(self.all) { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let result = await group.next() ?? false
            group.cancelAll()
            self.continuation.yield()  // unblock the waiting loop so the group can end
            return result
        }
    }

    func saw(_ path: String, _ kind: WatchedChange.Kind = .changed) -> @Sendable ([WatchedChange]) -> Bool {
        { $0.contains(WatchedChange(path: path, kind: kind)) }
    }
}
