import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// How safe-watch starts its children: through its own hidden `__exec-child` mode when it knows
/// its executable (parent-death signal, LISTEN_PID), directly otherwise (tests of adapters).
public struct ChildLauncher: Sendable {
    /// safe-watch's own executable, or nil to exec programs directly.
    public var selfExecutable: String?

    public init(selfExecutable: String?) {
        self.selfExecutable = selfExecutable
    }

    /// Spawns `executable` in its own process group; stdout and stderr go to `output`.
    public func spawn(
        executable: String, arguments: [String], environment: [String: String], workingDirectory: String?,
        output: OutputPipe?, deathSignal: Int32, passedDescriptors: [Int32] = []
    ) async throws(SystemError) -> pid_t {
        try await self.start(
            executable: executable, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            output: output, deathSignal: deathSignal, passedDescriptors: passedDescriptors
        ).pid
    }

    /// `spawn`, returning the handle a `Teardown` stops it with.
    public func start(
        executable: String, arguments: [String], environment: [String: String], workingDirectory: String?,
        output: OutputPipe?, deathSignal: Int32, passedDescriptors: [Int32] = []
    ) async throws(SystemError) -> ProcessHandle {
        var argv = [executable] + arguments
        var program = executable
        if let selfExecutable {
            argv = ExecChild.arguments(
                selfExecutable: selfExecutable, deathSignal: deathSignal, executable: executable, arguments: arguments)
            program = selfExecutable
        }
        let request = SpawnRequest(
            executable: program, arguments: argv, environment: environment, workingDirectory: workingDirectory,
            standardOutput: output?.writeEnd, standardError: output?.writeEnd, passedDescriptors: passedDescriptors)
        defer { output?.closeWriteEnd() }
        return try await Spawner.shared.start(request)
    }
}

/// The environment children inherit: ours, minus what belongs to safe-watch's own supervisor
/// (systemd's notify socket and sockets must never reach a server by accident).
public func inheritedEnvironment() -> [String: String] {
    var environment: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    for name in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "LISTEN_PIDFDID", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        environment.removeValue(forKey: name)
    }
    return environment
}
