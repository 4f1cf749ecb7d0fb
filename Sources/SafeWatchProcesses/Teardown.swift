import CSafeWatchShims
import Glibc
import Synchronization

/// One step of stopping processes.
public enum TeardownStep: Sendable, Equatable {
    /// `signal` to each process, or to the whole process group it leads (every child safe-watch
    /// spawns leads one, so its own children go with it).
    case signal(Int32, toGroup: Bool)
    /// Up to this long for every process to exit. The steps after it run either way: a signal to a
    /// process or group that is gone reaches nobody, and one to a group whose leader exited still
    /// reaches what the leader left behind.
    case wait(Duration)
}

/// How to stop processes, as data: which signals, how long to wait between them, to the group or
/// not. Every "stop, wait, kill" in safe-watch is one of these, carried out by `run(on:)`, or by
/// `runBlocking(on:)` where no async runtime can be counted on.
public struct Teardown: Sendable, Equatable {
    public var steps: [TeardownStep]

    public init(steps: [TeardownStep]) {
        self.steps = steps
    }

    /// `signal` to the group, up to `grace` for the process to exit, then SIGKILL for whatever is
    /// left of the group.
    public static func group(_ signal: Int32, grace: Duration) -> Teardown {
        Teardown(steps: [.signal(signal, toGroup: true), .wait(grace), .signal(SIGKILL, toGroup: true)])
    }

    /// The same for processes that are not group leaders: each alone.
    public static func alone(_ signal: Int32, grace: Duration) -> Teardown {
        Teardown(steps: [.signal(signal, toGroup: false), .wait(grace), .signal(SIGKILL, toGroup: false)])
    }

    /// SIGKILL for the whole group at once.
    public static let killGroup = Teardown(steps: [.signal(SIGKILL, toGroup: true)])

    /// SIGKILL for the process alone.
    public static let kill = Teardown(steps: [.signal(SIGKILL, toGroup: false)])

    /// Carries out the steps on `processes`, all at once, and returns when they are done.
    public func run(on processes: [ProcessHandle]) async {
        await self.start(on: processes).value
    }

    public func run(on process: ProcessHandle) async {
        await self.start(on: [process]).value
    }

    /// Sends the signals that come before the first wait at once, before returning (a caller that
    /// starts something next knows its signal went first), and carries out the rest in a task.
    /// Cancelling that task does not cut it short: a teardown left halfway would leave a process
    /// that ignored its first signal.
    @discardableResult
    public func start(on processes: [ProcessHandle]) -> Task<Void, Never> {
        var rest = self.steps[...]
        while case .signal(let signal, let toGroup)? = rest.first {
            for process in processes { process.signal(signal, toGroup: toGroup) }
            rest.removeFirst()
        }
        let steps = Array(rest)
        return Task {
            for step in steps {
                switch step {
                case .signal(let signal, let toGroup):
                    for process in processes { process.signal(signal, toGroup: toGroup) }
                case .wait(let duration):
                    let deadline = ContinuousClock.now + duration
                    // The pidfd turns readable at the exit. Looking every 10 ms costs nothing next
                    // to a stop that takes seconds, and needs no thread blocked in poll(2).
                    while ContinuousClock.now < deadline, processes.contains(where: { !$0.hasExited }) {
                        try? await Task.sleep(for: min(.milliseconds(10), deadline - ContinuousClock.now))
                    }
                }
            }
        }
    }

    /// `run(on:)` on the calling thread, blocking: for the hard stop, whose thread must get its
    /// work done when the event loop or the concurrency pool is stuck.
    public func runBlocking(on processes: [ProcessHandle]) {
        for step in self.steps {
            switch step {
            case .signal(let signal, let toGroup):
                for process in processes { process.signal(signal, toGroup: toGroup) }
            case .wait(let duration):
                let deadline = ContinuousClock.now + duration
                while ContinuousClock.now < deadline {
                    let pending = processes.filter { !$0.hasExited }
                    if pending.isEmpty { break }
                    let left = deadline - ContinuousClock.now
                    let milliseconds = Int32(clamping: min(left, .milliseconds(100)).components.attoseconds / 1_000_000_000_000_000)
                    var descriptors = pending.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
                    if descriptors.allSatisfy({ $0.fd >= 0 }) {
                        _ = poll(&descriptors, nfds_t(descriptors.count), max(1, milliseconds))
                    } else {
                        usleep(10_000)  // no pidfd to wait on (see `ProcessHandle`)
                    }
                }
            }
        }
    }
}

/// A process safe-watch signals, named by a pidfd: a pid alone can be reaped by the `Reaper` (or by
/// anyone, for a process that is not our child) and handed to an unrelated process, which a signal
/// sent by number would then hit. The pidfd keeps naming the original process, and through it its
/// process group, however late the signal comes.
///
/// Without pidfds (a kernel older than 5.3, or a seccomp filter that refuses them) it falls back to
/// the pid, as safe-watch did before.
public final class ProcessHandle: Sendable {
    public let pid: pid_t
    /// The pidfd, or -1.
    let descriptor: Int32

    init(pid: pid_t, descriptor: Int32) {
        self.pid = pid
        self.descriptor = descriptor
    }

    deinit {
        if self.descriptor >= 0 { _ = close(self.descriptor) }
    }

    /// A child safe-watch just spawned. The `Spawner` calls this before the `Reaper` can reap it
    /// (`Reaper.withoutReaping`), so the pid still names that child.
    static func openSpawned(_ pid: pid_t) -> ProcessHandle {
        ProcessHandle(pid: pid, descriptor: sw_pidfd_open(pid))
    }

    /// A process safe-watch did not spawn, found by its pid (a server left by a safe-watch that was
    /// killed, or an orphan reparented to us). Its pid is all there is, and it can be reused
    /// between reading /proc and opening the pidfd; so the pidfd is opened first and `isStillIt`,
    /// the test that found the pid, asked again after: if the process at that pid passes it then,
    /// the pidfd names either that process or one that exited in between, which no signal reaches.
    /// Nil if it no longer passes (or is gone).
    public static func open(pid: pid_t, isStillIt: (pid_t) -> Bool) -> ProcessHandle? {
        let descriptor = sw_pidfd_open(pid)
        if descriptor < 0 && Errno.current == .noSuchProcess { return nil }
        let handle = ProcessHandle(pid: pid, descriptor: descriptor)
        return isStillIt(pid) ? handle : nil
    }

    /// Sends `signal` to the process, or to the process group it leads; false if none was reached.
    @discardableResult
    public func signal(_ signal: Int32, toGroup: Bool) -> Bool {
        guard self.descriptor >= 0 else { return kill(toGroup ? -self.pid : self.pid, signal) == 0 }
        if sw_pidfd_send_signal(self.descriptor, signal, toGroup ? 1 : 0) == 0 { return true }
        guard toGroup, Errno.current == .invalidArgument else { return false }  // ESRCH: gone
        // Before Linux 6.9 a pidfd cannot name a group. The group's number is the leader's pid,
        // which is not reused while the leader is unreaped (pidfd signal 0 succeeds on a zombie).
        guard sw_pidfd_send_signal(self.descriptor, 0, 0) == 0 else { return false }
        return kill(-self.pid, signal) == 0
    }

    /// Whether the process has exited (reaped or not).
    public var hasExited: Bool {
        guard self.descriptor >= 0 else { return kill(self.pid, 0) != 0 && Errno.current == .noSuchProcess }
        var descriptor = pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    /// Whether any process of the group it leads is still there (its leader included).
    public var groupExists: Bool {
        self.signal(0, toGroup: true) || Errno.current == .notPermitted
    }

    /// The child's exit status, from the `Reaper`; nil if it did not exit within `timeout`, and then
    /// `teardown` has been carried out on it when this returns.
    public func exitStatus(within timeout: Duration, orElse teardown: Teardown) async -> ExitStatus? {
        let pid = self.pid
        return await withTaskGroup(of: ExitStatus?.self) { group -> ExitStatus? in
            group.addTask { await Reaper.shared.wait(for: pid) as ExitStatus? }
            group.addTask {
                await sleepForTimeout(timeout)
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil { await teardown.run(on: self) }
            group.cancelAll()
            return first
        }
    }
}
