import CSafeWatchShims
import Dispatch
import Glibc
import Synchronization

/// What to start: a program with its arguments, environment and descriptors.
public struct SpawnRequest: Sendable {
    /// Absolute path of the program.
    public var executable: String
    /// The full argv, argv[0] included.
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    /// Descriptors for the child's stdout and stderr; nil for /dev/null.
    public var standardOutput: FileDescriptor?
    public var standardError: FileDescriptor?
    /// Descriptors that become 3, 4, … in the child (LISTEN_FDS): the listening sockets SwiftNIO
    /// serves, as NIO numbers them.
    public var passedDescriptors: [Int32]
    /// The signal the child gets when safe-watch dies (PR_SET_PDEATHSIG), 0 for none: a server or
    /// build must not outlive a safe-watch that was SIGKILLed.
    public var deathSignal: Int32
    /// Sets `LISTEN_PID` to the child's own pid (socket activation: sd_listen_fds only takes the
    /// sockets when it names the process reading it, and that pid exists only once it is spawned).
    public var setsListenPID: Bool

    public init(
        executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String? = nil, standardOutput: FileDescriptor? = nil, standardError: FileDescriptor? = nil,
        passedDescriptors: [Int32] = [], deathSignal: Int32 = 0, setsListenPID: Bool = false
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.passedDescriptors = passedDescriptors
        self.deathSignal = deathSignal
        self.setsListenPID = setsListenPID
    }
}

/// Spawns every child from one dedicated, long-lived thread.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits, not the process: a child
/// spawned from a concurrency-pool thread was killed while safe-watch lived on once the pool
/// shrank (seen here with Swift 6.x). One thread that never exits makes the signal mean "safe-watch
/// died".
public final class Spawner: Sendable {
    public static let shared = Spawner()

    private struct Job {
        var request: SpawnRequest
        var reply: @Sendable (Result<ProcessHandle, SystemError>) -> Void
    }

    private let jobs = Mutex<[Job]>([])
    private let wakeUp = DispatchSemaphore(value: 0)

    private init() {
        do throws(SystemError) {
            try startDetachedThread(named: "safe-watch.spawn") { [self] in self.loop() }
        } catch {
            preconditionFailure("cannot create the spawning thread: \(error)")
        }
    }

    /// Starts the program in its own process group, without a controlling terminal, and returns its pid. Register
    /// with `Reaper.shared` to learn how it exits.
    public func spawn(_ request: SpawnRequest) async throws(SystemError) -> pid_t {
        try await self.start(request).pid
    }

    /// `spawn`, returning a handle that stops it (`Teardown`) by its pidfd, never by a pid that may
    /// have been reaped and reused meanwhile.
    public func start(_ request: SpawnRequest) async throws(SystemError) -> ProcessHandle {
        let result: Result<ProcessHandle, SystemError> = await withCheckedContinuation { continuation in
            self.jobs.withLock { $0.append(Job(request: request, reply: { continuation.resume(returning: $0) })) }
            self.wakeUp.signal()
        }
        return try result.get()
    }

    private func loop() -> Never {
        while true {
            self.wakeUp.wait()
            let pending = self.jobs.withLock { jobs in
                defer { jobs.removeAll() }
                return jobs
            }
            for job in pending {
                job.reply(Self.spawnNow(job.request))
            }
        }
    }

    /// Room for the child to write its pid into (`sw_spawn` needs 10 characters: any pid_t).
    private static let listenPIDPlaceholder = String(repeating: "0", count: 10)

    /// Spawns on the calling thread: its exit is what PR_SET_PDEATHSIG watches (tests call it from a
    /// thread of their own that then ends).
    static func spawnNow(_ request: SpawnRequest) -> Result<ProcessHandle, SystemError> {
        var environment = request.environment
        if request.setsListenPID { environment["LISTEN_PID"] = Self.listenPIDPlaceholder }
        let argv = request.arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted(by: { $0.key < $1.key }).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        var failedStep = SW_SPAWN_PREPARE
        // The pidfd is opened before the reaper may reap the child (it can exit at once).
        let (code, handle) = Reaper.shared.withoutReaping { () -> (Int32, ProcessHandle?) in
            let code = request.passedDescriptors.withUnsafeBufferPointer { fds in
                withOptionalCString(request.workingDirectory) { cwd in
                    sw_spawn(
                        &pid, &failedStep, request.executable, argv, envp, cwd, -1,
                        request.standardOutput?.rawValue ?? -1, request.standardError?.rawValue ?? -1,
                        fds.baseAddress, Int32(fds.count), request.deathSignal, request.setsListenPID ? 1 : 0)
                }
            }
            return (code, code == 0 ? ProcessHandle.openSpawned(pid) : nil)
        }
        guard code == 0, let handle else {
            // sw_spawn returns its error rather than setting errno.
            return .failure(Self.failure(Errno(rawValue: code), at: failedStep, request))
        }
        return .success(handle)
    }

    /// The error of a spawn that failed at `step`, named after the call that failed there.
    private static func failure(_ errno: Errno, at step: sw_spawn_step, _ request: SpawnRequest) -> SystemError {
        switch step {
        case SW_SPAWN_EXEC: SystemError(call: SystemError.execCall, errno: errno, context: request.executable)
        case SW_SPAWN_WORKING_DIRECTORY: SystemError(call: "chdir", errno: errno, context: request.workingDirectory ?? "")
        case SW_SPAWN_DESCRIPTORS: SystemError(call: "dup2", errno: errno, context: request.executable)
        case SW_SPAWN_SESSION: SystemError(call: "setpgid", errno: errno, context: request.executable)
        case SW_SPAWN_DEATH_SIGNAL: SystemError(call: "prctl(PR_SET_PDEATHSIG)", errno: errno, context: request.executable)
        default: SystemError(call: "spawn", errno: errno, context: request.executable)
        }
    }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

/// Makes safe-watch a child subreaper: orphans of its children (a server that daemonizes) are
/// reparented to it, not to init, so they are still tracked, stopped and reaped.
public func becomeChildSubreaper() throws(SystemError) {
    try Syscall.retrying("prctl(PR_SET_CHILD_SUBREAPER)") { sw_set_child_subreaper() }
}
