import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import TestSupport
import Testing

/// Conditions real projects bring and a one-second toy server never shows: slow starts, starts
/// that never end, a server frozen by SIGSTOP, state deleted under safe-watch, a fresh checkout
/// whose first build writes Package.resolved, safe-watch's own writes.
extension SupervisorIntegrationTests {

    /// A server that warms up for 40 s (migrations, caches) becomes gen 1; safe-watch neither
    /// gives up early nor traps (the probe pause used to overflow after ~7 s).
    @Test func aServerThatTakesFortySecondsToStartIsWaitedFor() async throws {
        let configuration = """
            [run]
            env = { HELLO_STARTUP_DELAY = "40" }
            [health]
            startup_timeout = "120s"
            """
        let (safeWatch, _) = try await self.start(version: "slow-40", configuration: configuration)
        let port = try #require(await safeWatch.publicPort(), "\(safeWatch.output)")
        try #require(await safeWatch.log.waitForLine(containing: "▸ gen 1 starting") != nil, "\(safeWatch.output)")
        let startedAt = ContinuousClock.now
        let healthy = await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", limit: .seconds(100))
        #expect(healthy != nil, "\(safeWatch.output)")
        #expect(ContinuousClock.now - startedAt >= .seconds(39))
        #expect(await body(port: port) == "hello-server slow-40\n")
        #expect(!safeWatch.output.contains("Fatal error"), "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    /// A start that never ends is given up at startup_timeout, the candidate is stopped, and
    /// safe-watch carries on: it answers `status` and builds the next edit.
    @Test func aStartThatNeverEndsIsGivenUpAndSafeWatchCarriesOn() async throws {
        let configuration = """
            [run]
            env = { HELLO_STARTUP_DELAY = "3600" }
            [health]
            startup_timeout = "12s"
            """
        let (safeWatch, directory) = try await self.start(version: "never-ends", configuration: configuration)
        let discarded = await safeWatch.log.waitForLine(containing: "gen 1 discarded", limit: .seconds(100))
        #expect(discarded?.contains("not healthy within startup_timeout 12.0 s") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "gen 1 stopped") != nil, "\(safeWatch.output)")
        let (code, status) = try await run(Paths.safeWatch, ["status", "--project", directory], in: "/")
        #expect(code == .exited(0), "\(status)")
        #expect(status.contains("gen 1 discarded") || status.contains("not healthy within"), "\(status)")
        // The next edit is built and launched as usual.
        let mark = safeWatch.log.count
        try setVersion("never-ends-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "▸ gen 2 starting", after: mark) != nil, "\(safeWatch.output)")
        #expect(!safeWatch.output.contains("Fatal error"), "\(safeWatch.output)")
        let stopped = await safeWatch.terminate()
        #expect(stopped == .exited(0), "\(safeWatch.output)")
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
    }

    /// A candidate that exits before it is healthy (a framework that ignored PORT and found its
    /// own port taken) is no longer probed: its probing ended with it. Every probe here leaves a
    /// line in a file, so probes after the discard would show.
    @Test func aCandidateThatExitsBeforeItIsHealthyIsProbedNoMore() async throws {
        let directory = try await Fixture.shared.reset(version: "exits-early")
        let probeLog = directory + "/probes.log"
        let configuration = """
            [run]
            env = { HELLO_EXIT_IMMEDIATELY = "1" }
            [health]
            type = "exec"
            command = "echo probe >> '\(probeLog)'; exit 1"
            interval = "20ms"
            """
        try configuration.save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let discarded = await safeWatch.log.waitForLine(containing: "gen 1 discarded")
        #expect(discarded?.contains("exited (exit status 3) before it became healthy") == true, "\(safeWatch.output)")
        // Whatever probe was running at the exit finishes; after that, 50 intervals without one.
        func probes() -> Int { ((try? String(contentsOfFile: probeLog, encoding: .utf8)) ?? "").split(separator: "\n").count }
        var settled = probes()
        var quietSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now - quietSince < .seconds(1), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            let now = probes()
            if now != settled {
                settled = now
                quietSince = ContinuousClock.now
            }
        }
        #expect(ContinuousClock.now < deadline, "probing went on after the candidate exited: \(probes()) probes")
        #expect(!safeWatch.output.contains("Fatal error"), "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    /// `rm -rf .safe-watch` (or `git clean -fdx`) while serving: safe-watch says so, makes the
    /// directory again with its lock and control socket, builds a generation it can restart, and
    /// a crash after that is restarted from a binary that exists.
    @Test func deletingTheStateDirectoryWhileServingIsNoticedAndRepaired() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "state-1")
        let mark = safeWatch.log.count
        try FileManager.default.removeItem(atPath: directory + "/.safe-watch")
        let noticed = await safeWatch.log.waitForLine(containing: ".safe-watch was deleted", after: mark)
        #expect(noticed?.contains("still serving gen 1") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "build 2 started (.safe-watch was deleted)", after: mark) != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server state-1\n")
        #expect(FileManager.default.fileExists(atPath: directory + "/.safe-watch/lock"))
        let status = try await self.status(of: directory)
        #expect(status.pid == safeWatch.pid)
        let pid = try #require(status.active?.pid, "\(status)")
        // A second safe-watch is refused again: the lock came back.
        let (secondCode, secondOutput) = try await runAsAccount(
            Paths.safeWatch, ["run", "--project", directory, "--listen", "127.0.0.1:0"], in: "/")
        #expect(secondCode == .exited(69) && secondOutput.contains("already running"), "\(secondOutput)")
        // A crash now restarts gen 2 from its staged binary.
        let crash = safeWatch.log.count
        kill(pid, SIGKILL)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: crash) != nil, "\(safeWatch.output)")
        #expect(!safeWatch.output.contains("No such file"), "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server state-1\n")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    /// A server frozen with SIGSTOP holds its requests; after SIGCONT they are answered, and
    /// safe-watch neither crashed nor replaced it meanwhile.
    @Test func aServerStoppedAndContinuedAnswersWhatWaited() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "frozen-1")
        let status = try await self.status(of: directory)
        let pid = try #require(status.active?.pid, "\(status)")
        kill(pid, SIGSTOP)
        let mark = safeWatch.log.count
        let waiting = Task { await httpGet(port: port, "/") }
        // The request reaches the frozen server's queue (its connection is accepted by the kernel).
        #expect(await waitUntil(limit: .seconds(10)) { tcpConnections(toPortOf: pid) > 0 })
        kill(pid, SIGCONT)
        guard case .success(let response) = await waiting.value else {
            Issue.record("the request that waited failed: \(safeWatch.output)")
            return
        }
        #expect(response.status == 200 && response.body == "hello-server frozen-1\n")
        #expect(try await self.status(of: directory).active?.pid == pid)
        #expect(!safeWatch.log.all.dropFirst(mark).contains { $0.contains("exited") || $0.contains("restarting") }, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    /// A fresh checkout with a dependency and no Package.resolved: `swift build` writes one during
    /// the first build. That write is the build's own output, not an edit: the first build is not
    /// cancelled, and the next build is the one the next edit starts.
    @Test func theFirstBuildOfAFreshCheckoutDoesNotCancelItself() async throws {
        let root = makeTemporaryDirectory("fresh-checkout")
        let dependency = root + "/greeting"
        try createAccountDirectory(dependency + "/Sources/Greeting")
        try """
            // swift-tools-version:6.0
            import PackageDescription
            let package = Package(name: "greeting", products: [.library(name: "Greeting", targets: ["Greeting"])],
                targets: [.target(name: "Greeting")])
            """.save(to: dependency + "/Package.swift")
        try "public let greeting = \"hello\"\n".save(to: dependency + "/Sources/Greeting/Greeting.swift")
        for command in ["git init -q", "git add -A", "git -c user.name=t -c user.email=t@t commit -qm 1", "git tag 1.0.0"] {
            let (code, output) = try await runAsAccount("/bin/sh", ["-c", command], in: dependency)
            try #require(code == .exited(0), "\(command): \(output)")
        }
        let project = root + "/server"
        try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Examples/hello-server", toPath: project)
        giveTreeToAccount(project)
        try? FileManager.default.removeItem(atPath: project + "/.build")
        try? FileManager.default.removeItem(atPath: project + "/Package.resolved")
        let manifest = try String(contentsOfFile: project + "/Package.swift", encoding: .utf8)
            .replacingOccurrences(of: "    targets: [", with: "    dependencies: [.package(url: \"file://\(dependency)\", from: \"1.0.0\")],\n    targets: [")
            .replacingOccurrences(
                of: ".executableTarget(name: \"hello-server\", path: \"Sources/hello-server\")",
                with: ".executableTarget(name: \"hello-server\", dependencies: [.product(name: \"Greeting\", package: \"greeting\")], path: \"Sources/hello-server\")")
        try #require(manifest.contains("Greeting"), "the example's manifest changed shape:\n\(manifest)")
        try manifest.save(to: project + "/Package.swift")
        try setVersion("fresh-1", in: project)

        let safeWatch = try await SafeWatchProcess(["run", "--project", project, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort(), "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", limit: .seconds(300)) != nil, "\(safeWatch.output)")
        #expect(FileManager.default.fileExists(atPath: project + "/Package.resolved"))
        let mark = safeWatch.log.count
        try setVersion("fresh-2", in: project)
        let next = await safeWatch.log.waitForLine(containing: "▸ build", after: mark)
        #expect(next?.contains("build 2 started (Sources/hello-server/Version.swift changed)") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server fresh-2\n")
        #expect(!safeWatch.output.contains("cancelled"), "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    /// safe-watch applies a migration and records it in migrations/safe-watch.sum: its own write
    /// starts no second build. The next build is the next edit's.
    @Test func safeWatchsOwnSumFileWriteIsNotAnEdit() async throws {
        let directory = try await Fixture.shared.reset(version: "sum-1")
        let database = makeTemporaryDirectory("sum-db") + "/dev.db"
        try createAccountDirectory(directory + "/migrations")
        try "CREATE TABLE users (id integer PRIMARY KEY);\n".save(to: directory + "/migrations/0001_users.sql")
        try "[migrations]\ndatabase_url = \"sqlite:\(database)\"\napply = \"safe-watch\"\n"
            .save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
        #expect(await safeWatch.log.waitForLine(containing: "applied 0001_users.sql") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        #expect(FileManager.default.fileExists(atPath: directory + "/migrations/safe-watch.sum"))
        let mark = safeWatch.log.count
        try setVersion("sum-2", in: directory)
        let next = await safeWatch.log.waitForLine(containing: "▸ build", after: mark)
        #expect(next?.contains("build 2 started (Sources/hello-server/Version.swift changed)") == true, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }
}

/// Established TCP connections on the ports `pid` listens on (from /proc/net/tcp): a request
/// that reached a frozen server's accept queue.
func tcpConnections(toPortOf pid: pid_t) -> Int {
    let ports = Set(ListeningSockets.listeningTCP().filter { ListeningSockets.socketInodes(of: pid).contains($0.inode) }.map(\.port))
    guard !ports.isEmpty, let table = readProcFile("/proc/net/tcp") else { return 0 }
    var count = 0
    for line in table.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ")
        guard fields.count > 3, fields[3] == "01" else { continue }  // ESTABLISHED
        let local = fields[1].split(separator: ":")
        if local.count == 2, let port = Int(local[1], radix: 16), ports.contains(port) { count += 1 }
    }
    return count
}
