import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import Synchronization
import TestSupport

/// Swift Testing has an `ExitStatus` of its own (exit tests).
typealias ExitStatus = SafeWatchCore.ExitStatus

/// Where the package and its built products are.
enum Paths {
    /// The package root (this file is Tests/IntegrationTests/Harness.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The safe-watch binary built beside the test bundle.
    static let safeWatch: String = {
        let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: testBinary).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("safe-watch").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return packageRoot + "/.build/debug/safe-watch"
    }()
}

/// A private temporary directory.
func makeTemporaryDirectory(_ prefix: String = "safe-watch-it") -> String {
    var bytes = Array((NSTemporaryDirectory() + prefix + "-XXXXXX").utf8CString)
    _ = mkdtemp(&bytes)
    return bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// A copy of Examples/hello-server built once per test run and shared by the serialized suites.
actor Fixture {
    static let shared = Fixture()

    private var prepared: String?

    /// The fixture's directory, copied and built on first use.
    func directory() async throws -> String {
        if let prepared { return prepared }
        let directory = makeTemporaryDirectory("hello-fixture")
        try FileManager.default.removeItem(atPath: directory)
        try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Examples/hello-server", toPath: directory)
        try? FileManager.default.removeItem(atPath: directory + "/.build")
        let (status, output) = try await run("/bin/sh", ["-c", "swift build 2>&1"], in: directory)
        guard status == .exited(0) else { throw HarnessError("building the fixture failed: \(output)") }
        self.prepared = directory
        return directory
    }

    /// Resets the fixture's sources and configuration, and returns its directory.
    func reset(version: String) async throws -> String {
        let directory = try await self.directory()
        try setVersion(version, in: directory)
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
        try? FileManager.default.removeItem(atPath: directory + "/migrations")
        return directory
    }
}

func setVersion(_ version: String, in directory: String) throws {
    try versionSource(version).write(toFile: directory + "/Sources/hello-server/Version.swift", atomically: true, encoding: .utf8)
}

func versionSource(_ version: String) -> String {
    "// The version served by `GET /` and `GET /slow`.\nlet version = \"\(version)\"\n"
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a program to completion with its output captured.
func run(_ executable: String, _ arguments: [String], in directory: String, environment: [String: String]? = nil) async throws -> (ExitStatus, String) {
    Reaper.shared.start()
    let output = try OutputPipe()
    let lines = LineLog()
    let (done, finished) = AsyncStream<Void>.makeStream()
    output.start(onLine: { lines.append($0) }, onClose: { finished.finish() })
    let pid = try await Spawner.shared.spawn(
        SpawnRequest(
            executable: executable, arguments: [executable] + arguments,
            environment: environment ?? ProcessInfo.processInfo.environment, workingDirectory: directory,
            standardOutput: output.writeEnd, standardError: output.writeEnd))
    output.closeWriteEnd()
    let status = await Reaper.shared.wait(for: pid)
    for await _ in done {}
    return (status, lines.all.joined(separator: "\n"))
}

/// Lines of output.
typealias LineLog = Recorder<String>

/// A running `safe-watch` under test.
final class SafeWatchProcess: Sendable {
    let pid: pid_t
    let log: LineLog
    let exit: Task<ExitStatus, Never>
    /// Ends when every writer of safe-watch's output has closed it (all lines are in `log`).
    private let outputClosed: Task<Void, Never>

    /// Starts safe-watch with `arguments`; `environment` is added to ours. `wrapper` runs first and
    /// execs safe-watch (`systemd-socket-activate -l …`); `journalStream` sets JOURNAL_STREAM to
    /// safe-watch's stderr, as systemd does for a service.
    init(
        _ arguments: [String], environment: [String: String] = [:], directory: String? = nil, wrapper: [String] = [],
        journalStream: Bool = false
    ) async throws {
        Reaper.shared.start()
        let output = try OutputPipe()
        let log = LineLog()
        let (closed, finishClosed) = AsyncStream<Void>.makeStream()
        output.start(onLine: { log.append($0) }, onClose: { finishClosed.finish() })
        self.outputClosed = Task { for await _ in closed {} }
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env.merge(environment) { $1 }
        if journalStream {
            var status = stat()
            fstat(output.writeEnd, &status)
            env["JOURNAL_STREAM"] = "\(status.st_dev):\(status.st_ino)"
        }
        let command = wrapper + [Paths.safeWatch] + arguments
        let pid = try await Spawner.shared.spawn(
            SpawnRequest(
                executable: command[0], arguments: command, environment: env,
                workingDirectory: directory, standardOutput: output.writeEnd, standardError: output.writeEnd))
        output.closeWriteEnd()
        self.pid = pid
        self.log = log
        self.exit = Task { await Reaper.shared.wait(for: pid) }
    }

    /// The proxy's port, from the start line ("proxy mode on http://127.0.0.1:PORT").
    func publicPort() async -> Int? {
        guard let line = await self.log.waitForLine(containing: "mode on http://", limit: .seconds(60)) else { return nil }
        return line.split(separator: ":").last.flatMap { Int($0) }
    }

    /// Server pids from their "listening" lines are not known; the children of safe-watch are.
    var descendants: [pid_t] { processTree(below: self.pid) }

    func signal(_ signal: Int32) {
        kill(self.pid, signal)
    }

    /// SIGTERM and the exit status (nil if it did not exit within `limit`).
    func terminate(limit: Duration = .seconds(30)) async -> ExitStatus? {
        self.signal(SIGTERM)
        return await self.waitForExit(limit: limit)
    }

    /// The exit status once safe-watch has exited and its output has been read to the end.
    func waitForExit(limit: Duration = .seconds(30)) async -> ExitStatus? {
        let exit = self.exit
        let outputClosed = self.outputClosed
        return await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask {
                let status = await exit.value
                await outputClosed.value
                return status
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let result = await group.next() ?? nil
            group.cancelAll()
            if result == nil { kill(self.pid, SIGKILL) }
            return result
        }
    }

    var output: String { self.log.all.joined(separator: "\n") }
}

/// Every process whose parent chain leads to `root` (from /proc).
func processTree(below root: pid_t) -> [pid_t] {
    var parents: [pid_t: pid_t] = [:]
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 1, let parent = pid_t(fields[1]) { parents[pid] = parent }
    }
    var found: [pid_t] = []
    var frontier: Set<pid_t> = [root]
    while !frontier.isEmpty {
        let next = parents.filter { frontier.contains($0.value) }.map(\.key)
        found += next
        frontier = Set(next)
    }
    return found
}

/// Processes still running whose command line mentions `text`.
func processes(mentioning text: String) -> [pid_t] {
    var found: [pid_t] = []
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = pid_t(entry), pid != getpid(),
            let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
        else { continue }
        let command = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        if command.contains(text),
            let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8), !stat.contains(") Z ")
        {
            found.append(pid)
        }
    }
    return found
}
