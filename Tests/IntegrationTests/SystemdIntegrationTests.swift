import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import TestSupport
import Testing

/// One datagram safe-watch sent to its NOTIFY_SOCKET, its lines joined by " | ".
struct Datagram: Sendable {
    var at: ContinuousClock.Instant
    var text: String
}

/// A service manager's notify socket, as systemd gives one to a `Type=notify` service.
final class FakeServiceManager: Sendable {
    let path: String
    let received = Recorder<Datagram>()
    private let socket: NotifySocket

    init(directory: String) throws {
        self.path = directory + "/notify.sock"
        self.socket = try NotifySocket(path: self.path)
        let received = self.received
        self.socket.start { lines in received.append(Datagram(at: .now, text: lines.joined(separator: " | "))) }
    }

    /// The first datagram after index `from` containing `text`.
    @discardableResult
    func waitFor(_ text: String, after from: Int = 0, limit: Duration = .seconds(120)) async -> Datagram? {
        await self.received.wait(limit: limit) { $0.dropFirst(from).first { $0.text.contains(text) } }
    }

    var texts: [String] { self.received.all.map(\.text) }

    func close() { self.socket.close() }
}

/// The systemd tool that hands a program listening sockets the way a `.socket` unit does.
let socketActivate = "/usr/bin/systemd-socket-activate"

/// systemd-socket-activate passes only the variables named with -E.
func socketActivationWrapper(port: Int, name: String? = nil, environment: [String] = []) -> [String] {
    var wrapper = [socketActivate, "-l", "127.0.0.1:\(port)"]
    if let name { wrapper.append("--fdname=\(name)") }
    for variable in ["PATH", "HOME", "NO_COLOR"] + environment { wrapper += ["-E", variable] }
    return wrapper
}

/// The environment a process was started with (/proc/PID/environ).
func startEnvironment(of pid: pid_t) -> [String: String] {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return [:] }
    var environment: [String: String] = [:]
    for entry in data.split(separator: 0) {
        let text = String(decoding: entry, as: UTF8.self)
        if let equals = text.firstIndex(of: "=") { environment[String(text[..<equals])] = String(text[text.index(after: equals)...]) }
    }
    return environment
}

/// The servers safe-watch runs: its descendants executing a staged generation.
func serverPIDs(of safeWatch: SafeWatchProcess) -> [pid_t] {
    let generations = Set(safeWatch.descendants.filter { pid in
        let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return command.contains("/.safe-watch/generations/")
    })
    // A script server's fork keeps its parent's command line until it execs: not a server.
    return generations.filter { pid in parentPID(of: pid).map { !generations.contains($0) } ?? false }
}

/// The parent of `pid` (nil once it is gone).
func parentPID(of pid: pid_t) -> pid_t? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 1 ? pid_t(fields[1]) : nil
}

extension SupervisorIntegrationTests {

    @Test func tellsItsServiceManagerWhatItIsDoingAndFeedsTheWatchdog() async throws {
        let manager = try FakeServiceManager(directory: makeTemporaryDirectory("sw-notify"))
        defer { manager.close() }
        // WATCHDOG_USEC=1s: WATCHDOG=1 every 500 ms.
        let (safeWatch, port, directory) = try await startServing(
            version: "notify-1", environment: ["NOTIFY_SOCKET": manager.path, "WATCHDOG_USEC": "1000000"])
        let ready = try #require(await manager.waitFor("READY=1"), "\(manager.texts)")
        #expect(ready.text.contains("STATUS=serving gen 1"), "\(manager.texts)")
        // The first build extended the start timeout before READY=1.
        let readyIndex = manager.texts.firstIndex { $0.contains("READY=1") } ?? 0
        #expect(manager.texts.prefix(readyIndex).contains { $0.contains("EXTEND_TIMEOUT_USEC=") && $0.contains("build 1 running") })
        // safe-watch's notify socket never reaches a server.
        for server in serverPIDs(of: safeWatch) {
            #expect(startEnvironment(of: server)["NOTIFY_SOCKET"] == nil)
        }

        var mark = manager.received.count
        try setVersion("notify-2", in: directory)
        #expect(await manager.waitFor("STATUS=serving gen 1 · build 2 running", after: mark) != nil, "\(manager.texts)")
        #expect(await manager.waitFor("STATUS=serving gen 2", after: mark) != nil, "\(manager.texts)")

        mark = manager.received.count
        try (versionSource("notify-3") + "let broken: Int = \"not a number\"\n")
            .write(toFile: directory + "/Sources/hello-server/Version.swift", atomically: true, encoding: .utf8)
        let failed = await manager.waitFor("failed", after: mark)
        #expect(failed?.text == "STATUS=serving gen 2 · build 3 failed: 1 error (Sources/hello-server/Version.swift:3)", "\(manager.texts)")
        #expect(await body(port: port) == "hello-server notify-2\n")

        mark = manager.received.count
        safeWatch.signal(SIGHUP)
        let reloading = await manager.waitFor("RELOADING=1", after: mark)
        #expect(reloading?.text.contains("MONOTONIC_USEC=") == true)
        #expect(await manager.waitFor("READY=1", after: mark) != nil, "\(manager.texts)")

        // The watchdog: every interval under WATCHDOG_USEC, none much faster than half of it.
        let watchdogMark = manager.received.count
        _ = await manager.received.wait(limit: .seconds(10)) { $0.dropFirst(watchdogMark).filter { $0.text == "WATCHDOG=1" }.count >= 6 }
        let pings = manager.received.all.dropFirst(watchdogMark).filter { $0.text == "WATCHDOG=1" }.map(\.at)
        #expect(pings.count >= 6)
        let gaps = zip(pings.dropFirst(), pings).map { $0 - $1 }
        #expect(gaps.allSatisfy { $0 < .seconds(1) }, "\(gaps)")
        #expect(gaps.allSatisfy { $0 > .milliseconds(300) }, "\(gaps)")

        mark = manager.received.count
        #expect(await safeWatch.terminate() == .exited(0))
        #expect(manager.texts.dropFirst(mark).contains { $0.hasPrefix("STOPPING=1") }, "\(manager.texts)")
    }

    @Test func socketActivationInProxyMode() async throws {
        let directory = try await Fixture.shared.reset(version: "activated-proxy")
        let port = try freeLoopbackPort()
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory], wrapper: socketActivationWrapper(port: port, name: "http"))
        // Like a .socket unit, systemd-socket-activate starts safe-watch on the first connection;
        // that connection waits in the socket's queue and is answered once gen 1 serves.
        _ = await safeWatch.log.waitForLine(containing: "Listening on 127.0.0.1:\(port)", limit: .seconds(30))
        #expect(await body(port: port) == "hello-server activated-proxy\n", "\(safeWatch.output)")
        let start = await safeWatch.log.waitForLine(containing: "mode on http://", limit: .seconds(30))
        #expect(start?.contains("socket systemd socket activation · proxy mode on http://127.0.0.1:\(port)") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func socketActivationInSocketModePassesTheSocketOnWithTheServersOwnPID() async throws {
        let directory = try await Fixture.shared.reset(version: "activated-socket")
        try "[serve]\nmode = \"socket\"\n[health]\ntype = \"notify\"\n"
            .write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let port = try freeLoopbackPort()
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory], wrapper: socketActivationWrapper(port: port, name: "web"))
        _ = await safeWatch.log.waitForLine(containing: "Listening on 127.0.0.1:\(port)", limit: .seconds(30))
        #expect(await body(port: port) == "hello-server activated-socket\n", "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        let servers = serverPIDs(of: safeWatch)
        #expect(servers.count == 1)
        for server in servers {
            let environment = startEnvironment(of: server)
            #expect(environment["LISTEN_PID"] == String(server))
            #expect(environment["LISTEN_FDS"] == "1")
            #expect(environment["LISTEN_FDNAMES"] == "web")
            #expect(environment["LISTEN_PIDFDID"] == nil)
            // In socket mode with a notify check, no private port is handed out.
            #expect(environment["PORT"] == nil)
        }
        #expect(await safeWatch.terminate() == .exited(0))
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
    }

    @Test func socketModeSwapsUnderLoadAndDiscardsACandidateThatNeverSaysReady() async throws {
        let configuration = """
            [serve]
            mode = "socket"
            [health]
            type = "notify"
            startup_timeout = "3s"
            [run]
            env = { HELLO_STARTUP_DELAY = "0.5", HELLO_NO_READY = "1", HELLO_NO_READY_VERSION = "socket-silent" }
            """
        let (safeWatch, port, directory) = try await startServing(version: "socket-1", configuration: configuration)
        let pool = ClientPool(port: port, threads: 6, paths: ["/", "/slow"], keepAlive: false)
        let keepAlive = ClientPool(port: port, threads: 4, paths: ["/"], keepAlive: true)
        for generation in 2...4 {
            try setVersion("socket-\(generation)", in: directory)
            #expect(await safeWatch.log.waitForLine(containing: "✓ gen \(generation) healthy") != nil, "\(safeWatch.output)")
        }
        // A candidate that serves but never sends READY=1 is discarded; gen 4 keeps serving.
        try setVersion("socket-silent", in: directory)
        let discarded = await safeWatch.log.waitForLine(containing: "✗ gen 5 discarded")
        #expect(discarded?.contains("still serving gen 4") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "· gen 5 stopped", limit: .seconds(20)) != nil, "\(safeWatch.output)")
        let tally = await pool.stop()
        let keptAlive = await keepAlive.stop()
        #expect(tally.failures.isEmpty, "\(tally.failures.prefix(5))")
        #expect(keptAlive.failures.isEmpty, "\(keptAlive.failures.prefix(5))")
        #expect(tally.ok > 100 && keptAlive.ok > 100)
        #expect(tally.bodies.isSuperset(of: ["hello-server socket-1\n", "hello-server socket-4\n"]), "\(tally.bodies)")
        #expect(await body(port: port) == "hello-server socket-4\n")
        let children = safeWatch.descendantIdentities
        #expect(!children.isEmpty, "gen 4 should be running under safe-watch")
        #expect(await safeWatch.terminate() == .exited(0))
        #expect(children.filter(\.isRunning).isEmpty, "left running: \(children.filter(\.isRunning))")
    }

    @Test func socketModeSaysWhenTheServerBindsItsOwnPort() async throws {
        let directory = try await Fixture.shared.reset(version: "socket-own-port")
        // hello-server given --port listens there beside the socket it was passed.
        try "[serve]\nmode = \"socket\"\n[health]\ntype = \"notify\"\n[run]\nargs = [\"--port\", \"0\"]\n"
            .write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let discarded = await safeWatch.log.waitForLine(containing: "✗ gen 1 discarded")
        #expect(discarded?.contains("itself instead of serving on the socket passed as fd 3 (LISTEN_FDS)") == true, "\(safeWatch.output)")
        #expect(discarded?.contains("listens on 127.0.0.1:") == true, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
    }

    @Test func badServiceEnvironmentIsSaidAndServingGoesOn() async throws {
        // LISTEN_PID of another process, a malformed WATCHDOG_USEC, a journal stream without journald.
        let directory = try await Fixture.shared.reset(version: "bad-env")
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory, "--listen", "127.0.0.1:0"],
            environment: ["LISTEN_FDS": "1", "LISTEN_PID": "1", "WATCHDOG_USEC": "twenty", "NOTIFY_SOCKET": "/nonexistent/notify.sock"],
            journalStream: !Journal.isAvailable)
        let port = try #require(await safeWatch.publicPort(), "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "LISTEN_PID=1 names another process") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "WATCHDOG_USEC=\"twenty\" is not a positive number") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server bad-env\n")
        #expect(await safeWatch.terminate() == .exited(0))
        // Without journald the terminal format goes to stderr: nothing lost.
        #expect(safeWatch.log.all.contains { $0.hasSuffix("✓ stopped") })
    }

    @Test func socketNamesThatDoNotMatchTheConfigurationStopWithTheFix() async throws {
        let directory = try await Fixture.shared.reset(version: "bad-name")
        try "[serve]\nsocket_name = \"api\"\n".write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let port = try freeLoopbackPort()
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory], wrapper: socketActivationWrapper(port: port, name: "http"))
        _ = await safeWatch.log.waitForLine(containing: "Listening on 127.0.0.1:\(port)", limit: .seconds(30))
        let trigger = try connectLoopback(port: port)  // the connection that starts safe-watch
        defer { close(trigger) }
        #expect(await safeWatch.waitForExit() == .exited(78))
        #expect(
            safeWatch.output.contains(
                "systemd passed sockets named \"http\", but serve.socket_name is \"api\": set FileDescriptorName=api in the .socket unit, or change serve.socket_name"),
            "\(safeWatch.output)")
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
    }
}

@Suite struct SystemdUnitFileTests {
    /// `systemd-analyze verify`, system and --user (XDG_RUNTIME_DIR a private 0700 directory).
    func verify(_ files: [String], user: Bool) async throws -> (ExitStatus, String) {
        var environment = ProcessInfo.processInfo.environment
        if user {
            let runtime = makeTemporaryDirectory("sw-xdg")
            chmod(runtime, 0o700)
            environment["XDG_RUNTIME_DIR"] = runtime
        }
        return try await run("/usr/bin/systemd-analyze", ["verify"] + (user ? ["--user"] : []) + files, in: "/", environment: environment)
    }

    @Test func initWritesUnitsThatVerifyAndRefusesToOverwrite() async throws {
        let project = try await Fixture.shared.directory()
        let units = makeTemporaryDirectory("sw-units")
        let (status, output) = try await run(Paths.safeWatch, ["init", "--systemd", "--unit-directory", units], in: project)
        #expect(status == .exited(0), "\(output)")
        #expect(output.contains("systemctl --user enable --now safe-watch.socket safe-watch.service"), "\(output)")
        let service = try String(contentsOfFile: units + "/safe-watch.service", encoding: .utf8)
        let binary = URL(fileURLWithPath: Paths.safeWatch).resolvingSymlinksInPath().path
        #expect(service.contains("ExecStart=\(binary) run --project \(project)\n"), "\(service)")
        #expect(service.contains("WorkingDirectory=\(project)\n"))
        #expect(service.contains("Type=notify\n") && service.contains("FileDescriptorStoreMax="))
        // A wedged safe-watch is killed for real (Swift's backtracer survives SIGABRT), its servers
        // drain, and nothing forbids the restart.
        #expect(service.contains("WatchdogSignal=SIGKILL\n") && service.contains("KillMode=process\n") && !service.contains("SendSIGKILL=no"))
        let files = [units + "/safe-watch.service", units + "/safe-watch.socket"]
        for user in [false, true] {
            let (verified, report) = try await verify(files, user: user)
            #expect(verified == .exited(0), "systemd-analyze verify\(user ? " --user" : ""): \(report)")
        }
        let (again, refusal) = try await run(Paths.safeWatch, ["init", "--systemd", "--unit-directory", units], in: project)
        #expect(again == .exited(1))
        #expect(refusal.contains("safe-watch.service exists; run again with --force to overwrite it"), "\(refusal)")
    }

    @Test func aUnitWithAMissingBinaryFailsVerification() async throws {
        // The check above can fail: verify rejects a unit whose ExecStart does not exist.
        let units = makeTemporaryDirectory("sw-units-bad")
        let text = SystemdUnits(
            executable: "/nonexistent/safe-watch", projectDirectory: "/tmp", listen: ListenAddress(host: "127.0.0.1", port: 8080), path: "/usr/bin:/bin"
        ).service
        try text.write(toFile: units + "/safe-watch.service", atomically: true, encoding: .utf8)
        let (verified, _) = try await verify([units + "/safe-watch.service"], user: false)
        #expect(verified != .exited(0))
    }

    @Test func theRepositoryUnitsAreWhatInitWrites() throws {
        let example = SystemdUnits(
            executable: "/usr/local/bin/safe-watch", projectDirectory: "/home/you/src/my-server", listen: ListenAddress(host: "127.0.0.1", port: 8080),
            path: "/usr/local/bin:/usr/bin:/bin")
        #expect(try String(contentsOfFile: Paths.packageRoot + "/systemd/safe-watch.service", encoding: .utf8) == example.service)
        #expect(try String(contentsOfFile: Paths.packageRoot + "/systemd/safe-watch.socket", encoding: .utf8) == example.socket)
    }
}

extension SupervisorIntegrationTests {

    /// Killed, safe-watch leaves its servers draining (parent-death signal); the next safe-watch
    /// gives a server that does not stop `stop_timeout`, then kills it.
    @Test func serversLeftByAKilledSafeWatchAreStoppedByTheNextOne() async throws {
        let directory = try await Fixture.shared.reset(version: "leftover")
        // A "server" that ignores SIGTERM.
        try "#!/bin/sh\ntrap '' TERM\necho stubborn server up\nwhile :; do sleep 0.1; done\n"
            .write(toFile: directory + "/stubborn.sh", atomically: true, encoding: .utf8)
        chmod(directory + "/stubborn.sh", 0o755)
        try "[build]\ncommand = \"true\"\nbinary = \"stubborn.sh\"\n[health]\ntype = \"none\"\n[run]\nstop_timeout = \"1s\"\n"
            .write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let first = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        #expect(await first.log.waitForLine(containing: "[gen 1] stubborn server up") != nil, "\(first.output)")
        let stubborn = serverPIDs(of: first)
        #expect(stubborn.count == 1)
        first.signal(SIGKILL)
        _ = await first.waitForExit()
        #expect(stubborn.allSatisfy { kill($0, 0) == 0 }, "the server ignores its parent-death SIGTERM")

        let second = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let warning = await second.log.waitForLine(containing: "servers of a previous safe-watch are still running")
        #expect(warning?.contains("pid \(stubborn.first ?? 0)") == true, "\(second.output)")
        // A pid's end gives no event to wait on from here: poll, bounded.
        var gone = false
        for _ in 0..<200 where !gone {
            try await Task.sleep(for: .milliseconds(25))
            gone = stubborn.allSatisfy { kill($0, 0) != 0 || isZombie($0) }
        }
        #expect(gone, "the old server outlived stop_timeout")
        #expect(await second.terminate() == .exited(0), "\(second.output)")
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
        try? FileManager.default.removeItem(atPath: directory + "/stubborn.sh")
    }
}

/// A process that has exited but not been reaped yet.
func isZombie(_ pid: pid_t) -> Bool {
    ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "").contains(") Z ")
}
