import Foundation
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// Processes safe-watch finds running that it did not start in this run, or that outlived their
/// server: servers of a previous safe-watch that was killed, and daemons a server forked.
enum LeftoverProcesses {

    /// Servers of a safe-watch that was killed drain on their parent-death signal (in socket mode
    /// on the very socket the next generation gets). Let them finish, but not forever.
    static func stopServersOfAPreviousRun(stateDirectory: String, run: Configuration.Run, reporter: Reporter) {
        let generations = stateDirectory + "/generations/"
        let leftovers = ProcessTable.running(under: generations)
        guard !leftovers.isEmpty else { return }
        reporter.warning(
            "servers of a previous safe-watch are still running (pid \(leftovers.map(String.init).joined(separator: ", "))); "
                + "they get \(run.stopTimeout.humanReadable) to drain, then SIGKILL")
        // Not our children: found by pid, then held by pidfd (`ProcessHandle.open`).
        let servers = leftovers.compactMap { pid in
            ProcessHandle.open(pid: pid, isStillIt: { ProcessTable.running(under: generations).contains($0) })
        }
        Teardown.group(run.stopSignal, grace: run.stopTimeout).start(on: servers)  // each server leads its own process group
    }

    /// A server that daemonized left a process in a session of its own, reparented to safe-watch
    /// (the child subreaper, or PID 1 in a container): its group was stopped, the daemon was not.
    /// Once every server is gone, whatever is still safe-watch's child is such an orphan: SIGTERM,
    /// then SIGKILL at `deadline` (what is left of the stop signal's stop_timeout: the whole stop fits in
    /// it, as `docker stop` expects). Rounds, because a daemon's own children become ours in turn.
    static func stopOrphans(until deadline: ContinuousClock.Instant) async {
        for _ in 0..<3 {
            let orphans = ProcessTable.children(of: getpid()).compactMap { pid in
                ProcessHandle.open(pid: pid, isStillIt: { ProcessTable.children(of: getpid()).contains($0) })
            }
            guard !orphans.isEmpty else { return }
            await Teardown.alone(SIGTERM, grace: max(.zero, deadline - ContinuousClock.now)).run(on: orphans)
        }
    }
}
