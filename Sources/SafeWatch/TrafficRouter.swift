import NIOCore
import SafeWatchCore
import Synchronization

/// Where the proxy sends each request: the active generation's private port. Shared by every
/// connection's handler (any event loop) and the runtime, so it is guarded by a mutex.
///
/// It also counts each generation's in-flight requests, which is how an old generation is drained
/// precisely: it gets its stop signal once the last request routed to it has been answered.
public final class TrafficRouter: Sendable {
    public struct Target: Equatable, Sendable {
        public var generation: Generation
        public var port: Int
    }

    private struct Waiter {
        var id: Int
        var promise: EventLoopPromise<Target?>
    }

    /// What a caller of `waitUntilIdle` or `waitUntilNoClients` waits for.
    private enum Condition: Hashable {
        case idle(Generation)
        case noClients
    }

    private struct State {
        var active: Target?
        var waiters: [Waiter] = []
        var nextWaiter = 0
        var inFlight: [Generation: Int] = [:]
        /// Callers waiting for a condition, by condition and call.
        var conditionWaiters: [Condition: [Int: CheckedContinuation<Void, Never>]] = [:]
        var nextCall = 0
        /// Client connections the listeners accepted and that are not closed yet, counted from the
        /// accept itself: a connection's handler becomes active a moment later, on its own loop.
        var openConnections = 0
        /// What tells each active client connection that safe-watch is stopping.
        var clients: [Int: @Sendable (TimeAmount) -> Void] = [:]
        var nextClient = 0
        var listeners: [any Channel] = []
        /// Complete once each listener has stopped accepting.
        var stoppedAccepting: [EventLoopFuture<Void>] = []
        /// Set once safe-watch stops: how long an idle keep-alive connection may still send a request.
        var shuttingDown: TimeAmount?
        /// Client connections the proxy accepted but could not set up (closed at once).
        var failedConnections = 0
        var lastFailedConnection: String?
        var lastFailureLogged: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    public init() {}

    /// Routes new requests to `target` (nil: hold them until a server is healthy again).
    public func setActive(_ target: Target?) {
        let waiters: [Waiter] = self.state.withLock { state in
            state.active = target
            guard let target else { return [] }
            let waiters = state.waiters
            state.waiters = []
            if !waiters.isEmpty { state.inFlight[target.generation, default: 0] += waiters.count }
            return waiters
        }
        for waiter in waiters { waiter.promise.succeed(target) }
    }

    public var active: Target? { self.state.withLock { $0.active } }

    /// The active target for one request, counted as in flight until `release`; nil when no server
    /// is healthy right now (then `acquire` waits for one).
    func acquireActive() -> Target? {
        self.state.withLock { state in
            guard let active = state.active else { return nil }
            state.inFlight[active.generation, default: 0] += 1
            return active
        }
    }

    /// The target for one request, counted as in flight until `release`; nil if no server became
    /// healthy within `hold` (the caller answers 503).
    func acquire(on eventLoop: any EventLoop, hold: TimeAmount) -> EventLoopFuture<Target?> {
        let promise = eventLoop.makePromise(of: Target?.self)
        let waiterID: Int? = self.state.withLock { state in
            if let active = state.active {
                state.inFlight[active.generation, default: 0] += 1
                promise.succeed(active)
                return nil
            }
            let id = state.nextWaiter
            state.nextWaiter += 1
            state.waiters.append(Waiter(id: id, promise: promise))
            return id
        }
        if let waiterID {
            eventLoop.scheduleTask(in: hold) { [self] in
                let timedOut = self.state.withLock { state in
                    guard let index = state.waiters.firstIndex(where: { $0.id == waiterID }) else { return false }
                    state.waiters.remove(at: index)
                    return true
                }
                if timedOut { promise.succeed(nil) }
            }
        }
        return promise.futureResult
    }

    /// The request routed to `generation` is answered (or abandoned).
    func release(_ generation: Generation) {
        let idle: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            let left = max(0, state.inFlight[generation, default: 0] - 1)
            // No entry kept per generation that has gone quiet: hundreds of swaps, no growth.
            state.inFlight[generation] = left == 0 ? nil : left
            guard left == 0, state.active?.generation != generation else { return [] }
            return state.conditionWaiters.removeValue(forKey: .idle(generation)).map { Array($0.values) } ?? []
        }
        for waiter in idle { waiter.resume() }
    }

    /// Requests (and tunnels) counted against `generation` right now.
    func inFlight(_ generation: Generation) -> Int {
        self.state.withLock { $0.inFlight[generation, default: 0] }
    }

    /// Returns once no request is in flight to `generation` (it must no longer be active), or
    /// after `timeout`, whichever comes first.
    public func waitUntilIdle(_ generation: Generation, timeout: Duration) async {
        await self.wait(for: .idle(generation), timeout: timeout) { $0.inFlight[generation, default: 0] == 0 }
    }

    /// Returns once `holds` (checked now, and again whenever the condition's waiters are woken), or
    /// after `timeout`, whichever comes first; `first` runs before the first check.
    private func wait(
        for condition: Condition, timeout: Duration, first: @escaping @Sendable () async -> Void = {},
        holds: @escaping @Sendable (State) -> Bool
    ) async {
        let call = self.state.withLock { state in
            defer { state.nextCall += 1 }
            return state.nextCall
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await first()
                await withCheckedContinuation { continuation in
                    // Cancelled: the timeout came first and will not look for this waiter again.
                    let now = self.state.withLock { state in
                        if holds(state) || Task.isCancelled { return true }
                        state.conditionWaiters[condition, default: [:]][call] = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            let left = self.state.withLock { state in
                defer { if state.conditionWaiters[condition]?.isEmpty == true { state.conditionWaiters[condition] = nil } }
                return state.conditionWaiters[condition]?.removeValue(forKey: call)
            }
            left?.resume()
        }
    }

    // MARK: Stopping safe-watch itself

    /// A listening channel; it stops accepting when safe-watch begins to stop.
    func addListener(_ channel: any Channel) {
        self.state.withLock { $0.listeners.append(channel) }
    }

    /// A listener accepted a connection; `connectionClosed` follows once it is closed.
    func connectionAccepted() {
        self.state.withLock { $0.openConnections += 1 }
    }

    func connectionClosed() {
        let waiters: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            state.openConnections -= 1
            guard state.openConnections == 0 else { return [] }
            return state.conditionWaiters.removeValue(forKey: .noClients).map { Array($0.values) } ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A client connection's handler is active; `shutdownBegan` is called (once) when safe-watch
    /// begins to stop, with the time an idle connection may still send its next request. Returns
    /// its id.
    func clientOpened(shutdownBegan: @escaping @Sendable (TimeAmount) -> Void) -> Int {
        let (id, grace): (Int, TimeAmount?) = self.state.withLock { state in
            let id = state.nextClient
            state.nextClient += 1
            state.clients[id] = shutdownBegan
            return (id, state.shuttingDown)
        }
        if let grace { shutdownBegan(grace) }
        return id
    }

    func clientClosed(_ id: Int) {
        _ = self.state.withLock { $0.clients.removeValue(forKey: id) }
    }

    /// safe-watch is stopping: accept no more connections (when systemd holds the socket they
    /// wait in its queue for the next safe-watch), answer each open connection's next request with
    /// `Connection: close`, and close idle ones after `idleGrace` — a request sent in that
    /// instant is answered, not reset.
    ///
    /// A listener stops reading rather than closing: NIO sets up each accepted connection on its
    /// own event loop, then drops it unread if the listener was closed meanwhile — the client,
    /// whose request is already sent, sees a reset. Stopped this way, the connections accepted
    /// last are served; the listening socket closes with safe-watch.
    public func beginShuttingDown(idleGrace: Duration) {
        let grace = TimeAmount(saturating: idleGrace)
        let (listeners, clients): ([any Channel], [@Sendable (TimeAmount) -> Void]) = self.state.withLock { state in
            guard state.shuttingDown == nil else { return ([], []) }
            state.shuttingDown = grace
            return (state.listeners, Array(state.clients.values))
        }
        let stopped = listeners.map { $0.setOption(.autoRead, value: false) }
        self.state.withLock { $0.stoppedAccepting += stopped }
        for client in clients { client(grace) }
    }

    public var isShuttingDown: Bool { self.state.withLock { $0.shuttingDown != nil } }

    // MARK: Connections the proxy could not set up

    /// Called with a line to log when a client connection could not be set up; set once at start.
    private let failureLog = Mutex<(@Sendable (String) -> Void)?>(nil)

    public func onConnectionFailure(_ log: @escaping @Sendable (String) -> Void) {
        self.failureLog.withLock { $0 = log }
    }

    /// An accepted client connection could not be set up and was closed. Counted for `status`;
    /// logged at once, then at most every 10 s with the count, so a flood of them cannot flood the log.
    func connectionSetupFailed(_ reason: String) {
        let now = ContinuousClock.now
        let line: String? = self.state.withLock { state in
            state.failedConnections += 1
            state.lastFailedConnection = reason
            if let logged = state.lastFailureLogged, now - logged < .seconds(10) { return nil }
            state.lastFailureLogged = now
            let count = state.failedConnections == 1 ? "" : " (\(state.failedConnections) so far)"
            return "the proxy could not set up a client connection and closed it\(count): \(reason)"
        }
        if let line, let log = self.failureLog.withLock({ $0 }) { log(line) }
    }

    /// Client connections that could not be set up so far, and the last reason.
    public var connectionFailures: (count: Int, last: String?) {
        self.state.withLock { ($0.failedConnections, $0.lastFailedConnection) }
    }

    /// Returns once the listeners have stopped accepting and every connection they accepted has
    /// closed, or after `timeout`.
    public func waitUntilNoClients(timeout: Duration) async {
        await self.wait(
            for: .noClients, timeout: timeout,
            first: {
                // Once a listener has stopped accepting, every connection it accepted has been counted.
                for stopped in self.state.withLock({ $0.stoppedAccepting }) { try? await stopped.get() }
            },
            holds: { $0.openConnections == 0 })
    }

}
