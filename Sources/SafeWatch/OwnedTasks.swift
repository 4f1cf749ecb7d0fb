import Glibc
import SafeWatchCore

/// What a task the runtime starts is for. One task per key at a time: a newer one supersedes
/// (cancels) the one before it.
enum TaskKey: Hashable, Sendable {
    /// Signals, as events.
    case signals
    /// systemd's watchdog ticks.
    case watchdog
    /// The look, every second, whether `.safe-watch` is still the directory safe-watch made.
    case stateDirectoryCheck
    /// The one wake-up for the end of a burst of changes.
    case debounceCheck
    case build(BuildID)
    case timer(SupervisorTimer)
    case migrationsCheck(Generation)
    /// What a migration file that just changed would do; they run side by side, each to its end
    /// (cut short, one would say the check failed).
    case migrationsVerdict(Int)
    /// Taking the lock and the control socket again in a recreated state directory.
    case stateRestore(Int)
    /// The spawn of a generation's server.
    case launch(Generation)
    /// The health probing of one server: cancelled when it is superseded, stopped or exits.
    case probe(pid_t)
    /// The wait for one server's exit.
    case exitWatch(pid_t)
    /// The drain and teardown of one server; a second stop (SIGKILL, asked twice) runs beside it.
    case stop(pid_t, signal: Int32)
}

/// The tasks the runtime started and has not seen end. A task leaves when it ends (`ended`);
/// until then it is cancelled when a newer task takes its key or when its work is moot
/// (`cancel`), and at shutdown with all the others (`cancelAll`). No task the runtime starts
/// outlives it unseen.
struct OwnedTasks {
    private var running: [TaskKey: (id: Int, task: Task<Void, Never>)] = [:]
    private var lastID = 0

    /// A number for the next task, to tell it from a newer one under the same key.
    mutating func nextID() -> Int {
        self.lastID += 1
        return self.lastID
    }

    /// Keeps `task` under `key`; the task it supersedes is cancelled.
    mutating func keep(_ key: TaskKey, id: Int, _ task: Task<Void, Never>) {
        self.running.updateValue((id, task), forKey: key)?.task.cancel()
    }

    /// The task `id` has ended (a newer one under its key stays).
    mutating func ended(_ key: TaskKey, id: Int) {
        if self.running[key]?.id == id { self.running[key] = nil }
    }

    func contains(_ key: TaskKey) -> Bool {
        self.running[key] != nil
    }

    mutating func cancel(_ key: TaskKey) {
        self.running.removeValue(forKey: key)?.task.cancel()
    }

    mutating func cancelAll() {
        for (_, owned) in self.running { owned.task.cancel() }
        self.running = [:]
    }
}
