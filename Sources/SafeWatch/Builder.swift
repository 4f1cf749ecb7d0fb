import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Synchronization

/// Runs the build command in the background: one at a time, cancellable as a whole process group,
/// with a timeout, and after waiting out SwiftPM's same-second race.
public final class Builder: Sendable {
    public struct Settings: Sendable {
        public var command: String
        public var projectDirectory: String
        public var binary: String
        public var timeout: Duration
        public var environment: [String: String]
        /// SwiftPM's whole-second race only concerns `swift build`; other build tools start at once.
        public var waitsOutSameSecond: Bool
    }

    private struct Running {
        var id: BuildID
        var process: ProcessHandle?
        var cancelled = false
    }

    private let launcher: ChildLauncher
    private let running = Mutex<Running?>(nil)
    /// An interrupted build (timed out or cancelled): SIGINT to its process group, as Ctrl-C would,
    /// and SIGKILL for the group if it has not stopped 3 s later.
    private let interrupt = Teardown.group(SIGINT, grace: .seconds(3))

    public init(launcher: ChildLauncher) {
        self.launcher = launcher
    }

    /// Builds and returns the outcome; `.cancelled` if `cancel` was called for this build.
    public func build(_ id: BuildID, settings: Settings, changedFiles: [String]) async -> BuildOutcome {
        self.running.withLock { $0 = Running(id: id) }
        defer { self.running.withLock { $0 = nil } }

        // SwiftPM compares whole-second mtimes: wait until the clock is past the newest edit's second.
        if settings.waitsOutSameSecond {
            let newest = changedFiles.compactMap { modificationTime(settings.projectDirectory + "/" + $0) }.max()
            let wait = sameSecondWait(now: wallClock(), newestModification: newest)
            if wait > .zero { try? await Task.sleep(for: wait) }
        }
        if self.isCancelled(id) { return .cancelled }

        let collected = Mutex<[String]>([])
        let finishedReading = AsyncStream<Void>.makeStream()
        let output: OutputPipe
        do {
            output = try OutputPipe(label: "safe-watch.build")
        } catch {
            return .failed(BuildFailure(summary: "cannot capture build output: \(error)"))
        }
        output.start(
            onLine: { line in
                collected.withLock { lines in if lines.count < 20_000 { lines.append(line) } }
            },
            onClose: { finishedReading.continuation.finish() })

        let process: ProcessHandle
        do {
            process = try await self.launcher.start(
                executable: "/bin/sh", arguments: ["-c", settings.command], environment: settings.environment,
                workingDirectory: settings.projectDirectory, output: output, deathSignal: SIGINT)
        } catch {
            return .failed(BuildFailure(summary: "cannot start the build command: \(error)"))
        }
        let cancelledBeforeStart = self.running.withLock { running -> Bool in
            running?.process = process
            return running?.cancelled ?? false
        }
        let interrupt = self.interrupt
        if cancelledBeforeStart { interrupt.start(on: [process]) }
        let pid = process.pid

        let status: ExitStatus? = await withTaskGroup(of: ExitStatus?.self) { group -> ExitStatus? in
            group.addTask { await Reaper.shared.wait(for: pid) as ExitStatus? }
            group.addTask {
                await sleepForTimeout(settings.timeout)
                return nil
            }
            let first = await group.next() ?? nil
            if let first {
                group.cancelAll()
                return first
            }
            // Timed out: interrupt the whole build, kill what is left after the grace period.
            await interrupt.run(on: process)
            _ = await group.next()
            return nil
        }
        // Output still buffered in the pipe arrives before EOF; don't wait on a grandchild that
        // keeps the pipe open.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in finishedReading.stream {} }
            group.addTask { try? await Task.sleep(for: .milliseconds(500)) }
            await group.next()
            group.cancelAll()
        }
        await Teardown.killGroup.run(on: process)  // nothing of a finished build may linger

        if self.isCancelled(id) { return .cancelled }
        let text = collected.withLock { $0.joined(separator: "\n") }
        guard let status else {
            return .failed(BuildFailure(summary: "timed out after \(settings.timeout.humanReadable) (build.timeout)"))
        }
        guard status == .exited(0) else {
            return .failed(BuildFailure.from(output: text, status: status, parser: DiagnosticsParser(root: settings.projectDirectory)))
        }
        let binary = settings.binary.hasPrefix("/") ? settings.binary : settings.projectDirectory + "/" + settings.binary
        guard access(binary, X_OK) == 0 else {
            return .failed(BuildFailure(summary: "the build succeeded but \(settings.binary) is missing or not executable; set build.binary in safe-watch.toml"))
        }
        return .succeeded
    }

    /// Interrupts build `id` (`interrupt`).
    public func cancel(_ id: BuildID) {
        let process: ProcessHandle? = self.running.withLock { running in
            guard running?.id == id else { return nil }
            running?.cancelled = true
            return running?.process
        }
        guard let process else { return }
        self.interrupt.start(on: [process])
    }

    private func isCancelled(_ id: BuildID) -> Bool {
        self.running.withLock { $0?.id == id && $0?.cancelled == true }
    }
}

/// Seconds since the epoch, with fractions.
func wallClock() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// A file's mtime in seconds since the epoch, or nil if it is gone.
func modificationTime(_ path: String) -> Double? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
}
