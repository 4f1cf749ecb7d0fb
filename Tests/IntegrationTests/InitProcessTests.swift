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
    /// `server` is the server's shell script (it writes its daemon's pid to daemon.pid).
    func makeProject(
        server: String = "#!/bin/sh\necho serving\n(setsid sh -c 'echo $$ > daemon.pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &)\n(sh -c 'sleep 0.2' &)\nexec sleep 1000\n",
        stopTimeout: String = "2s"
    ) throws -> String {
        let directory = makeTemporaryDirectory("sw-init")
        try server.save(to: directory + "/server.sh", atomically: false)
        chmod(directory + "/server.sh", 0o755)
        try "[build]\ncommand = \"true\"\nbinary = \"server.sh\"\n[health]\ntype = \"none\"\n[run]\nstop_timeout = \"\(stopTimeout)\"\n"
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

    /// Every path under `directory` (itself included) whose owner is not `uid`.
    func notOwned(by uid: uid_t, under directory: String) -> [String] {
        var found = fileOwner(directory) == uid ? [] : ["."]
        for case let entry as String in FileManager.default.enumerator(atPath: directory) ?? FileManager.DirectoryEnumerator()
        where fileOwner(directory + "/" + entry) != uid {
            found.append(entry)
        }
        return found
    }

    /// A dev container: safe-watch is PID 1 and root, the project is bind-mounted and belongs to
    /// its user on the host, and Docker mounted a fresh named volume (root's) on its .build. Nothing
    /// safe-watch or the build creates may be root's: the user could not remove it on the host.
    @Test(.timeLimit(.minutes(6))) func asRootPID1ItBecomesTheProjectsOwnerBeforeItCreatesAnything() async throws {
        guard geteuid() == 0, let account = try TestAccount.required() else { return }  // root starts containers
        let directory = makeTemporaryDirectory("sw-container") + "/app"
        try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Examples/hello-server", toPath: directory)
        try? FileManager.default.removeItem(atPath: directory + "/.build")
        giveTreeToAccount(directory)
        try setVersion("container-1", in: directory)
        // The named volume: a file system of its own, its root directory root's and 0755.
        try FileManager.default.createDirectory(atPath: directory + "/.build", withIntermediateDirectories: false)
        let (mounted, mountOutput) = try await run("/bin/mount", ["-t", "tmpfs", "-o", "mode=0755,size=1g", "tmpfs", directory + "/.build"], in: "/")
        try #require(mounted == .exited(0), "\(mountOutput)")
        defer { _ = umount2(directory + "/.build", Int32(MNT_DETACH)) }

        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory, "--listen", "127.0.0.1:0"],
            namespace: ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"],
            as: .root(because: "a container's PID 1 starts as root and must become the project's owner by itself"))
        let port = try #require(await safeWatch.publicPort(), "\(safeWatch.output)")
        let switched = await safeWatch.log.waitForLine(containing: "running as \(TestAccount.name) (uid \(account.uid), gid \(account.gid)), the owner of \(directory), not as root")
        #expect(switched != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", limit: .seconds(300)) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server container-1\n")
        let pid1 = try #require(processTree(below: safeWatch.pid).first { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").hasPrefix(Paths.safeWatch)
        })
        #expect(userID(of: pid1) == account.uid)
        #expect(FileManager.default.fileExists(atPath: directory + "/.build/debug/hello-server"))
        #expect(FileManager.default.fileExists(atPath: directory + "/.safe-watch/generations/1"))
        let roots = self.notOwned(by: account.uid, under: directory)
        #expect(roots.isEmpty, "not the owner's: \(roots.prefix(20))")

        kill(pid1, SIGTERM)
        #expect(await safeWatch.waitForExit(limit: .seconds(10)) == .exited(0), "\(safeWatch.output)")
        #expect(processes(mentioning: directory).isEmpty)
    }

    @Test func keepRootKeepsRoot() async throws {
        guard geteuid() == 0, try TestAccount.required() != nil else { return }
        let directory = try makeProject()
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", directory, "--listen", "127.0.0.1:0"], environment: ["SAFE_WATCH_KEEP_ROOT": "1"],
            as: .root(because: "SAFE_WATCH_KEEP_ROOT=1 is asked to keep root"))
        #expect(await safeWatch.log.waitForLine(containing: "[gen 1] serving") != nil, "\(safeWatch.output)")
        #expect(userID(of: safeWatch.pid) == 0)
        #expect(fileOwner(directory + "/.safe-watch") == 0)
        #expect(!safeWatch.output.contains("running as "), "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
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
    /// A server and the daemon it left both ignore SIGTERM: the whole stop still fits in
    /// `stop_timeout` (`docker stop` kills at 10 s), the daemon getting what is left of it rather
    /// than a second stop_timeout of its own; a second SIGINT stops both at once.
    @Test func aDaemonThatIgnoresSIGTERMGetsWhatIsLeftOfStopTimeoutNotASecondOne() async throws {
        func stubbornProject(stopTimeout: String) throws -> String {
            try makeProject(
                server: "#!/bin/sh\ntrap '' TERM INT\n(setsid sh -c 'trap \"\" TERM; echo $$ > daemon.pid; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &)\necho serving\nwhile :; do sleep 1; done\n",
                stopTimeout: stopTimeout)
        }
        func startServing(_ directory: String) async throws -> SafeWatchProcess {
            let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
            #expect(await safeWatch.log.waitForLine(containing: "[gen 1] serving") != nil, "\(safeWatch.output)")
            #expect(await waitUntil { FileManager.default.fileExists(atPath: directory + "/daemon.pid") }, "the daemon never started")
            return safeWatch
        }

        // stop_timeout 3 s: the server is killed at 3 s, the daemon at once after it (before: 6 s).
        let once = try await startServing(try stubbornProject(stopTimeout: "3s"))
        var begun = ContinuousClock.now
        #expect(await once.terminate(limit: .seconds(20)) == .exited(0), "\(once.output)")
        var took = ContinuousClock.now - begun
        #expect(took < .seconds(5), "stopping took \(took): the daemon had a stop_timeout of its own")

        // stop_timeout 20 s, asked twice: both go at once (before: the daemon's own 20 s).
        let twice = try await startServing(try stubbornProject(stopTimeout: "20s"))
        begun = ContinuousClock.now
        twice.signal(SIGINT)
        #expect(await twice.log.waitForLine(containing: "stopping") != nil, "\(twice.output)")
        twice.signal(SIGINT)
        #expect(await twice.waitForExit(limit: .seconds(30)) == .exited(0), "\(twice.output)")
        took = ContinuousClock.now - begun
        #expect(took < .seconds(10), "stopping took \(took) after a second SIGINT")
    }
}

