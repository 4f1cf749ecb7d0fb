import Glibc
import SafeWatchCore
import Synchronization

/// One running server process of a generation, and what the runtime knows about it.
final class ServerProcess: Sendable {
    let generation: Generation
    let pid: pid_t
    /// The private port in proxy mode (in socket mode the health port, if the check needs one),
    /// the public one in restart mode.
    let port: Int?
    private let state = Mutex<(status: ExitStatus?, waiters: [CheckedContinuation<ExitStatus, Never>], ready: Bool)>((nil, [], false))

    init(generation: Generation, pid: pid_t, port: Int?) {
        self.generation = generation
        self.pid = pid
        self.port = port
    }

    /// The process sent READY=1 on its notify socket.
    var isReady: Bool { self.state.withLock { $0.ready } }

    func markReady() {
        self.state.withLock { $0.ready = true }
    }

    var hasExited: Bool { self.state.withLock { $0.status != nil } }

    /// Called once, by the reaper's waiter.
    func exited(_ status: ExitStatus) {
        let waiters = self.state.withLock { state in
            state.status = status
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// Waits for the exit, however many callers ask.
    func waitForExit() async -> ExitStatus {
        await withCheckedContinuation { continuation in
            let status: ExitStatus? = self.state.withLock { state in
                if let status = state.status { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }
}
