import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Synchronization
import TestSupport

/// Swift Testing has an `ExitStatus` of its own (exit tests).
typealias ExitStatus = SafeWatchProcesses.ExitStatus

/// Where the package and its built products are.
enum Paths {
    /// The package root (this file is Tests/IntegrationTests/Harness.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The safe-watch binary built beside the test bundle, or a copy of it the test account can run.
    static let safeWatch: String = {
        let built = builtSafeWatch
        guard case .success(let account?) = TestAccount.current, !everyoneCanRun(built) else { return built }
        // A checkout only root can enter (a clone under /root): the account runs a copy, which
        // needs nothing beside it (the toolchain's libraries are found by absolute rpath).
        let directory = makeTemporaryDirectory("safe-watch-bin")
        chmod(directory, 0o755)
        let copy = directory + "/safe-watch"
        guard (try? FileManager.default.copyItem(atPath: built, toPath: copy)) != nil else { return built }
        _ = lchown(copy, account.uid, account.gid)
        return copy
    }()

    private static let builtSafeWatch: String = {
        let testBinary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: testBinary).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("safe-watch").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return packageRoot + "/.build/debug/safe-watch"
    }()

    /// Whether any user may run `path`: it and every directory above it are executable by others.
    static func everyoneCanRun(_ path: String) -> Bool {
        var current = path
        while current != "/" && !current.isEmpty {
            var info = stat()
            guard stat(current, &info) == 0, info.st_mode & S_IXOTH != 0 else { return false }
            current = (current as NSString).deletingLastPathComponent
        }
        return true
    }
}

/// A private temporary directory, the test account's (mkdtemp makes it 0700 and the tests' own).
func makeTemporaryDirectory(_ prefix: String = "safe-watch-it") -> String {
    var bytes = Array((NSTemporaryDirectory() + prefix + "-XXXXXX").utf8CString)
    _ = mkdtemp(&bytes)
    let directory = bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    giveToAccount(directory)
    return directory
}

/// The unprivileged account the integration tests run safe-watch as. Users are not root: a success
/// only root gets (a socket option that needs CAP_NET_ADMIN, a directory only root may write) must
/// fail a test, not hide behind the suite's privileges.
///
/// Run by a developer (not root), the tests run safe-watch as that developer and `current` is nil.
/// Run as root (CI; some tests need root for namespaces, mounts and a systemd user manager),
/// safe-watch drops to the system account `safe-watch-test`, which script/test creates. The tests do
/// not create it themselves: adding an account to the machine is for the test command, not for a
/// `swift test` someone runs by hand, so a missing one fails with the command that creates it.
struct TestAccount: Sendable {
    static let name = "safe-watch-test"
    static let createCommand =
        "useradd --system --create-home --home-dir /var/lib/\(name) --shell /usr/sbin/nologin --user-group \(name)"

    let uid: uid_t
    let gid: gid_t
    let home: String

    static let current: Result<TestAccount?, HarnessError> = {
        guard geteuid() == 0 else { return .success(nil) }
        guard let entry = getpwnam(name) else {
            return .failure(
                HarnessError(
                    "the integration tests run safe-watch as the unprivileged account \(name), which does not exist: run script/test (it creates it) or `\(createCommand)`"
                ))
        }
        return .success(TestAccount(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid, home: String(cString: entry.pointee.pw_dir)))
    }()

    /// The account, nil when the tests are not root; throws when root has no account to drop to.
    static func required() throws -> TestAccount? { try current.get() }

    /// `command` run as the account: setpriv (util-linux) sets the real and effective ids and the
    /// account's groups, then execs it, so the pid is the command's own.
    func command(_ command: [String]) -> [String] {
        ["/usr/bin/setpriv", "--reuid=\(self.uid)", "--regid=\(self.gid)", "--init-groups", "--"] + command
    }

    /// `base` as a login as the account would have it: its HOME (`swift build` writes its caches
    /// there), its names, and none of root's per-session directories.
    func environment(_ base: [String: String]) -> [String: String] {
        var environment = base
        environment["HOME"] = self.home
        environment["USER"] = TestAccount.name
        environment["LOGNAME"] = TestAccount.name
        for variable in ["XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "DBUS_SESSION_BUS_ADDRESS"] {
            environment[variable] = nil
        }
        return environment
    }
}

/// Gives `path` (not what it holds) to the test account; nothing to do when the tests are not root.
func giveToAccount(_ path: String) {
    guard case .success(let account?) = TestAccount.current else { return }
    _ = lchown(path, account.uid, account.gid)
}

/// Gives `directory` and everything under it to the test account.
func giveTreeToAccount(_ directory: String) {
    guard case .success(let account?) = TestAccount.current else { return }
    _ = lchown(directory, account.uid, account.gid)
    guard let entries = FileManager.default.enumerator(atPath: directory) else { return }
    for case let entry as String in entries {
        _ = lchown(directory + "/" + entry, account.uid, account.gid)
    }
}

/// Creates `path` and its missing parents for the test account, as the account's own editor would.
func createAccountDirectory(_ path: String) throws {
    var missing: [String] = []
    var current = path
    while !current.isEmpty, current != "/", !FileManager.default.fileExists(atPath: current) {
        missing.append(current)
        current = (current as NSString).deletingLastPathComponent
    }
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    for directory in missing { giveToAccount(directory) }
}

extension String {
    /// Writes the text to `path` (by default atomically, as editors save) as a file of the test
    /// account's.
    func save(to path: String, atomically: Bool = true) throws {
        try self.write(toFile: path, atomically: atomically, encoding: .utf8)
        giveToAccount(path)
    }
}

/// A copy of Examples/hello-server built once per test run and shared by the serialized suites.
actor Fixture {
    static let shared = Fixture()

    private var prepared: String?

    /// The fixture's directory, copied and built on first use.
    /// The copy and its build belong to the test account, which builds it, as a user's checkout.
    func directory() async throws -> String {
        if let prepared { return prepared }
        let directory = makeTemporaryDirectory("hello-fixture")
        try FileManager.default.removeItem(atPath: directory)
        try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Examples/hello-server", toPath: directory)
        try? FileManager.default.removeItem(atPath: directory + "/.build")
        giveTreeToAccount(directory)
        let (status, output) = try await runAsAccount("/bin/sh", ["-c", "swift build 2>&1"], in: directory)
        guard status == .exited(0) else { throw HarnessError("building the fixture failed: \(output)") }
        self.prepared = directory
        return directory
    }

    /// Resets the fixture's sources and configuration, and returns its directory.
    func reset(version: String) async throws -> String {
        let directory = try await self.directory()
        // The few tests that run safe-watch as root (under a systemd user manager) leave root's files
        // in .build and .safe-watch: the account's next run must find its own tree again.
        giveTreeToAccount(directory)
        try setVersion(version, in: directory)
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
        try? FileManager.default.removeItem(atPath: directory + "/migrations")
        return directory
    }
}

func setVersion(_ version: String, in directory: String) throws {
    try versionSource(version).save(to: directory + "/Sources/hello-server/Version.swift")
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

/// Runs a program to completion as the test account (as the developer when the tests are not
/// root), with the account's environment.
func runAsAccount(_ executable: String, _ arguments: [String], in directory: String, environment: [String: String]? = nil) async throws -> (ExitStatus, String) {
    let base = environment ?? ProcessInfo.processInfo.environment
    guard let account = try TestAccount.required() else { return try await run(executable, arguments, in: directory, environment: base) }
    let command = account.command([executable] + arguments)
    return try await run(command[0], Array(command.dropFirst()), in: directory, environment: account.environment(base))
}

/// Who a `SafeWatchProcess` runs as.
enum RunAs: Sendable {
    /// The unprivileged test account (the developer when the tests are not root): every test that
    /// can, as users run safe-watch.
    case account
    /// root, for what only root can do; `because` says what, where the test is written.
    case root(because: String)
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

    /// Starts safe-watch with `arguments` as `user`; `environment` is added to ours. `namespace` runs
    /// first, as root, and execs the rest (`unshare --pid …` needs root; safe-watch inside it need
    /// not); `wrapper` runs next, as `user`, and execs safe-watch (`systemd-socket-activate -l …`);
    /// `journalStream` sets JOURNAL_STREAM to safe-watch's stderr, as systemd does for a service.
    init(
        _ arguments: [String], environment: [String: String] = [:], directory: String? = nil, namespace: [String] = [],
        wrapper: [String] = [], journalStream: Bool = false, as user: RunAs = .account
    ) async throws {
        var account: TestAccount?
        if case .account = user { account = try TestAccount.required() }
        Reaper.shared.start()
        let output = try OutputPipe()
        let log = LineLog()
        let (closed, finishClosed) = AsyncStream<Void>.makeStream()
        output.start(onLine: { log.append($0) }, onClose: { finishClosed.finish() })
        self.outputClosed = Task { for await _ in closed {} }
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        // The tests may run inside a service (a CI runner's unit): safe-watch is not one unless a
        // test says so.
        env["INVOCATION_ID"] = nil
        env["NOTIFY_SOCKET"] = nil
        env.merge(environment) { $1 }
        if journalStream {
            var status = stat()
            fstat(output.writeEnd?.rawValue ?? -1, &status)
            env["JOURNAL_STREAM"] = "\(status.st_dev):\(status.st_ino)"
        }
        var command = wrapper + [Paths.safeWatch] + arguments
        if let account {
            env = account.environment(env)
            command = account.command(command)
            // A service manager's notify socket is the user's own (a user manager's is): the one a
            // test stands in for it with was bound by root.
            if let notify = env["NOTIFY_SOCKET"], notify.hasPrefix("/") { giveToAccount(notify) }
        }
        command = namespace + command
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

    /// Its descendants now, to check once it has exited: by then they have another parent, so its
    /// process tree says nothing about what it left behind.
    var descendantIdentities: [ProcessIdentity] { self.descendants.compactMap(ProcessIdentity.init) }

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
        await exitStatus(of: self.pid, exit: self.exit, outputClosed: self.outputClosed, limit: limit)
    }

    var output: String { self.log.all.joined(separator: "\n") }
}

/// A process as /proc shows it: its pid and start time, so that a pid the kernel hands to another
/// process later is not taken for it.
struct ProcessIdentity: Hashable, CustomStringConvertible {
    var pid: pid_t
    var startTime: UInt64
    var command: String

    init?(_ pid: pid_t) {
        guard let (_, startTime) = Self.stat(pid) else { return nil }
        self.pid = pid
        self.startTime = startTime
        let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
        self.command = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
    }

    /// The same process is still there, and not a zombie waiting for its parent to reap it.
    var isRunning: Bool {
        guard let (state, startTime) = Self.stat(self.pid) else { return false }
        return startTime == self.startTime && state != "Z"
    }

    var description: String { "\(self.pid) (\(self.command))" }

    /// The state letter and start time (fields 3 and 22 of /proc/PID/stat).
    private static func stat(_ pid: pid_t) -> (Substring, UInt64)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let startTime = UInt64(fields[19]) else { return nil }
        return (fields[0], startTime)
    }
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

/// A child's exit status once it has exited and its output has been read to the end; nil, and the
/// child killed, after `limit`.
func exitStatus(
    of pid: pid_t, exit: Task<ExitStatus, Never>, outputClosed: Task<Void, Never>, limit: Duration
) async -> ExitStatus? {
    let status = await result(within: limit) { () -> ExitStatus? in
        let status = await exit.value
        await outputClosed.value
        return status
    }
    if status == nil { kill(pid, SIGKILL) }
    return status
}
