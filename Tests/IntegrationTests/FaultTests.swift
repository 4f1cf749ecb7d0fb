import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// Faults while a generation serves: each one ends with the old server serving (or restarted) and
/// nothing left behind.
extension SupervisorIntegrationTests {

    @Test func aBuildThatHangsTimesOutWhileTheOldServerServes() async throws {
        // The build hangs only once the test asks for it (a marker file no watcher cares about).
        let marker = "hang-next-build"
        let (safeWatch, port, directory) = try await startServing(
            version: "hang-1",
            configuration: """
                [build]
                command = "if [ -f \(marker) ]; then sleep 39; fi; swift build"
                binary = ".build/debug/hello-server"
                timeout = "15s"
                """)
        defer { try? FileManager.default.removeItem(atPath: directory + "/" + marker) }
        #expect(FileManager.default.createFile(atPath: directory + "/" + marker, contents: nil))
        let pool = ClientPool(port: port, threads: 2, paths: ["/", "/slow"], keepAlive: false)
        let mark = safeWatch.log.count
        try setVersion("hang-2", in: directory)
        let line = await safeWatch.log.waitForLine(containing: "build 2 failed", after: mark, limit: .seconds(60))
        #expect(line?.contains("timed out after 15.0 s (build.timeout); still serving gen 1") == true, "\(safeWatch.output)")
        #expect(processes(mentioning: "sleep 39").isEmpty, "the hung build's processes are gone")
        let tally = await pool.stop()
        #expect(tally.failures.isEmpty, "\(tally.failures.prefix(5))")
        #expect(tally.bodies == ["hello-server hang-1\n", "slow hang-1\n"], "\(tally.bodies)")
        // Unstuck, the next save is built and served.
        try FileManager.default.removeItem(atPath: directory + "/" + marker)
        try setVersion("hang-3", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server hang-3\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// A full disk where generations are staged: a 64 KiB tmpfs mounted where generation 2 goes.
    @Test func stagingOnAFullDiskKeepsTheOldServerServingAndSaysWhy() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "full-1")
        let target = directory + "/.safe-watch/generations/2"
        try createAccountDirectory(target)
        let (mounted, mountOutput) = try await run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", target], in: "/")
        try #require(mounted == .exited(0), "cannot mount a tmpfs here: \(mountOutput)")
        var unmounted = false
        defer { if !unmounted { _ = umount2(target, Int32(MNT_DETACH)) } }

        let mark = safeWatch.log.count
        try setVersion("full-2", in: directory)
        let line = await safeWatch.log.waitForLine(containing: "could not be staged", after: mark)
        #expect(line?.contains("No space left on device — the file system holding .safe-watch is full: free some space, then save again") == true, "\(safeWatch.output)")
        #expect(line?.contains("still serving gen 1") == true, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server full-1\n")
        let status = try await self.status(of: directory)
        #expect(status.lastBuild?.result == "staging_failed" && status.active?.generation == 1, "\(status)")

        // Space again: the next save is staged and served.
        #expect(umount2(target, Int32(MNT_DETACH)) == 0)
        unmounted = true
        let recovered = safeWatch.log.count
        try setVersion("full-3", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "healthy in", after: recovered) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server full-3\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// SIGKILL of the serving server at random moments under load: the proxy holds new requests
    /// and resends idempotent ones while the crash restart runs.
    @Test func killingTheServerUnderLoadIsRestartedAndCountsNoFailedRequest() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "kill-1")
        let fresh = ClientPool(port: port, threads: 4, paths: ["/", "/slow"], keepAlive: false)
        let kept = ClientPool(port: port, threads: 2, paths: ["/", "/slow"], keepAlive: true)
        var killed: [Int32] = []
        for round in 1...3 {
            #expect(await fresh.waitForMore(than: fresh.snapshot.ok + Int.random(in: 5...40)))
            let status = try await self.status(of: directory)
            let pid = try #require(status.active?.pid, "round \(round): \(status)")
            #expect(!killed.contains(pid))
            let mark = safeWatch.log.count
            kill(pid, SIGKILL)
            killed.append(pid)
            #expect(await safeWatch.log.waitForLine(containing: "gen 1 exited unexpectedly (signal SIGKILL)", after: mark) != nil, "\(safeWatch.output)")
            #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", after: mark) != nil, "\(safeWatch.output)")
        }
        #expect(await fresh.waitForMore(than: fresh.snapshot.ok))
        let newConnections = await fresh.stop()
        let keepAlive = await kept.stop()
        #expect(newConnections.failures.isEmpty, "\(newConnections.failures.prefix(5))")
        #expect(keepAlive.failures.isEmpty, "\(keepAlive.failures.prefix(5))")
        #expect(newConnections.ok > 20 && keepAlive.ok > 20)
        #expect(await safeWatch.terminate() == .exited(0))
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
    }
}
