import Foundation
import Glibc
import SafeWatchProcesses
import Synchronization
import TestSupport
import Testing

/// Spawning, reaping and process groups with real processes. Serialized: one test makes the test
/// process a subreaper and they all share the one reaper.
@Suite(.serialized) struct ProcessTests {
    init() {
        Reaper.shared.start()
    }

    func spawn(_ script: String, output: OutputPipe? = nil, passing: [Int32] = []) async throws -> pid_t {
        try await Spawner.shared.spawn(
            SpawnRequest(
                executable: "/bin/sh", arguments: ["sh", "-c", script], environment: ["PATH": "/usr/bin:/bin"],
                standardOutput: output?.writeEnd, standardError: output?.writeEnd, passedDescriptors: passing))
    }

    @Test func exitStatusAndSignalAreReported() async throws {
        let exited = try await spawn("exit 3")
        #expect(await Reaper.shared.wait(for: exited) == .exited(3))
        let killed = try await spawn("kill -9 $$")
        #expect(await Reaper.shared.wait(for: killed) == .signalled(9))
    }

    @Test func childLeadsItsOwnProcessGroup() async throws {
        let (output, lines) = try linesOfAPipe()
        let pid = try await spawn("ps -o pgid= -p $$ | tr -d ' '", output: output)
        output.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await lines.wait(until: { $0.contains(String(pid)) }))
    }

    @Test func passedDescriptorBecomesFdThree() async throws {
        let (passed, lines) = try linesOfAPipe()
        let pid = try await spawn("echo through-fd-3 >&3", passing: [try #require(passed.writeEnd).rawValue])
        passed.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await lines.wait(until: { $0 == ["through-fd-3"] }))
    }

    @Test func ignoredSignalsAreResetInTheChild() async throws {
        // Dispatch signal sources need SIG_IGN in safe-watch; a server must still die of SIGTERM.
        let previous = signal(SIGUSR1, SIG_IGN)
        defer { signal(SIGUSR1, previous) }
        let (output, lines) = try linesOfAPipe()
        let pid = try await spawn("echo ready; exec sleep 30", output: output)
        output.closeWriteEnd()
        #expect(await lines.wait(until: { $0 == ["ready"] }))
        kill(-pid, SIGUSR1)  // the group it leads
        #expect(await Reaper.shared.wait(for: pid) == .signalled(SIGUSR1))
    }

    @Test func stoppingTheGroupStopsGrandchildren() async throws {
        let (output, lines) = try linesOfAPipe()
        let pid = try await spawn("sleep 30 & echo $!; wait", output: output)
        output.closeWriteEnd()
        #expect(await lines.wait(until: { $0.count == 1 }))
        let grandchild = pid_t(lines.all.first ?? "") ?? 0
        #expect(grandchild > 0)
        kill(-pid, SIGTERM)  // the group it leads
        #expect(await Reaper.shared.wait(for: pid) == .signalled(SIGTERM))
        // The grandchild got the group's signal too.
        #expect(await waitUntilGone(grandchild))
    }

    @Test func orphansAreReapedBySubreaper() async throws {
        try becomeChildSubreaper()
        let (output, lines) = try linesOfAPipe()
        // sh exits at once; its background sleep is orphaned and reparented to us.
        let pid = try await spawn("sleep 0.2 >/dev/null 2>&1 & echo $!", output: output)
        output.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await lines.wait(until: { $0.count == 1 }))
        let orphan = pid_t(lines.all.first ?? "") ?? 0
        #expect(orphan > 0)
        // It was reparented to us (not init) and, once it exits, reaped: no zombie is left.
        #expect(await Reaper.shared.wait(for: orphan) == .exited(0))
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(orphan)"))
    }

    @Test func outputPipeDeliversLinesThenEOF() async throws {
        let output = try OutputPipe()
        let lines = Lines()
        // Its own recorder: a waiter wakes on arrivals, and EOF is no line.
        let closed = Recorder<Bool>()
        output.start(onLine: { lines.append($0) }, onClose: { closed.append(true) })
        let pid = try await spawn("printf 'one\\ntwo\\r\\nthree'", output: output)
        output.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await lines.wait(until: { $0 == ["one", "two", "three"] }))
        #expect(await closed.wait(until: { $0 == [true] }))
    }

    @Test func theProcessTableFindsAChildByItsExecutableAndParent() async throws {
        let directory = NSTemporaryDirectory() + "process-table-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: directory + "/server")
        // argv[0] does not name the directory: only the executable (/proc/PID/exe) can.
        let pid = try await Spawner.shared.spawn(
            SpawnRequest(executable: directory + "/server", arguments: ["server", "30"], environment: [:]))
        #expect(ProcessTable.running(under: directory) == [pid])
        #expect(ProcessTable.children(of: getpid()).contains(pid))
        kill(pid, SIGKILL)
        #expect(await Reaper.shared.wait(for: pid) == .signalled(SIGKILL))
        #expect(ProcessTable.running(under: directory).isEmpty)
        #expect(!ProcessTable.children(of: getpid()).contains(pid))
    }

    func waitUntilGone(_ pid: pid_t) async -> Bool {
        for _ in 0..<500 {
            if kill(pid, 0) != 0 && errno == ESRCH { return true }
            if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), stat.contains(") Z ") {
                return true  // a zombie of someone else's: it is dead
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }
}

/// Lines from a pipe.
typealias Lines = Recorder<String>

/// A pipe whose read end is already delivering its lines to the recorder returned with it.
func linesOfAPipe() throws -> (OutputPipe, Lines) {
    let pipe = try OutputPipe()
    let lines = Lines()
    pipe.start(onLine: { lines.append($0) })
    return (pipe, lines)
}
