import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Synchronization

/// One running server process of a generation, and what the runtime knows about it.
final class ServerProcess: Sendable {
    let generation: Generation
    /// Stopped through this (`Teardown`), never by its bare pid.
    let process: ProcessHandle
    var pid: pid_t { self.process.pid }
    /// The private port in proxy and tcp mode (in socket mode the health port, if the check needs one),
    /// the public one in restart mode.
    let port: Int?
    /// Its last lines of output, for saying why it died.
    let output: OutputTail
    /// How it was given its port, to say what to change when it did not take it.
    let handoff: PortHandoff
    private let state = Mutex<(status: ExitStatus?, waiters: [CheckedContinuation<ExitStatus, Never>], ready: Bool)>((nil, [], false))

    init(generation: Generation, process: ProcessHandle, port: Int?, output: OutputTail, handoff: PortHandoff) {
        self.generation = generation
        self.process = process
        self.port = port
        self.output = output
        self.handoff = handoff
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

/// The last lines a server printed (they are reported as they come; this keeps the end), and the
/// first few that `notable` picks wherever they were: a crash's backtrace can push the line that
/// says why far out of the last lines.
final class OutputTail: Sendable {
    private let kept = Mutex<(last: [String], notable: [String])>(([], []))
    private let limit: Int
    private let isNotable: @Sendable (String) -> Bool

    init(limit: Int = 20, notable isNotable: @escaping @Sendable (String) -> Bool) {
        self.limit = limit
        self.isNotable = isNotable
    }

    func append(_ line: String) {
        let notable = self.isNotable(line)
        self.kept.withLock { lines in
            lines.last.append(line)
            if lines.last.count > self.limit { lines.last.removeFirst(lines.last.count - self.limit) }
            if notable, lines.notable.count < 5 { lines.notable.append(line) }
        }
    }

    /// The notable lines, then the last ones.
    var lines: [String] { self.kept.withLock { $0.notable + $0.last } }
}
