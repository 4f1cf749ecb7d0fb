import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import Synchronization

/// The deadline of a stop (`HardStop`), kept on a thread of its own: armed by the signal thread the
/// moment a stop signal arrives, it fires even when the supervisor's event loop, the Swift
/// concurrency pool or the event loops of the proxy are stuck. Firing kills the process groups of
/// safe-watch's children (its servers lead one each, builds too) and of servers still running from
/// the generations directory, writes one line to stderr and `_exit`s.
public final class HardStopTimer: Sendable {
    public static let shared = HardStopTimer()

    private struct State {
        var stopTimeout: Duration = .seconds(5)
        var generationsDirectory: String?
        var armed = false
    }

    private let state = Mutex(State())

    private init() {}

    /// The stop_timeout in force and where the servers' binaries live; called at start, and on
    /// every configuration reload with the new stop_timeout (a stop armed earlier keeps its deadline).
    public func configure(stopTimeout: Duration, generationsDirectory: String? = nil) {
        self.state.withLock {
            $0.stopTimeout = stopTimeout
            if let generationsDirectory { $0.generationsDirectory = generationsDirectory }
        }
    }

    /// Starts the deadline for a stop caused by `signal`. Only the first call counts: a second
    /// SIGTERM does not push the deadline back.
    public func arm(signal: Int32) {
        let settings: (limit: Duration, generations: String?)? = self.state.withLock { state in
            guard !state.armed else { return nil }
            state.armed = true
            return (HardStop.limit(stopTimeout: state.stopTimeout), state.generationsDirectory)
        }
        guard let settings else { return }
        let deadline = ContinuousClock.now + settings.limit
        // A plain thread: nothing it needs (a clock, /proc, kill, write) can be held up by a
        // wedged actor or an exhausted concurrency pool.
        Thread.detachNewThread {
            while ContinuousClock.now < deadline {
                let left = deadline - ContinuousClock.now
                usleep(UInt32(min(left, .milliseconds(200)).components.attoseconds / 1_000_000_000_000))
            }
            Self.giveUp(signal: signal, limit: settings.limit, generations: settings.generations)
        }
    }

    private static func giveUp(signal: Int32, limit: Duration, generations: String?) -> Never {
        let isTarget = { (pid: pid_t) -> Bool in
            ProcessTable.children(of: getpid()).contains(pid)
                || generations.map { ProcessTable.running(under: $0).contains(pid) } ?? false
        }
        var targets = ProcessTable.children(of: getpid())
        if let generations { targets += ProcessTable.running(under: generations) }
        var killed: [pid_t] = []
        for pid in Set(targets).sorted() {
            guard let process = ProcessHandle.open(pid: pid, isStillIt: isTarget) else { continue }
            // A server leads its own process group (its children go with it); anything else is
            // killed alone. Blocking: this thread runs because the async runtime may be stuck.
            (getpgid(pid) == pid ? Teardown.killGroup : Teardown.kill).runBlocking(on: [process])
            killed.append(pid)
        }
        writeToStandardError(HardStop.message(signal: signal, limit: limit, killed: killed))
        _exit(HardStop.exitStatus)  // not exit(): its teardown races libdispatch's threads
    }
}
