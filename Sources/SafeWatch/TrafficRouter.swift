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

    private struct State {
        var active: Target?
        var waiters: [Waiter] = []
        var nextWaiter = 0
        var inFlight: [Generation: Int] = [:]
        var idleWaiters: [Generation: [CheckedContinuation<Void, Never>]] = [:]
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
            state.inFlight[target.generation, default: 0] += waiters.count
            return waiters
        }
        for waiter in waiters { waiter.promise.succeed(target) }
    }

    public var active: Target? { self.state.withLock { $0.active } }

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
            state.inFlight[generation] = left
            guard left == 0, state.active?.generation != generation else { return [] }
            return state.idleWaiters.removeValue(forKey: generation) ?? []
        }
        for waiter in idle { waiter.resume() }
    }

    /// Returns once no request is in flight to `generation` (it must no longer be active), or
    /// after `timeout`, whichever comes first.
    public func waitUntilIdle(_ generation: Generation, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let idle = self.state.withLock { state in
                        if state.inFlight[generation, default: 0] == 0 { return true }
                        state.idleWaiters[generation, default: []].append(continuation)
                        return false
                    }
                    if idle { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // Wake a waiter left behind by the timeout so the group can finish.
            let left = self.state.withLock { $0.idleWaiters.removeValue(forKey: generation) ?? [] }
            for waiter in left { waiter.resume() }
        }
    }
}
