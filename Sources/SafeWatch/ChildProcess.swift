import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// How safe-watch starts its children: each in its own process group without a controlling
/// terminal, with a parent-death signal so that none outlives a safe-watch that was killed
/// (`Spawner`, `sw_spawn`).
public struct ChildLauncher: Sendable {
    public init() {}

    /// Spawns `executable` in its own process group; stdout and stderr go to `output`. With
    /// `setsListenPID`, `LISTEN_PID` is the child's own pid (socket mode hands it sockets).
    public func spawn(
        executable: String, arguments: [String], environment: [String: String], workingDirectory: String?,
        output: OutputPipe?, deathSignal: Int32, passedDescriptors: [Int32] = [], setsListenPID: Bool = false
    ) async throws(SystemError) -> pid_t {
        try await self.start(
            executable: executable, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            output: output, deathSignal: deathSignal, passedDescriptors: passedDescriptors, setsListenPID: setsListenPID
        ).pid
    }

    /// `spawn`, returning the handle a `Teardown` stops it with.
    public func start(
        executable: String, arguments: [String], environment: [String: String], workingDirectory: String?,
        output: OutputPipe?, deathSignal: Int32, passedDescriptors: [Int32] = [], setsListenPID: Bool = false
    ) async throws(SystemError) -> ProcessHandle {
        let request = SpawnRequest(
            executable: executable, arguments: [executable] + arguments, environment: environment,
            workingDirectory: workingDirectory, standardOutput: output?.writeEnd, standardError: output?.writeEnd,
            passedDescriptors: passedDescriptors, deathSignal: deathSignal, setsListenPID: setsListenPID)
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
