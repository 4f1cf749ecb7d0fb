import Glibc
import Synchronization
import TestSupport
import Testing

@testable import SafeWatchProcesses

/// What `sw_spawn` sets up between clone and execve, checked from inside real children: the
/// parent-death signal, LISTEN_PID, the descriptors, the signal dispositions and mask, and how a
/// program that cannot run is reported. Part of the serialized ProcessTests (one shared reaper;
/// one test changes this process's signal dispositions).
extension ProcessTests {
    func shell(
        _ script: String, output: OutputPipe? = nil, environment: [String: String] = ["PATH": "/usr/bin:/bin"],
        passing: [Int32] = [], deathSignal: Int32 = 0, setsListenPID: Bool = false
    ) -> SpawnRequest {
        SpawnRequest(
            executable: "/bin/sh", arguments: ["sh", "-c", script], environment: environment,
            standardOutput: output?.writeEnd, standardError: output?.writeEnd, passedDescriptors: passing,
            deathSignal: deathSignal, setsListenPID: setsListenPID)
    }

    @Test func theDeathSignalArrivesWhenTheSpawningThreadEnds() async throws {
        // PR_SET_PDEATHSIG fires when the thread that spawned the child exits: spawn from a thread
        // of our own that ends right after. (The integration test kills safe-watch itself.)
        let spawned = Recorder<pid_t>()
        let failures = Recorder<String>()
        let request = shell("exec sleep 20", deathSignal: SIGUSR2)
        try startDetachedThread(named: "test.spawn") {
            switch Spawner.spawnNow(request) {
            case .success(let handle): spawned.append(handle.pid)
            case .failure(let error): failures.append("\(error)")
            }
        }
        let pid = try #require(await spawned.wait(until: { $0.count == 1 }) ? spawned.all.first : nil, "\(failures.all)")
        #expect(await Reaper.shared.wait(for: pid) == .signalled(SIGUSR2))
    }

    @Test func listenPIDIsTheChildsOwnPidOnlyWhenAsked() async throws {
        let (output, lines) = try linesOfAPipe()
        let withPID = try await Spawner.shared.spawn(shell("echo \"$$ ${LISTEN_PID-unset}\"", output: output, setsListenPID: true))
        #expect(await Reaper.shared.wait(for: withPID) == .exited(0))
        let without = try await Spawner.shared.spawn(shell("echo \"without ${LISTEN_PID-unset}\"", output: output))
        #expect(await Reaper.shared.wait(for: without) == .exited(0))
        output.closeWriteEnd()
        #expect(await lines.wait(until: { $0 == ["\(withPID) \(withPID)", "without unset"] }), "\(lines.all)")
    }

    @Test func aChildLeadsItsOwnProcessGroupInOurSessionWithoutATerminal() async throws {
        // Its own group: it is stopped as a group. Our session: a new one would be a new scheduling
        // autogroup, slower to get a CPU under load. No controlling terminal: /dev/tty cannot be
        // opened. /proc/PID/stat after the command name: state, ppid, pgrp, session, tty_nr.
        let (output, lines) = try linesOfAPipe()
        let script = """
            sed 's/.*) //' /proc/$$/stat | cut -d' ' -f3-5
            if (exec 3</dev/tty) 2>/dev/null; then echo terminal; else echo no terminal; fi
            """
        let pid = try await Spawner.shared.spawn(shell(script, output: output))
        output.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await lines.wait(until: { $0.count == 2 }), "\(lines.all)")
        #expect(lines.all == ["\(pid) \(getsid(0)) 0", "no terminal"])
    }

    @Test func passedDescriptorsKeepTheirOrderAndNothingElseIsInherited() async throws {
        let (first, firstLines) = try linesOfAPipe()
        let (second, secondLines) = try linesOfAPipe()
        // A descriptor of ours without FD_CLOEXEC must not reach the child either.
        var leaky: [Int32] = [-1, -1]
        #expect(pipe(&leaky) == 0)
        defer { leaky.forEach { close($0) } }
        let firstEnd = try #require(first.writeEnd).rawValue
        let secondEnd = try #require(second.writeEnd).rawValue
        let script = """
            echo three >&3; echo four >&4
            for fd in 5 \(leaky[0]) \(leaky[1]); do [ -e /proc/$$/fd/$fd ] && echo "fd $fd is open" >&3; done
            echo "stdin $(readlink /proc/$$/fd/0)" >&3
            """
        // In reverse order of their numbers: moving one into place must not overwrite the other.
        let pid = try await Spawner.shared.spawn(shell(script, passing: [secondEnd, firstEnd]))
        first.closeWriteEnd()
        second.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await firstLines.wait(until: { $0 == ["four"] }), "\(firstLines.all)")
        #expect(await secondLines.wait(until: { $0 == ["three", "stdin /dev/null"] }), "\(secondLines.all)")
    }

    @Test func ignoredAndBlockedSignalsAreNotInherited() async throws {
        // safe-watch ignores SIGPIPE (writes to closed sockets) and hands SIGINT and SIGTERM to
        // Dispatch (SIG_IGN); sw_spawn blocks every signal around clone. None of that may reach a
        // server: /proc says what it ignores and blocks.
        let previousPipe = signal(SIGPIPE, SIG_IGN)
        let previousInterrupt = signal(SIGINT, SIG_IGN)
        defer {
            signal(SIGPIPE, previousPipe)
            signal(SIGINT, previousInterrupt)
        }
        let (output, lines) = try linesOfAPipe()
        // grep itself reads its /proc status: a shell would clear its mask on start (dash does).
        let pid = try await Spawner.shared.spawn(
            SpawnRequest(
                executable: "/bin/grep", arguments: ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], environment: [:],
                standardOutput: output.writeEnd, standardError: output.writeEnd))
        output.closeWriteEnd()
        #expect(await Reaper.shared.wait(for: pid) == .exited(0))
        #expect(await lines.wait(until: { $0.count == 2 }))
        #expect(lines.all.sorted() == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"])
    }

    @Test func aProgramThatCannotRunIsReportedByTheSpawn() async throws {
        let missing = "/nonexistent-\(getpid())/server"
        do throws(SystemError) {
            _ = try await Spawner.shared.spawn(SpawnRequest(executable: missing, arguments: ["server"], environment: [:]))
            Issue.record("spawning \(missing) succeeded")
        } catch {
            #expect(error.isExecFailure)
            #expect("\(error)" == "cannot run \(missing): No such file or directory")
        }
        do throws(SystemError) {
            _ = try await Spawner.shared.spawn(SpawnRequest(executable: "/etc/passwd", arguments: ["passwd"], environment: [:]))
            Issue.record("spawning a file that is not executable succeeded")
        } catch {
            #expect("\(error)" == "cannot run /etc/passwd: Permission denied")
        }
        let directory = "/nonexistent-\(getpid())"
        do throws(SystemError) {
            _ = try await Spawner.shared.spawn(
                SpawnRequest(executable: "/bin/true", arguments: ["true"], environment: [:], workingDirectory: directory))
            Issue.record("spawning in a missing directory succeeded")
        } catch {
            #expect(!error.isExecFailure)
            #expect("\(error)" == "chdir \(directory): No such file or directory")
        }
    }
}
