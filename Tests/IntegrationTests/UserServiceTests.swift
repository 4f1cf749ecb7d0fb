import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import TestSupport
import Testing

/// A real `systemd --user` manager with its own journald, in a private mount namespace
/// (script/user-manager, whose header says how it works).
final class UserManager: Sendable {
    let directory: String
    var unitDirectory: String { self.directory + "/runtime/systemd/user" }

    /// `account`: the manager, and every service, runs as that account instead of root.
    init(account: String? = nil) async throws {
        // Short: the manager's socket paths live under it.
        self.directory = "/tmp/um-\(getpid())-\(UInt32.random(in: 0..<100_000))"
        var environment = ProcessInfo.processInfo.environment
        if let account { environment["USER_MANAGER_ACCOUNT"] = account }
        let (status, output) = try await run(
            Paths.packageRoot + "/script/user-manager", ["start", self.directory], in: "/", environment: environment)
        guard status == .exited(0) else { throw HarnessError("cannot start a user manager: \(output)") }
    }

    /// Runs `arguments` inside the manager's namespace (systemctl --user, journalctl).
    @discardableResult
    func exec(_ arguments: [String]) async throws -> (ExitStatus, String) {
        try await run(Paths.packageRoot + "/script/user-manager", ["exec", self.directory, "--"] + arguments, in: "/")
    }

    @discardableResult
    func systemctl(_ arguments: String...) async throws -> (ExitStatus, String) {
        try await self.exec(["systemctl", "--user", "--no-pager"] + arguments)
    }

    /// A unit property (`systemctl --user show -p NAME --value`).
    func property(_ name: String, of unit: String) async throws -> String {
        try await self.systemctl("show", "-p", name, "--value", unit).1
    }

    /// Waits until the property satisfies `accept`; the last value seen.
    func waitFor(_ name: String, of unit: String, limit: Duration = .seconds(120), _ accept: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + limit
        var value = try await self.property(name, of: unit)
        // systemctl has no "wait for property" verb: poll it, bounded (the manager sends no event
        // a test can read from outside its namespace).
        while !accept(value) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            value = try await self.property(name, of: unit)
        }
        return value
    }

    func stop() async {
        _ = try? await run(Paths.packageRoot + "/script/user-manager", ["stop", self.directory], in: "/")
    }
}

/// The journal entries of a user unit, as JSON objects: its processes' and the manager's about it,
/// whichever uid the manager runs as (`--user-unit` would add the caller's _UID).
func journalEntries(_ manager: UserManager, unit: String) async throws -> [[String: Any]] {
    let (_, output) = try await manager.exec(
        ["journalctl", "_SYSTEMD_USER_UNIT=\(unit)", "+", "USER_UNIT=\(unit)", "-o", "json", "--no-pager"])
    return output.split(separator: "\n").compactMap { line in
        try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }
}

extension SupervisorIntegrationTests {

    @Test(.timeLimit(.minutes(8))) func runsAsASystemdUserServiceThroughItsSocketUnit() async throws {
        let directory = try await Fixture.shared.reset(version: "unit-1")
        let port = try freeLoopbackPort()
        try """
            [serve]
            mode = "socket"
            listen = "127.0.0.1:\(port)"
            [health]
            type = "notify"
            """.write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let manager = try await UserManager()
        do {
            try await self.serviceScenario(manager: manager, directory: directory, port: port)
        } catch {
            await manager.stop()
            throw error
        }
        await manager.stop()
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
    }

    private func serviceScenario(manager: UserManager, directory: String, port: Int) async throws {

        // The units exactly as `safe-watch init --systemd` writes them for this project.
        let (written, initOutput) = try await run(Paths.safeWatch, ["init", "--systemd", "--unit-directory", manager.unitDirectory], in: directory)
        try #require(written == .exited(0), "\(initOutput)")
        try await manager.systemctl("daemon-reload")
        let (socketStarted, socketOutput) = try await manager.systemctl("start", "safe-watch.socket")
        try #require(socketStarted == .exited(0), "\(socketOutput)")

        // The first connection starts the service; it waits in the socket's queue until gen 1 serves.
        #expect(await body(port: port) == "hello-server unit-1\n")
        let active = try await manager.waitFor("ActiveState", of: "safe-watch.service") { $0 == "active" }
        #expect(active == "active")
        let (_, status) = try await manager.systemctl("status", "safe-watch.service")
        #expect(status.contains("active (running)"), "\(status)")
        #expect(status.contains("Status: \"serving gen 1\""), "\(status)")

        // An edit is swapped in.
        try setVersion("unit-2", in: directory)
        let swapped = try await manager.waitFor("StatusText", of: "safe-watch.service") { $0 == "serving gen 2" }
        #expect(swapped == "serving gen 2")
        #expect(await body(port: port) == "hello-server unit-2\n")

        // Reload: reloading, then active again.
        let (reloaded, reloadOutput) = try await manager.systemctl("reload", "safe-watch.service")
        #expect(reloaded == .exited(0), "\(reloadOutput)")
        #expect(try await manager.waitFor("ActiveState", of: "safe-watch.service") { $0 == "active" } == "active")

        // Restarting safe-watch itself, gracefully and by SIGKILL, under load: nothing refused,
        // nothing reset — the socket unit holds the socket and the old servers drain.
        let pool = ClientPool(port: port, threads: 4, paths: ["/", "/slow"], keepAlive: false)
        let keepAlive = ClientPool(port: port, threads: 2, paths: ["/"], keepAlive: true)
        #expect(await pool.waitForMore(than: 10))
        let firstPID = try await manager.property("MainPID", of: "safe-watch.service")
        let restartAt = ContinuousClock.now - pool.started
        let (restarted, restartOutput) = try await manager.systemctl("restart", "safe-watch.service")
        #expect(restarted == .exited(0), "\(restartOutput)")
        let restartedAt = ContinuousClock.now - pool.started
        let secondPID = try await manager.property("MainPID", of: "safe-watch.service")
        #expect(secondPID != firstPID && secondPID != "0")
        #expect(try await manager.waitFor("StatusText", of: "safe-watch.service") { $0 == "serving gen 1" } == "serving gen 1")
        #expect(await pool.waitForMore(than: pool.snapshot.ok))
        let killedAt = ContinuousClock.now - pool.started
        kill(pid_t(secondPID) ?? 0, SIGKILL)
        let thirdPID = try await manager.waitFor("MainPID", of: "safe-watch.service") { $0 != secondPID && $0 != "0" }
        #expect(thirdPID != secondPID)
        #expect(try await manager.waitFor("StatusText", of: "safe-watch.service") { $0 == "serving gen 1" } == "serving gen 1")
        #expect(await pool.waitForMore(than: pool.snapshot.ok))
        let tally = await pool.stop()
        let keptAlive = await keepAlive.stop()
        #expect(tally.failures.isEmpty, "\(tally.failures.prefix(5)); restart +\(restartAt)–\(restartedAt), SIGKILL at +\(killedAt)")
        #expect(keptAlive.failures.isEmpty, "\(keptAlive.failures.prefix(5)); restart +\(restartAt)–\(restartedAt), SIGKILL at +\(killedAt)")
        #expect(tally.ok > 10 && keptAlive.ok > 10, "answered: \(tally.ok) new-connection, \(keptAlive.ok) keep-alive")

        // The journal has the structured fields, server output attributed to its generation.
        let entries = try await journalEntries(manager, unit: "safe-watch.service")
        let swapEntry = entries.first { ($0["SAFEWATCH_EVENT"] as? String) == "swapped" && ($0["SAFEWATCH_GENERATION"] as? String) == "2" }
        #expect(swapEntry?["SYSLOG_IDENTIFIER"] as? String == "safe-watch", "\(entries.suffix(5))")
        #expect(swapEntry?["PRIORITY"] as? String == "5")
        #expect((swapEntry?["MESSAGE"] as? String)?.contains("gen 2 healthy") == true)
        #expect(entries.contains { ($0["SAFEWATCH_EVENT"] as? String) == "build_started" && $0["SAFEWATCH_BUILD"] != nil })
        #expect(entries.contains {
            ($0["SAFEWATCH_EVENT"] as? String) == "output" && ($0["SAFEWATCH_GENERATION"] as? String) == "2"
                && ($0["MESSAGE"] as? String)?.contains("hello-server unit-2 listening") == true
        })
        #expect(entries.contains { ($0["SAFEWATCH_EVENT"] as? String) == "config_reloaded" })
        // The manager saw the reload begin (RELOADING=1 / ExecReload) and end (READY=1).
        let managerSays = entries.compactMap { $0["USER_UNIT"] != nil ? $0["MESSAGE"] as? String : nil }
        #expect(managerSays.contains { $0.hasPrefix("Reloading") } && managerSays.contains { $0.hasPrefix("Reloaded") }, "\(managerSays)")

        // Stop: nothing of the unit is left.
        let (stopped, stopOutput) = try await manager.systemctl("stop", "safe-watch.service", "safe-watch.socket")
        #expect(stopped == .exited(0), "\(stopOutput)")
        #expect(try await manager.property("ActiveState", of: "safe-watch.service") == "inactive")
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
        #expect(processes(mentioning: "run --project \(directory)").isEmpty)
    }
}

extension SupervisorIntegrationTests {

    /// Proxy mode without a socket unit: safe-watch binds the listener itself and parks it in
    /// systemd's fd store, so `systemctl restart` refuses nothing, and the proxy answers each open
    /// connection's last request before the old safe-watch goes.
    @Test(.timeLimit(.minutes(8))) func proxyModeServiceKeepsItsListenerInTheFdStoreAcrossRestarts() async throws {
        let directory = try await Fixture.shared.reset(version: "store-1")
        let port = try freeLoopbackPort()
        try "[serve]\nlisten = \"127.0.0.1:\(port)\"\n".write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let manager = try await UserManager()
        do {
            let (written, initOutput) = try await run(
                Paths.safeWatch, ["init", "--systemd", "--unit-directory", manager.unitDirectory], in: directory)
            try #require(written == .exited(0), "\(initOutput)")
            // The service alone: no socket unit holds the address.
            let path = manager.unitDirectory + "/safe-watch.service"
            let service = try String(contentsOfFile: path, encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("Requires=") && !$0.hasPrefix("After=") }.joined(separator: "\n")
            try service.write(toFile: path, atomically: true, encoding: .utf8)
            try await manager.systemctl("daemon-reload")
            let (started, startOutput) = try await manager.systemctl("start", "safe-watch.service")
            try #require(started == .exited(0), "\(startOutput)")
            #expect(try await manager.property("StatusText", of: "safe-watch.service") == "serving gen 1")
            #expect(try await manager.property("NFileDescriptorStore", of: "safe-watch.service") == "1")

            let pool = ClientPool(port: port, threads: 4, paths: ["/", "/slow"], keepAlive: false)
            let keepAlive = ClientPool(port: port, threads: 2, paths: ["/"], keepAlive: true)
            #expect(await pool.waitForMore(than: 10))
            for _ in 1...2 {
                let (restarted, restartOutput) = try await manager.systemctl("restart", "safe-watch.service")
                #expect(restarted == .exited(0), "\(restartOutput)")
                #expect(await pool.waitForMore(than: pool.snapshot.ok))
                #expect(await keepAlive.waitForMore(than: keepAlive.snapshot.ok))
            }
            let tally = await pool.stop()
            let keptAlive = await keepAlive.stop()
            let entries = try await journalEntries(manager, unit: "safe-watch.service")
            // Where each safe-watch got its listener, and when each stopped: what a failure needs.
            let story = entries.compactMap { $0["MESSAGE"] as? String }.filter {
                $0.contains("mode on") || $0.contains("Stopping") || $0.contains("Started") || $0.contains("stopping")
            }
            #expect(tally.failures.isEmpty, "\(tally.failures.prefix(5)); \(story)")
            #expect(keptAlive.failures.isEmpty, "\(keptAlive.failures.prefix(5)); \(story)")
            #expect(entries.contains { ($0["MESSAGE"] as? String)?.contains("socket systemd's fd store · proxy mode on http://127.0.0.1:\(port)") == true })
            try await manager.systemctl("stop", "safe-watch.service")
            #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
        } catch {
            await manager.stop()
            throw error
        }
        await manager.stop()
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
    }
}
