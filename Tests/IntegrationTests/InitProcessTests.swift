import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// safe-watch as a container's PID 1 (`unshare --pid --fork --mount-proc`) and as a plain child
/// subreaper: orphans reaped, a daemonized grandchild stopped, SIGTERM ends everything quickly.
@Suite(.serialized, .timeLimit(.minutes(3))) struct InitProcessTests {
    /// A server that leaves a daemon (its own session: its process group is not the server's) and
    /// an orphan that exits at once (a zombie until its new parent reaps it).
    func makeProject() throws -> String {
        let directory = makeTemporaryDirectory("sw-init")
        try "#!/bin/sh\necho serving\n(setsid sh -c 'echo $$ > daemon.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &)\n(sh -c 'sleep 0.2' &)\nexec sleep 1000\n"
            .save(to: directory + "/server.sh", atomically: false)
        chmod(directory + "/server.sh", 0o755)
        try "[build]\ncommand = \"true\"\nbinary = \"server.sh\"\n[health]\ntype = \"none\"\n[run]\nstop_timeout = \"2s\"\n"
            .save(to: directory + "/safe-watch.toml", atomically: false)
        return directory
    }

    /// Watches `root`'s descendants for a while: true if a zombie stayed unreaped across samples.
    func zombieLingers(below root: pid_t, for duration: Duration) async throws -> Bool {
        var seen: Set<pid_t> = []
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            let zombies = Set(processTree(below: root).filter(isZombie))
            if !zombies.intersection(seen).isEmpty { return true }  // still there 100 ms later
            seen = zombies
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test func asPID1ItReapsOrphansAndStopsEverythingOnSIGTERM() async throws {
        let directory = try makeProject()
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory, "--listen", "127.0.0.1:0"],
            // unshare needs root; safe-watch, PID 1 of the new namespace, runs as the test account.
            namespace: ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"])
        #expect(await safeWatch.log.waitForLine(containing: "[gen 1] serving") != nil, "\(safeWatch.output)")
        // unshare forks safe-watch, which is PID 1 of the new namespace.
        let pid1 = try #require(processTree(below: safeWatch.pid).first { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").contains("safe-watch")
        })
        let status = (try? String(contentsOfFile: "/proc/\(pid1)/status", encoding: .utf8)) ?? ""
        #expect(status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }?.hasSuffix("\t1") == true, "\(status)")
        // PID 1, and not root: only the namespace needed root.
        #expect(userID(of: pid1) == (try expectedUserID()), "\(status)")
        #expect(try await zombieLingers(below: pid1, for: .seconds(1)) == false)

        let begun = ContinuousClock.now
        kill(pid1, SIGTERM)
        #expect(await safeWatch.waitForExit(limit: .seconds(8)) == .exited(0), "\(safeWatch.output)")
        #expect(ContinuousClock.now - begun < .seconds(8))
        #expect(processTree(below: safeWatch.pid).isEmpty)
        #expect(processes(mentioning: directory).isEmpty)
    }

    @Test func asASubreaperItStopsADaemonizedGrandchildToo() async throws {
        let directory = try makeProject()
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        #expect(await safeWatch.log.waitForLine(containing: "[gen 1] serving") != nil, "\(safeWatch.output)")
        // The daemon left the server's group and session; it is safe-watch's child now.
        var daemonPID: pid_t?
        for _ in 0..<100 where daemonPID == nil {
            daemonPID = (try? String(contentsOfFile: directory + "/daemon.pid", encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if daemonPID == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let daemon = try #require(daemonPID)
        #expect(processTree(below: safeWatch.pid).contains(daemon))
        #expect(try await zombieLingers(below: safeWatch.pid, for: .seconds(1)) == false)
        #expect(await safeWatch.terminate(limit: .seconds(8)) == .exited(0), "\(safeWatch.output)")
        #expect(kill(daemon, 0) != 0 || isZombie(daemon), "the daemonized grandchild outlived safe-watch")
    }
}
