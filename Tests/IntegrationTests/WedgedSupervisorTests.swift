import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import Synchronization
import Testing

/// Clients that each send one request per new connection, back to back, and record when every
/// request started and ended: what a user waiting on the server sees through a fault.
final class TimedClients: Sendable {
    struct Request: Sendable {
        var started: ContinuousClock.Instant
        var ended: ContinuousClock.Instant
        var failure: String?
    }

    private let requests = Mutex<[Request]>([])
    private let running = Mutex(true)
    private let finished = Mutex(0)
    private let (done, finish) = AsyncStream<Void>.makeStream()
    private let threads: Int

    init(port: Int, threads: Int) {
        self.threads = threads
        for index in 0..<threads {
            Thread.detachNewThread { [self] in
                var count = 0
                // Bounded: at most 100,000 requests per client, and only while running.
                while self.running.withLock({ $0 }) && count < 100_000 {
                    count += 1
                    let started = ContinuousClock.now
                    var failure: String?
                    do {
                        let response = try HTTPConnection(port: port).get(index % 2 == 0 ? "/" : "/slow", keepAlive: false)
                        if response.status != 200 { failure = "HTTP \(response.status)" }
                    } catch {
                        failure = "\(error)"
                    }
                    let request = Request(started: started, ended: .now, failure: failure)
                    self.requests.withLock { $0.append(request) }
                }
                if self.finished.withLock({ $0 += 1; return $0 }) == self.threads { self.finish.finish() }
            }
        }
    }

    var all: [Request] { self.requests.withLock { $0 } }

    /// Waits until a request that started after `instant` has succeeded (false after `limit`).
    func waitForSuccess(startedAfter instant: ContinuousClock.Instant, limit: Duration = .seconds(120)) async -> Bool {
        let deadline = ContinuousClock.now + limit
        // The clients run on their own threads and signal nothing per request: poll, bounded.
        while ContinuousClock.now < deadline {
            if self.all.contains(where: { $0.started > instant && $0.failure == nil }) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    func stop() async -> [Request] {
        self.running.withLock { $0 = false }
        for await _ in self.done {}
        return self.all
    }
}

/// The real uid of a process (/proc/PID/status "Uid:" line).
func processOwner(_ pid: pid_t) -> uid_t? {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    return status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().first.flatMap { uid_t($0) }
}

extension Duration {
    /// "5.23 s", for the measurements the tests print.
    var secondsText: String { String(format: "%.2f s", Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18) }
}

extension SupervisorIntegrationTests {

    /// The units exactly as `safe-watch init --systemd` writes them, with WatchdogSec=3s; safe-watch
    /// frozen (SIGSTOP: nothing in it runs, no handler, no backtracer) under the real user manager,
    /// with clients hitting it all along. systemd kills it, its servers drain, the next safe-watch
    /// serves. Proxy mode and socket mode, both behind the socket unit.
    @Test(.timeLimit(.minutes(8)), arguments: [ServeMode.proxy, .socket])
    func aFrozenSafeWatchIsKilledByTheWatchdogAndServesAgain(mode: ServeMode) async throws {
        let directory = try await Fixture.shared.reset(version: "wedge-\(mode.rawValue)")
        let port = try freeLoopbackPort()
        let configuration = mode == .socket
            ? "[serve]\nmode = \"socket\"\nlisten = \"127.0.0.1:\(port)\"\n[health]\ntype = \"notify\"\n"
            : "[serve]\nlisten = \"127.0.0.1:\(port)\"\n"
        try configuration.write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        // As a user runs it: the manager, safe-watch and its servers as an unprivileged account,
        // which owns the project (the shared fixture is root's otherwise).
        let account = "safe-watch-test"
        try #require(getpwnam(account) != nil, "no account \(account): create it with `useradd --system \(account)` (script/test does)")
        // SwiftPM's locks for the project's .build live in /tmp, named after its path
        // (/tmp/_tmp_hello-fixture-X_.build.lock, …_.build_workspace-state.json.lock); root's
        // builds of the fixture made them.
        let lockPrefix = directory.replacing("/", with: "_") + "_"
        let swiftPMLocks = ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [])
            .filter { $0.hasPrefix(lockPrefix) && $0.hasSuffix(".lock") }.map { "/tmp/" + $0 }
        let owned = [directory] + swiftPMLocks
        let (chowned, chownOutput) = try await run("/bin/chown", ["-R", "\(account):"] + owned, in: "/")
        try #require(chowned == .exited(0), "\(chownOutput)")
        let manager = try await UserManager(account: account)
        do {
            try await self.frozenServiceScenario(manager: manager, directory: directory, port: port, mode: mode)
        } catch {
            await manager.stop()
            throw error
        }
        await manager.stop()
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
    }

    private func frozenServiceScenario(manager: UserManager, directory: String, port: Int, mode: ServeMode) async throws {
        let (written, initOutput) = try await run(Paths.safeWatch, ["init", "--systemd", "--unit-directory", manager.unitDirectory], in: directory)
        try #require(written == .exited(0), "\(initOutput)")
        let servicePath = manager.unitDirectory + "/safe-watch.service"
        let unit = try String(contentsOfFile: servicePath, encoding: .utf8)
        try #require(unit.contains("\nWatchdogSec=30s\n"))
        try unit.replacing("\nWatchdogSec=30s\n", with: "\nWatchdogSec=3s\n").write(toFile: servicePath, atomically: true, encoding: .utf8)
        try await manager.systemctl("daemon-reload")
        let (started, startOutput) = try await manager.systemctl("start", "safe-watch.socket", "safe-watch.service")
        if started != .exited(0) {
            let journal = try await journalEntries(manager, unit: "safe-watch.service").compactMap { $0["MESSAGE"] as? String }
            Issue.record("cannot start safe-watch.service: \(startOutput)\n\(journal.suffix(20).joined(separator: "\n"))")
            return
        }
        let firstStatus = try await manager.waitFor("StatusText", of: "safe-watch.service", limit: .seconds(60)) { $0 == "serving gen 1" }
        if firstStatus != "serving gen 1" {
            let journal = try await journalEntries(manager, unit: "safe-watch.service").compactMap { $0["MESSAGE"] as? String }
            Issue.record("not serving: \(firstStatus)\n\(journal.suffix(25).joined(separator: "\n"))")
            return
        }
        let frozenPID = try #require(pid_t(try await manager.property("MainPID", of: "safe-watch.service")))
        #expect(processOwner(frozenPID) == getpwnam("safe-watch-test")?.pointee.pw_uid, "safe-watch runs as root")

        let clients = TimedClients(port: port, threads: 4)
        #expect(await clients.waitForSuccess(startedAfter: .now))
        let frozenAt = ContinuousClock.now
        let frozenWallClock = Date()
        kill(frozenPID, SIGSTOP)
        defer { kill(frozenPID, SIGKILL) }  // whatever happened, not left stopped

        // systemd kills it and starts the next one, which serves gen 1 again.
        let nextPID = try await manager.waitFor("MainPID", of: "safe-watch.service") { $0 != String(frozenPID) && $0 != "0" }
        let status = try await manager.waitFor("StatusText", of: "safe-watch.service") { $0 == "serving gen 1" }
        let servingAgainAt = ContinuousClock.now
        let entries = try await journalEntries(manager, unit: "safe-watch.service")
        let managerSays = entries.compactMap { $0["USER_UNIT"] != nil ? $0["MESSAGE"] as? String : nil }
        #expect(nextPID != String(frozenPID), "never restarted: \(managerSays.suffix(12))")
        #expect(status == "serving gen 1", "\(managerSays.suffix(12))")
        // WatchdogSec, RestartSec and a start with a no-op build: seconds, not TimeoutStopSec's 30 s.
        #expect(servingAgainAt - frozenAt < .seconds(20), "serving again \((servingAgainAt - frozenAt).secondsText) after the freeze: \(managerSays.suffix(12))")
        #expect(managerSays.contains { $0.contains("Watchdog timeout") }, "\(managerSays.suffix(12))")
        #expect(managerSays.contains { $0.contains("Killing process \(frozenPID)") && $0.contains("SIGKILL") }, "\(managerSays.suffix(12))")
        #expect(!managerSays.contains { $0.contains("Will not start") || $0.contains("start request repeated too quickly") }, "\(managerSays)")
        let killedAt = entries.first { ($0["MESSAGE"] as? String)?.contains("Watchdog timeout") == true }
            .flatMap { ($0["__REALTIME_TIMESTAMP"] as? String).flatMap(Double.init) }
            .map { $0 / 1e6 - frozenWallClock.timeIntervalSince1970 }

        // Requests issued once the new safe-watch serves are answered by it.
        #expect(await clients.waitForSuccess(startedAfter: servingAgainAt))
        let requests = await clients.stop()
        let failures = requests.filter { $0.failure != nil }
        let longest = requests.filter { $0.failure == nil }.map { $0.ended - $0.started }.max() ?? .zero
        let figures = "\(mode.rawValue) mode: frozen at +0; watchdog kill at +\(killedAt.map { String(format: "%.2f s", $0) } ?? "?"); "
            + "new safe-watch serving gen 1 at +\((servingAgainAt - frozenAt).secondsText); longest answered request \(longest.secondsText); "
            + "\(requests.count - failures.count) answered, \(failures.count) failed"
        let failureTimes = failures.prefix(5).map { "\($0.failure ?? "") at +\(($0.ended - frozenAt).secondsText)" }
        print("wedged-watchdog figures: \(figures) \(failureTimes)")
        switch mode {
        case .socket:
            // The old server drains on its parent-death SIGTERM; connections wait in the socket
            // unit's queue for the next generation. Nothing fails.
            #expect(failures.isEmpty, "\(figures); \(failureTimes)")
        default:
            // The proxy dies with safe-watch: a connection it had accepted when it froze is reset
            // (one per client at most); the ones queued in the socket unit are answered.
            #expect(failures.count <= 4, "\(figures); \(failureTimes)")
        }

        // Stopped, nothing of either safe-watch is left.
        let (stopped, stopOutput) = try await manager.systemctl("stop", "safe-watch.service", "safe-watch.socket")
        #expect(stopped == .exited(0), "\(stopOutput)")
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
        #expect(processes(mentioning: "run --project \(directory)").isEmpty)
    }

    /// The event loop stuck (a test hook blocks it) when SIGTERM arrives: the deadline started on
    /// the signal thread ends safe-watch at stop_timeout + 5 s anyway, servers killed, with a line
    /// that says so.
    @Test func aStuckEventLoopStillStopsOnSIGTERMWithinTheDeadline() async throws {
        let notify = try FakeServiceManager(directory: makeTemporaryDirectory("sw-stuck"))
        defer { notify.close() }
        // Readable by whichever account safe-watch runs as.
        let stallDirectory = makeTemporaryDirectory("sw-stall")
        chmod(stallDirectory, 0o755)
        let stallFile = stallDirectory + "/stall"
        let (safeWatch, port, directory) = try await startServing(
            version: "stuck-1", environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000", "SAFE_WATCH_TEST_STALL_LOOP_WHILE": stallFile],
            configuration: "[run]\nstop_timeout = \"1s\"\n")
        let servers = serverPIDs(of: safeWatch)
        #expect(servers.count == 1)
        #expect(await body(port: port) == "hello-server stuck-1\n")

        // Wedge the loop and see that it is: WATCHDOG=1 (every 500 ms from the loop) stops.
        #expect(FileManager.default.createFile(atPath: stallFile, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: stallFile) }
        // (A ping sent just before the loop stalled may still arrive: wait for 1.5 s of silence.)
        var stalled = false
        for _ in 0..<5 where !stalled {
            let seen = notify.received.count
            stalled = await !notify.received.wait(limit: .milliseconds(1500), until: { $0.count > seen })
        }
        #expect(stalled, "the loop still runs: \(notify.texts.suffix(5))")

        let signalled = ContinuousClock.now
        let status = await safeWatch.terminate(limit: .seconds(30))
        let took = ContinuousClock.now - signalled
        #expect(status == .exited(70), "\(safeWatch.output)")
        #expect(took >= .seconds(5.5) && took < .seconds(9), "exited \(took.secondsText) after SIGTERM")
        let line = safeWatch.log.all.first { $0.hasPrefix("safe-watch: not stopped") }
        #expect(line?.hasPrefix("safe-watch: not stopped 6.0 s after SIGTERM (run.stop_timeout + 5.0 s); killed process") == true, "\(safeWatch.output)")
        #expect(line?.hasSuffix(", each with its process group, with SIGKILL; exiting with status 70") == true, "\(safeWatch.output)")
        #expect(servers.allSatisfy { line?.contains(String($0)) == true }, "\(servers): \(line ?? "")")
        #expect(servers.allSatisfy { kill($0, 0) != 0 || isZombie($0) })
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
        print("wedged-sigterm figures: stuck loop, stop_timeout 1s: exited \(took.secondsText) after SIGTERM")
    }
}
