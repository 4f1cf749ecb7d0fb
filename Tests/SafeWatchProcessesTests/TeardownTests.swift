import Foundation
import Glibc
import SafeWatchProcesses
import TestSupport
import Testing

/// The teardown executor with real processes: signals, waits and escalation, to the group, by pidfd.
/// Serialized, as ProcessTests: they share the one reaper.
@Suite(.serialized) struct TeardownTests {
    init() {
        Reaper.shared.start()
    }

    /// Starts `script` in its own process group; returns once it printed "ready".
    func start(_ script: String, lines: Lines = Lines()) async throws -> ProcessHandle {
        let output = try OutputPipe()
        output.start(onLine: { lines.append($0) })
        let process = try await Spawner.shared.start(
            SpawnRequest(
                executable: "/bin/sh", arguments: ["sh", "-c", script], environment: ["PATH": "/usr/bin:/bin"],
                standardOutput: output.writeEnd, standardError: output.writeEnd))
        output.closeWriteEnd()
        #expect(await lines.wait(until: { $0.contains("ready") }), "\(lines.all)")
        return process
    }

    @Test func aChildThatIgnoresTheSignalIsKilledAfterTheWait() async throws {
        // The ignored disposition survives exec: sleep ignores SIGTERM.
        let process = try await start("trap '' TERM; echo ready; exec sleep 30")
        await Teardown.group(SIGTERM, grace: .milliseconds(300)).run(on: process)
        #expect(await Reaper.shared.wait(for: process.pid) == .signalled(SIGKILL))
    }

    @Test func aChildThatExitsAtTheSignalGetsNoKill() async throws {
        // Its handler takes a moment: a SIGKILL sent without waiting for the exit would cut it off.
        let lines = Lines()
        let process = try await start(
            "trap 'sleep 0.2; echo handled; exit 0' TERM; echo ready; sleep 30 & wait", lines: lines)
        let begun = ContinuousClock.now
        await Teardown.group(SIGTERM, grace: .seconds(60)).run(on: process)
        #expect(await Reaper.shared.wait(for: process.pid) == .exited(0))
        #expect(await lines.wait(until: { $0.contains("handled") }))
        // It went on as soon as the child exited, not after the minute of grace.
        #expect(ContinuousClock.now - begun < .seconds(30))
    }

    @Test func whatTheLeaderLeftInItsGroupIsKilled() async throws {
        // The leader exits at SIGTERM; its child ignores it and stays in the group.
        let lines = Lines()
        let process = try await start(
            "trap 'exit 0' TERM; (trap '' TERM; exec sleep 30) & echo $!; echo ready; wait", lines: lines)
        let grandchild = pid_t(lines.all.first ?? "") ?? 0
        #expect(grandchild > 0)
        try becomeChildSubreaper()  // the orphaned grandchild is reaped here, and waited for
        await Teardown.group(SIGTERM, grace: .seconds(60)).run(on: process)
        #expect(await Reaper.shared.wait(for: process.pid) == .exited(0))
        #expect(await Reaper.shared.wait(for: grandchild) == .signalled(SIGKILL))
    }

    @Test func theBlockingRunnerTakesTheSameSteps() async throws {
        let ignoring = try await start("trap '' TERM; echo ready; exec sleep 30")
        let obeying = try await start("echo ready; exec sleep 30")
        Teardown.alone(SIGTERM, grace: .milliseconds(300)).runBlocking(on: [ignoring, obeying])
        #expect(await Reaper.shared.wait(for: ignoring.pid) == .signalled(SIGKILL))
        #expect(await Reaper.shared.wait(for: obeying.pid) == .signalled(SIGTERM))
    }

    @Test func aProcessFoundByPidIsHeldOnlyIfItIsStillTheOne() async throws {
        let process = try await start("echo ready; exec sleep 30")
        #expect(ProcessHandle.open(pid: process.pid, isStillIt: { _ in false }) == nil)
        let found = try #require(ProcessHandle.open(pid: process.pid, isStillIt: { _ in true }))
        await Teardown.kill.run(on: found)
        #expect(await Reaper.shared.wait(for: process.pid) == .signalled(SIGKILL))
        #expect(ProcessHandle.open(pid: process.pid, isStillIt: { _ in true }) == nil)
    }

    /// The reaper reaps a child the moment it exits; its pid can then go to any new process. A
    /// teardown that comes late (a stop racing a crash) must not reach that one. The pid is made
    /// to come round again by setting the kernel's last-pid counter, which needs root.
    @Test(.enabled(if: getuid() == 0, "needs root to set /proc/sys/kernel/ns_last_pid"))
    func aReapedChildsReusedPidIsNotSignalled() async throws {
        for _ in 0..<20 {
            let gone = try await start("echo ready")
            #expect(await Reaper.shared.wait(for: gone.pid) == .exited(0))
            guard let lastPID = FileHandle(forWritingAtPath: "/proc/sys/kernel/ns_last_pid") else {
                Issue.record("cannot open /proc/sys/kernel/ns_last_pid")
                return
            }
            lastPID.write(Data(String(gone.pid - 1).utf8))
            try lastPID.close()
            // No output pipe: its reading thread would take the pid first.
            let newcomer = try await Spawner.shared.start(
                SpawnRequest(executable: "/bin/sleep", arguments: ["sleep", "30"], environment: [:]))
            defer { newcomer.signal(SIGKILL, toGroup: true) }
            guard newcomer.pid == gone.pid else { continue }  // another process or thread took it first
            #expect(!gone.signal(SIGKILL, toGroup: true))
            await Teardown.group(SIGTERM, grace: .milliseconds(100)).run(on: gone)
            #expect(!newcomer.hasExited, "the newcomer that got the reaped child's pid \(gone.pid) was signalled")
            return
        }
        Issue.record("the pid never came round again in 20 tries")
    }

    @Test func theStepsCallersUse() {
        #expect(
            Teardown.group(SIGINT, grace: .seconds(3)).steps == [
                .signal(SIGINT, toGroup: true), .wait(.seconds(3)), .signal(SIGKILL, toGroup: true),
            ])
        #expect(Teardown.killGroup.steps == [.signal(SIGKILL, toGroup: true)])
        #expect(Teardown.kill.steps == [.signal(SIGKILL, toGroup: false)])
    }
}
