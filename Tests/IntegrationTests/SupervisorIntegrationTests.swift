import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// safe-watch itself, supervising a copy of Examples/hello-server with real builds, processes and
/// sockets. Serialized: the suites share one fixture directory (built once per run).
@Suite(.serialized, .timeLimit(.minutes(10))) struct SupervisorIntegrationTests {

    /// Starts safe-watch on the fixture at `version`, with `configuration` as its safe-watch.toml.
    func start(
        version: String, arguments: [String] = [], environment: [String: String] = [:], configuration: String? = nil
    ) async throws -> (SafeWatchProcess, String) {
        let directory = try await Fixture.shared.reset(version: version)
        if let configuration {
            try configuration.save(to: directory + "/safe-watch.toml")
        }
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory, "--listen", "127.0.0.1:0"] + arguments, environment: environment)
        return (safeWatch, directory)
    }

    /// Starts safe-watch on the fixture and waits until generation 1 serves.
    func startServing(
        version: String, arguments: [String] = [], environment: [String: String] = [:], configuration: String? = nil
    ) async throws -> (SafeWatchProcess, Int, String) {
        let (safeWatch, directory) = try await self.start(
            version: version, arguments: arguments, environment: environment, configuration: configuration)
        let port = try #require(await safeWatch.publicPort(), "no start line:\n\(safeWatch.output)")
        try #require(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "gen 1 never served:\n\(safeWatch.output)")
        return (safeWatch, port, directory)
    }

    @Test func editIsServedBrokenEditKeepsTheOldServerAndFixIsSwappedIn() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "edit-1")
        #expect(await body(port: port) == "hello-server edit-1\n")

        try setVersion("edit-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server edit-2\n")

        // A broken edit: the build fails, the old server keeps serving, the terminal says why.
        let mark = safeWatch.log.count
        try (versionSource("edit-3") + "let broken: Int = \"not a number\"\n")
            .save(to: directory + "/Sources/hello-server/Version.swift")
        let failure = await safeWatch.log.waitForLine(containing: "failed in", after: mark)
        #expect(failure?.contains("1 error; still serving gen 2") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "Sources/hello-server/Version.swift:3: cannot convert", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server edit-2\n")

        // The fix is built and swapped in as generation 3.
        try setVersion("edit-4", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 3 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server edit-4\n")

        let children = safeWatch.descendantIdentities
        #expect(!children.isEmpty, "gen 3 should be running under safe-watch")
        #expect(await safeWatch.terminate() == .exited(0))
        #expect(children.filter(\.isRunning).isEmpty, "left running: \(children.filter(\.isRunning))")
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
    }

    @Test func twoEditsWithinOneSecondServeTheSecond() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "race-0", arguments: ["--debounce", "20ms"])
        // Both edits land in the same wall-clock second, the second one after the build for the
        // first has been triggered: SwiftPM's whole-second mtime check would skip it. On a loaded
        // machine (CI builds Vapor beside this test on two cores) the pair can straddle a second;
        // then try again: the scenario, not the product, missed.
        let file = directory + "/Sources/hello-server/Version.swift"
        var mark = safeWatch.log.count
        var last = "race-0"
        var sameSecond = false
        var misses: [String] = []
        for attempt in 1...30 where !sameSecond {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            try await Task.sleep(for: .nanoseconds(1_000_000_000 - Int(now.tv_nsec) + 5_000_000))  // to a second's start
            mark = safeWatch.log.count
            try setVersion("race-\(attempt)a", in: directory)
            let first = modificationSecond(file)
            let firstAt = ContinuousClock.now
            clock_gettime(CLOCK_REALTIME, &now)
            let started = await safeWatch.log.waitForLine(containing: "▸ build", after: mark, limit: .milliseconds(700))
            last = "race-\(attempt)b"
            try setVersion(last, in: directory)
            sameSecond = modificationSecond(file) == first
            if !sameSecond {
                misses.append("\(attempt): first edit \(now.tv_nsec / 1_000_000) ms into its second, edits \(ContinuousClock.now - firstAt) apart, build line \(started == nil ? "not seen" : "seen")")
            }
        }
        #expect(sameSecond, "never managed two edits within one second: \(misses)")
        // Each generation swapped in from here on: the last one must serve the last edit.
        var served: String?
        var searchFrom = mark
        while served != "hello-server \(last)\n" {
            let from = searchFrom
            guard let index = await safeWatch.log.wait(limit: .seconds(90), { lines in
                lines.indices.dropFirst(from).first { lines[$0].contains("healthy") }
            }) else { break }
            searchFrom = index + 1
            served = await body(port: port)
        }
        #expect(served == "hello-server \(last)\n", "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func requestsWhileNothingServesAreHeldNotRefused() async throws {
        let directory = try await Fixture.shared.reset(version: "hold-1")
        let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort())
        // Sent while the first build runs: answered once generation 1 is healthy.
        let response = await httpGet(port: port, "/")
        #expect(try response.get().body == "hello-server hold-1\n", "\(safeWatch.output)")
        #expect(safeWatch.output.contains("✓ gen 1 healthy"))
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func crashRightAfterASwapRollsBack() async throws {
        // Only version rb-2 crashes, two seconds after it starts serving.
        let (safeWatch, port, directory) = try await startServing(
            version: "rb-1", environment: ["HELLO_CRASH_AFTER": "2", "HELLO_CRASH_VERSION": "rb-2"])
        try setVersion("rb-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "rolling back from gen 2 to gen 1") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil)
        #expect(await body(port: port) == "hello-server rb-1\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func clientPoolSeesNoFailedRequestsAcrossSwaps() async throws {
        // A 1 s startup makes old and new overlap: the candidate is probed while the old serves.
        let (safeWatch, port, directory) = try await startServing(
            version: "pool-1", environment: ["HELLO_STARTUP_DELAY": "1"])
        let fresh = ClientPool(port: port, threads: 6, paths: ["/", "/slow"], keepAlive: false)
        let kept = ClientPool(port: port, threads: 4, paths: ["/", "/slow"], keepAlive: true)
        for generation in 2...4 {
            try setVersion("pool-\(generation)", in: directory)
            #expect(await safeWatch.log.waitForLine(containing: "✓ gen \(generation) healthy") != nil, "\(safeWatch.output)")
            #expect(await safeWatch.log.waitForLine(containing: "gen \(generation - 1) stopped") != nil, "\(safeWatch.output)")
        }
        let newConnections = await fresh.stop()
        let keepAlive = await kept.stop()
        #expect(newConnections.failures.isEmpty, "\(newConnections.failures.prefix(10))")
        #expect(keepAlive.failures.isEmpty, "\(keepAlive.failures.prefix(10))")
        #expect(newConnections.ok > 100 && keepAlive.ok > 100)
        // Every generation answered, old and new.
        for generation in 1...4 {
            #expect(newConnections.bodies.union(keepAlive.bodies).contains("hello-server pool-\(generation)\n"))
        }
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func sigtermDuringABuildLeavesNoProcessBehind() async throws {
        let (safeWatch, _, directory) = try await startServing(version: "term-1")
        let mark = safeWatch.log.count
        try setVersion("term-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "▸ build 2 started", after: mark) != nil)
        // The server and the build (the shell, swift-build and what it runs); the build starts
        // once the clock has left the edit's second.
        #expect(await waitUntil(limit: .seconds(10)) { safeWatch.descendants.count >= 3 }, "\(safeWatch.descendantIdentities)")
        let children = safeWatch.descendantIdentities
        #expect(await safeWatch.terminate(limit: .seconds(10)) == .exited(0), "\(safeWatch.output)")
        // The stop is the cause, and it is named as such.
        #expect(safeWatch.output.contains("build 2 cancelled: safe-watch is stopping"), "\(safeWatch.output)")
        #expect(children.filter(\.isRunning).isEmpty, "left running: \(children.filter(\.isRunning))")
        #expect(processes(mentioning: directory).isEmpty, "left: \(processes(mentioning: directory))")
    }

    @Test func restartModeServesTheNewVersionOnTheFixedPort() async throws {
        let directory = try await Fixture.shared.reset(version: "restart-1")
        let port = try freeLoopbackPort()
        let safeWatch = try await SafeWatchProcess(
            ["--project", directory, "--mode", "restart", "--listen", "127.0.0.1:\(port)"])
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server restart-1\n")
        try setVersion("restart-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server restart-2\n")
        let output = safeWatch.output
        // The old server stopped before the new one started.
        let stopped = output.range(of: "gen 1 stopped")
        let started = output.range(of: "▸ gen 2 starting")
        #expect(stopped != nil && started != nil && stopped!.lowerBound < started!.lowerBound, "\(output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func crashedServerIsRestartedWithBackoff() async throws {
        let (safeWatch, port, _) = try await startServing(version: "crash-1", environment: ["HELLO_CRASH_AFTER": "1"])
        #expect(await safeWatch.log.waitForLine(containing: "gen 1 exited unexpectedly (exit status 1)") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "restarting gen 1 in 100 ms") != nil)
        #expect(await safeWatch.log.waitForLine(containing: "gen 1 starting (restart)") != nil)
        // It crashes again a second after each restart; the delay doubles.
        #expect(await safeWatch.log.waitForLine(containing: "restarting gen 1 in 200 ms") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server crash-1\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func healthPathThatAnswers404DiscardsTheCandidate() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "h404-1")
        // A reload that points the health check at a path the server does not have.
        try "[health]\npath = \"/missing\"\ninterval = \"50ms\"\n".save(to: directory + "/safe-watch.toml")
        #expect(await safeWatch.log.waitForLine(containing: "configuration reloaded") != nil, "\(safeWatch.output)")
        let discarded = await safeWatch.log.waitForLine(containing: "gen 2 discarded")
        #expect(discarded?.contains("GET /missing answered 404") == true, "\(safeWatch.output)")
        #expect(discarded?.contains("still serving gen 1") == true)
        #expect(await body(port: port) == "hello-server h404-1\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func serverThatNeverBecomesHealthyIsDiscarded() async throws {
        let configuration = """
            [serve]
            hold_timeout = "300ms"
            [health]
            type = "exec"
            command = "exit 1"
            interval = "50ms"
            startup_timeout = "1s"
            """
        let directory = try await Fixture.shared.reset(version: "never-1")
        try configuration.save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort())
        let discarded = await safeWatch.log.waitForLine(containing: "gen 1 discarded")
        #expect(discarded?.contains("not healthy within startup_timeout 1.0 s") == true, "\(safeWatch.output)")
        // Nothing healthy: the proxy holds the request for hold_timeout, then answers 503 rather
        // than refusing the connection.
        let response = try await httpGet(port: port, "/").get()
        #expect(response.status == 503)
        #expect(response.body.contains("no healthy server yet"))
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func serverThatExitsAtOnceIsReported() async throws {
        let directory = try await Fixture.shared.reset(version: "exit-1")
        let safeWatch = try await SafeWatchProcess(
            ["--project", directory, "--listen", "127.0.0.1:0"], environment: ["HELLO_EXIT_IMMEDIATELY": "1"])
        let discarded = await safeWatch.log.waitForLine(containing: "gen 1 discarded")
        #expect(discarded?.contains("exited (exit status 3) before it became healthy") == true, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func invalidReloadIsReportedAndTheOldConfigurationKept() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "reload-1", configuration: "[watch]\ndebounce = \"50ms\"\n")
        try "[watch]\ndebounce = \"50ms\"\nbogus = 1\n".save(to: directory + "/safe-watch.toml")
        let rejected = await safeWatch.log.waitForLine(containing: "configuration not reloaded")
        #expect(rejected?.contains("safe-watch.toml:3: watch.bogus: unknown key") == true, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server reload-1\n")
        // SIGHUP reloads too.
        try "[watch]\ndebounce = \"60ms\"\n".save(to: directory + "/safe-watch.toml")
        #expect(await safeWatch.log.waitForLine(containing: "✓ configuration reloaded") != nil)
        let mark = safeWatch.log.count
        safeWatch.signal(SIGHUP)
        #expect(await safeWatch.log.waitForLine(containing: "✓ configuration reloaded", after: mark) != nil)
        #expect(await body(port: port) == "hello-server reload-1\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// An editor that saves in place truncates the file, then writes it. The configuration is
    /// read once, after the burst, whole: read at the truncation it was empty, and its defaults
    /// replaced the settings (a user's `[run] env` was gone from the next generation while the
    /// log said the previous configuration stayed).
    @Test func aConfigurationSavedInPlaceIsReadOnceAndWhole() async throws {
        let settings = "[watch]\ndebounce = \"1s\"\n"
        let (safeWatch, port, directory) = try await startServing(version: "inplace-1", configuration: settings)
        let isReload: @Sendable (String) -> Bool = { $0.contains("configuration reloaded") || $0.contains("not reloaded") }
        let handle = try #require(FileHandle(forUpdatingAtPath: directory + "/safe-watch.toml"))
        try handle.truncate(atOffset: 0)
        // The editor's own pace between the two, well inside the debounce.
        try await Task.sleep(for: .milliseconds(100))
        try handle.write(contentsOf: Data((settings + "[run]\nenv = { HELLO_CHATTER = \"0\" }\n").utf8))
        try handle.close()
        let written = safeWatch.log.count
        #expect(!safeWatch.log.all.contains(where: isReload), "read while the file was empty:\n\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ configuration reloaded", after: written) != nil, "\(safeWatch.output)")
        // A reload asked for after it marks the end of what the save caused: one reload.
        let asked = safeWatch.log.count
        safeWatch.signal(SIGHUP)
        #expect(await safeWatch.log.waitForLine(containing: "✓ configuration reloaded", after: asked) != nil)
        let reloads = safeWatch.log.all.prefix(asked).filter(isReload)
        #expect(reloads.count == 1, "\(reloads)")
        #expect(await body(port: port) == "hello-server inplace-1\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// A misspelt `[watch] paths` entry is said at start, not found out at the first edit that
    /// builds nothing.
    @Test func aWatchedPathThatIsNotThereIsSaidAtStart() async throws {
        let (safeWatch, _, _) = try await startServing(version: "paths-1", configuration: "[watch]\npaths = [\"Sources\", \"Sourcse\"]\n")
        let line = await safeWatch.log.waitForLine(containing: "[watch] paths: Sourcse does not exist")
        #expect(line != nil, "\(safeWatch.output)")
        #expect(!safeWatch.output.contains("paths: Sources does not exist"))
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// A server listening on a port of its own hears so within seconds, not at the end of its
    /// startup_timeout, and keeps the rest of that time (it may bind its own port later).
    @Test func aServerListeningOnAnotherPortIsToldWithinSeconds() async throws {
        let own = try freeLoopbackPort()
        let started = ContinuousClock.now
        let (safeWatch, _) = try await self.start(
            version: "elsewhere-1", configuration: "[run]\nargs = [\"--port\", \"\(own)\"]\n[health]\nstartup_timeout = \"120s\"\n")
        let line = await safeWatch.log.waitForLine(containing: "gen 1 is not healthy yet", limit: .seconds(60))
        #expect(line?.contains("it listens on 127.0.0.1:\(own), not on port ") == true, "\(safeWatch.output)")
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(!safeWatch.output.contains("discarded"), "told, not discarded: \(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func buildCommandNotFoundAndMissingBinaryAreReported() async throws {
        let directory = try await Fixture.shared.reset(version: "bad-1")
        let notFound = try await SafeWatchProcess(
            ["--project", directory, "--listen", "127.0.0.1:0", "--build-command", "no-such-build-tool --fast"])
        let line = await notFound.log.waitForLine(containing: "build 1 failed")
        #expect(line?.contains("build command not found") == true, "\(notFound.output)")
        #expect(line?.contains("nothing is serving yet") == true)
        #expect(await notFound.terminate() == .exited(0))

        let missing = try await SafeWatchProcess(
            ["--project", directory, "--listen", "127.0.0.1:0", "--build-command", "true", "--binary", ".build/debug/nope"])
        let missingLine = await missing.log.waitForLine(containing: "build 1 failed")
        #expect(missingLine?.contains(".build/debug/nope is missing") == true, "\(missing.output)")
        #expect(await missing.terminate() == .exited(0))
    }
}

/// The whole second of a file's modification time.
func modificationSecond(_ path: String) -> Int {
    var info = stat()
    stat(path, &info)
    return info.st_mtim.tv_sec
}

/// Health checks other than http, the build timeout, and safe-watch dying hard (same suite: they
/// share the fixture).
extension SupervisorIntegrationTests {

    @Test func notifyAndTcpHealthChecksSwap() async throws {
        for (kind, version) in [("notify", "notify-1"), ("tcp", "tcp-1")] {
            let directory = try await Fixture.shared.reset(version: version)
            try "[health]\ntype = \"\(kind)\"\ninterval = \"50ms\"\n".save(to: directory + "/safe-watch.toml")
            let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
            let port = try #require(await safeWatch.publicPort())
            #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(kind): \(safeWatch.output)")
            #expect(await body(port: port) == "hello-server \(version)\n")
            #expect(await safeWatch.terminate() == .exited(0))
        }
    }

    @Test func upgradedConnectionsAreTunnelledToTheNewestGeneration() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "ws-1")
        let first = await echoThroughUpgrade(port: port, "ping")
        #expect(first.status == "HTTP/1.1 101 Switching Protocols")
        #expect(first.echo == "hello-server ws-1: ping")
        try setVersion("ws-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        let second = await echoThroughUpgrade(port: port, "pong")
        #expect(second.echo == "hello-server ws-2: pong")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func migrationsGateKeepsTheOldServerOnABadEditAndAppliesGoodOnes() async throws {
        let directory = try await Fixture.shared.reset(version: "mig-1")
        let database = makeTemporaryDirectory("gate-db") + "/dev.db"
        try createAccountDirectory(directory + "/migrations")
        let users = "CREATE TABLE users (id integer PRIMARY KEY);\n"
        try users.save(to: directory + "/migrations/0001_users.sql")
        try "[migrations]\ndatabase_url = \"sqlite:\(database)\"\napply = \"safe-watch\"\nbackup = true\n"
            .save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort())
        #expect(await safeWatch.log.waitForLine(containing: "applied 0001_users.sql") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil)

        // An applied migration edited: blocked with the finding; the old server keeps serving.
        try setVersion("mig-2", in: directory)
        try "CREATE TABLE users (id integer PRIMARY KEY, name text);\n".save(to: directory + "/migrations/0001_users.sql")
        #expect(await safeWatch.log.waitForLine(containing: "BLOCK SW101 0001_users.sql") != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "not started: migrations BLOCK (SW101)") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server mig-1\n")

        // Undone, and a valid migration added: backed up, applied, swapped in.
        let mark = safeWatch.log.count
        try users.save(to: directory + "/migrations/0001_users.sql")
        try "CREATE TABLE posts (id integer PRIMARY KEY);\n".save(to: directory + "/migrations/0002_posts.sql")
        #expect(await safeWatch.log.waitForLine(containing: "backed up to", after: mark) != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "applied 0002_posts.sql", after: mark) != nil)
        #expect(await safeWatch.log.waitForLine(containing: "healthy", after: mark) != nil)
        #expect(await body(port: port) == "hello-server mig-2\n")

        // SQL that fails: nothing recorded, the database state said, the old server keeps serving.
        let failing = safeWatch.log.count
        try setVersion("mig-3", in: directory)
        try "CREATE TABLE tags (id integer);\nINSERT INTO missing_table VALUES (1);\n"
            .save(to: directory + "/migrations/0003_tags.sql")
        let refused = await safeWatch.log.waitForLine(containing: "not started: migrations failed to apply 0003_tags.sql", after: failing)
        #expect(refused?.contains("the transaction rolled back") == true, "\(safeWatch.output)")
        #expect(refused?.contains("still serving gen") == true)
        #expect(await body(port: port) == "hello-server mig-2\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func buildThatRunsTooLongIsStoppedAndReported() async throws {
        let directory = try await Fixture.shared.reset(version: "slow-build")
        try "[build]\ncommand = \"sleep 37\"\nbinary = \".build/debug/hello-server\"\ntimeout = \"1s\"\n".save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
        let line = await safeWatch.log.waitForLine(containing: "build 1 failed", limit: .seconds(30))
        #expect(line?.contains("timed out after 1.0 s (build.timeout)") == true, "\(safeWatch.output)")
        #expect(processes(mentioning: "sleep 37").isEmpty)  // 37: no other test sleeps that long
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func serverDiesWithSafeWatchEvenOnSIGKILL() async throws {
        let directory = try await Fixture.shared.reset(version: "orphan-1")
        let safeWatch = try await SafeWatchProcess(["--project", directory, "--listen", "127.0.0.1:0"])
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        let servers = processes(mentioning: directory + "/.safe-watch/generations/1/hello-server")
        #expect(servers.count == 1)
        // No chance to clean up: the parent-death signal set when it was spawned stops it.
        safeWatch.signal(SIGKILL)
        #expect(await safeWatch.waitForExit() == .signalled(SIGKILL))
        var left = servers
        for _ in 0..<300 where !left.isEmpty {
            try await Task.sleep(for: .milliseconds(10))
            left = processes(mentioning: directory + "/.safe-watch/generations/1/hello-server")
        }
        #expect(left.isEmpty, "the server outlived safe-watch")
    }

    /// A candidate that never becomes healthy is superseded by a newer build: its probing ends
    /// with it (it used to go on until its startup_timeout, probing a server that was gone). The
    /// health command counts every probe by the port it was given, in a file outside the project.
    @Test func aSupersededCandidateIsNoLongerProbed() async throws {
        let directory = makeTemporaryDirectory("sw-superseded") + "/project"
        try createAccountDirectory(directory)
        let probeLog = makeTemporaryDirectory("sw-probes") + "/probes"
        try "".save(to: probeLog, atomically: false)
        try "v1\n".save(to: directory + "/version.txt", atomically: false)
        try "#!/bin/sh\necho \"port $PORT\"\nexec sleep 1000\n".save(to: directory + "/server.sh", atomically: false)
        chmod(directory + "/server.sh", 0o755)
        try """
            [build]
            command = "true"
            binary = "server.sh"
            [watch]
            extensions = ["txt"]
            debounce = "50ms"
            [health]
            type = "exec"
            command = "echo $PORT >> \(probeLog); exit 1"
            interval = "50ms"
            startup_timeout = "120s"
            [run]
            stop_timeout = "1s"
            """.save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        @Sendable func probes(of port: Int) -> Int {
            ((try? String(contentsOfFile: probeLog, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0 == "\(port)" }.count
        }
        func port(of generation: Int) async -> Int? {
            await safeWatch.log.waitForLine(containing: "[gen \(generation)] port ", limit: .seconds(60))
                .flatMap { $0.split(separator: " ").last.flatMap { Int($0) } }
        }
        let first = try #require(await port(of: 1), "\(safeWatch.output)")
        #expect(await waitUntil { probes(of: first) >= 3 }, "gen 1 is not probed:\n\(safeWatch.output)")

        try "v2\n".save(to: directory + "/version.txt")
        let discarded = await safeWatch.log.waitForLine(containing: "gen 1 discarded", limit: .seconds(60))
        #expect(discarded?.contains("superseded by generation 2") == true, "\(safeWatch.output)")
        let second = try #require(await port(of: 2), "\(safeWatch.output)")
        try #require(second != first, "both generations got port \(first)")
        // Gen 2 is probed all along; gen 1, whose probe may have been under way at the discard,
        // not once more from then on.
        #expect(await waitUntil { probes(of: second) >= 5 }, "gen 2 is not probed:\n\(safeWatch.output)")
        let afterDiscard = probes(of: first)
        let probedSince = probes(of: second)
        #expect(await waitUntil { probes(of: second) >= probedSince + 10 }, "gen 2 is not probed:\n\(safeWatch.output)")
        #expect(probes(of: first) == afterDiscard, "gen 1 is still probed after it was superseded:\n\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }
}
