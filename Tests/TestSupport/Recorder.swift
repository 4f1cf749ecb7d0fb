import Synchronization

/// Things that arrive from other threads (output lines, watcher changes), with waits that return
/// as soon as what the test looks for has arrived — never a fixed sleep. The limit only bounds a
/// failing test.
public final class Recorder<Element: Sendable>: Sendable {
    private let elements = Mutex<[Element]>([])
    private let (arrivals, arrived) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    public init() {}

    public func append(_ element: Element) {
        self.append(contentsOf: [element])
    }

    public func append(contentsOf elements: [Element]) {
        self.elements.withLock { $0 += elements }
        self.arrived.yield()
    }

    public var all: [Element] { self.elements.withLock { $0 } }

    public var count: Int { self.elements.withLock { $0.count } }

    public func clear() {
        self.elements.withLock { $0 = [] }
    }

    /// The first non-nil answer of `find` over everything recorded so far; nil after `limit`.
    public func wait<T: Sendable>(limit: Duration = .seconds(10), _ find: @escaping @Sendable ([Element]) -> T?) async -> T? {
        if let found = find(self.all) { return found }
        return await withTaskGroup(of: T?.self) { group in
            group.addTask {
                for await _ in self.arrivals {
                    if let found = find(self.all) { return found }
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let result = await group.next() ?? nil
            group.cancelAll()
            self.arrived.yield()  // wake the waiting loop so the group can end
            return result
        }
    }

    /// Whether `predicate` came to hold within `limit`.
    public func wait(limit: Duration = .seconds(10), until predicate: @escaping @Sendable ([Element]) -> Bool) async -> Bool {
        await self.wait(limit: limit) { predicate($0) ? true : nil } ?? false
    }
}

extension Recorder where Element == String {
    /// The first line containing `text` after index `from`; nil after `limit`.
    @discardableResult
    public func waitForLine(containing text: String, after from: Int = 0, limit: Duration = .seconds(120)) async -> String? {
        await self.wait(limit: limit) { lines in lines.dropFirst(from).first { $0.contains(text) } }
    }
}
