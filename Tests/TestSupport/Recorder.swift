import Synchronization

/// Things that arrive from other threads (output lines, watcher changes), with waits that return
/// as soon as what the test looks for has arrived — never a fixed sleep. The limit only bounds a
/// failing test.
public final class Recorder<Element: Sendable>: Sendable {
    private struct State {
        var elements: [Element] = []
        /// Each waiting call's own wake-up: waits may overlap (a test waits for one line while a
        /// task of its own waits for another), and every one of them must see every arrival.
        var waiters: [Int: AsyncStream<Void>.Continuation] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func append(_ element: Element) {
        self.append(contentsOf: [element])
    }

    public func append(contentsOf elements: [Element]) {
        let waiters = self.state.withLock { state in
            state.elements += elements
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.yield() }
    }

    public var all: [Element] { self.state.withLock { $0.elements } }

    public var count: Int { self.state.withLock { $0.elements.count } }

    public func clear() {
        self.state.withLock { $0.elements = [] }
    }

    /// The first non-nil answer of `find` over everything recorded so far; nil after `limit`.
    public func wait<T: Sendable>(limit: Duration = .seconds(10), _ find: @escaping @Sendable ([Element]) -> T?) async -> T? {
        if let found = find(self.all) { return found }
        let (arrivals, arrived) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = self.state.withLock { state in
            defer { state.nextWaiter += 1 }
            state.waiters[state.nextWaiter] = arrived
            return state.nextWaiter
        }
        defer {
            _ = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            arrived.finish()
        }
        return await withTaskGroup(of: T?.self) { group in
            group.addTask {
                // Again: something may have arrived before this wait was registered.
                if let found = find(self.all) { return found }
                for await _ in arrivals {
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
            arrived.finish()  // ends the waiting loop so the group can end
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

/// What `body` returns, or nil if it has not returned within `limit`; it is cancelled then. The
/// limit only bounds a failing test.
///
/// Returns at the limit even when `body` does not heed cancellation (awaiting a process's exit, a
/// `Task`'s value): a task group would wait for it to end, so a test waiting for a process that
/// never exits would wait past its limit, and past the kill that was to follow it.
public func result<T: Sendable>(within limit: Duration, _ body: @escaping @Sendable () async -> T?) async -> T? {
    await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        let pending = Mutex<CheckedContinuation<T?, Never>?>(continuation)
        let finish: @Sendable (T?) -> Void = { value in pending.withLock { $0.take() }?.resume(returning: value) }
        let timer = Mutex<Task<Void, Never>?>(nil)
        let work = Task {
            finish(await body())
            timer.withLock { $0?.cancel() }
        }
        timer.withLock { pendingTimer in
            pendingTimer = Task {
                try? await Task.sleep(for: limit)
                work.cancel()
                finish(nil)
            }
        }
    }
}

/// Whether `condition` came to hold within `limit`, checked every `interval`: for states nothing
/// announces (a thread blocked in a system call, a process tree), where polling is the readiness
/// check. The limit only bounds a failing test.
public func waitUntil(
    limit: Duration = .seconds(10), checkingEvery interval: Duration = .milliseconds(20), _ condition: () async -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return await condition()
}
