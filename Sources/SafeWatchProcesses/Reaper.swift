import Dispatch
import Glibc
import Synchronization

/// The one place that calls `waitpid`: SIGCHLD drives a `waitpid(-1, WNOHANG)` loop that hands each
/// exit to whoever waits on that pid, and reaps orphans (we are a subreaper, and maybe PID 1).
public final class Reaper: Sendable {
    public static let shared = Reaper()

    private struct State {
        var waiters: [pid_t: [CheckedContinuation<ExitStatus, Never>]] = [:]
        /// Exits nobody waited for yet: a child can exit before `wait(for:)` is called.
        var unclaimed: [pid_t: ExitStatus] = [:]
        var unclaimedOrder: [pid_t] = []
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "safe-watch.reaper")
    private let source = Mutex<(any DispatchSourceSignal)?>(nil)
    /// Held while reaping, and by the `Spawner` from a spawn until the child's pidfd is open.
    private let reaping = Mutex(())

    private init() {}

    /// Starts reaping. Idempotent.
    public func start() {
        self.source.withLock { source in
            guard source == nil else { return }
            let signalSource = makeSignalSource(SIGCHLD, queue: self.queue) { [self] in self.reapAll() }
            source = signalSource
        }
        // A child may have exited before the source existed.
        self.queue.async { self.reapAll() }
    }

    /// Waits until `pid` has exited and been reaped.
    public func wait(for pid: pid_t) async -> ExitStatus {
        await withCheckedContinuation { continuation in
            let ready: ExitStatus? = self.state.withLock { state in
                if let status = state.unclaimed.removeValue(forKey: pid) {
                    state.unclaimedOrder.removeAll { $0 == pid }
                    return status
                }
                state.waiters[pid, default: []].append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
            // A SIGCHLD may have been coalesced with one handled before we registered.
            self.queue.async { self.reapAll() }
        }
    }

    /// Runs `body` with no child reaped meanwhile: a pid that was not reaped cannot be reused.
    func withoutReaping<Result>(_ body: () -> Result) -> Result {
        self.reaping.withLock { _ in body() }
    }

    private func reapAll() {
        self.reaping.withLock { _ in self.reapExited() }
    }

    private func reapExited() {
        while true {
            var status: Int32 = 0
            // 0: children left but none exited; ECHILD: none left.
            guard let pid = try? Syscall.retrying("waitpid", { waitpid(-1, &status, WNOHANG) }), pid > 0 else { return }
            let exit = Self.exitStatus(status)
            let waiters: [CheckedContinuation<ExitStatus, Never>] = self.state.withLock { state in
                if let waiters = state.waiters.removeValue(forKey: pid) { return waiters }
                // Keep a bounded memory of exits: orphans' exits are never claimed.
                state.unclaimed[pid] = exit
                state.unclaimedOrder.append(pid)
                if state.unclaimedOrder.count > 4096 {
                    let oldest = state.unclaimedOrder.removeFirst()
                    state.unclaimed.removeValue(forKey: oldest)
                }
                return []
            }
            for waiter in waiters { waiter.resume(returning: exit) }
        }
    }

    static func exitStatus(_ status: Int32) -> ExitStatus {
        let signal = status & 0x7f
        if signal == 0 { return .exited((status >> 8) & 0xff) }
        return .signalled(signal)
    }
}

/// A Dispatch signal source whose handler is `@Sendable` and created outside any actor: a handler
/// closure written at top level of `main.swift` compiles and then traps at run time with
/// `_dispatch_assert_queue_fail` (seen with Swift 6.x on Linux).
public func makeSignalSource(
    _ signal: Int32, queue: DispatchQueue, handler: @escaping @Sendable () -> Void
) -> any DispatchSourceSignal {
    let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
    source.setEventHandler(handler: handler)
    source.resume()
    return source
}

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT as an async stream of signal numbers. Their default actions
/// are replaced by SIG_IGN so that only the stream sees them (children get default dispositions
/// back at spawn). `onArrival` runs first, on the signal queue, whoever reads the stream (or not).
public func signalStream(
    _ signals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT], onArrival: @escaping @Sendable (Int32) -> Void = { _ in }
) -> AsyncStream<Int32> {
    let queue = DispatchQueue(label: "safe-watch.signals")
    let (stream, continuation) = AsyncStream<Int32>.makeStream()
    var sources: [any DispatchSourceSignal] = []
    for number in signals {
        Glibc.signal(number, SIG_IGN)
        sources.append(
            makeSignalSource(number, queue: queue) {
                onArrival(number)
                continuation.yield(number)
            })
    }
    // The sources live as long as the process: cancelling a signal source while libdispatch's
    // manager thread drains its events crashed it here (SIGSEGV in _dispatch_event_loop_drain).
    signalSourcesKeptForever.withLock { $0.append(contentsOf: sources.map(SignalSourceBox.init)) }
    return stream
}

private struct SignalSourceBox: @unchecked Sendable {
    // Never touched again after creation: only kept alive.
    let source: any DispatchSourceSignal
}

private let signalSourcesKeptForever = Mutex<[SignalSourceBox]>([])
