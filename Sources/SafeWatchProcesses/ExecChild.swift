import CSafeWatchShims
import Glibc

/// The hidden `safe-watch __exec-child` mode every server and build is started through.
///
/// posix_spawn cannot set a parent-death signal, and `LISTEN_PID` must be the server's own pid,
/// known only inside the child: this mode sets both, then `execve`s the real program, which keeps
/// the pid, the process group and the death signal.
public enum ExecChild {
    /// The first argument that selects this mode.
    public static let argument = "__exec-child"

    /// argv for starting `executable` through the trampoline at `selfExecutable`.
    public static func arguments(
        selfExecutable: String, deathSignal: Int32, executable: String, arguments: [String]
    ) -> [String] {
        [selfExecutable, argument, String(getpid()), String(deathSignal), "--", executable] + arguments
    }

    /// Runs the mode with argv (`argv[1] == argument`); returns only if it cannot exec.
    public static func run(_ argv: [String]) -> Int32 {
        // argv: self __exec-child PARENT SIGNAL -- program args…
        guard argv.count >= 6, argv[4] == "--", let parent = pid_t(argv[2]), let signal = Int32(argv[3]) else {
            writeToStandardError("safe-watch: \(argument) is internal; it takes PARENT SIGNAL -- PROGRAM [ARGS…]\n")
            return 64
        }
        if signal > 0 {
            _ = sw_set_parent_death_signal(signal)
            // The parent may have died before prctl: then nobody would send the signal.
            if getppid() != parent { return 70 }
        }
        if getenv("LISTEN_FDS") != nil {
            setenv("LISTEN_PID", String(getpid()), 1)
        }
        let program = argv[5]
        let cArguments = Array(argv[5...]).map { strdup($0) } + [nil]
        execv(program, cArguments)
        let code = Errno.current
        writeToStandardError("safe-watch: cannot run \(program): \(code)\n")
        return code == .noSuchFileOrDirectory ? 127 : 126
    }
}

/// Writes straight to fd 2 (Glibc's `stderr` is shared mutable state to Swift 6). Best effort:
/// with stderr closed or gone there is nowhere left to say anything.
public func writeToStandardError(_ text: String) {
    try? FileDescriptor.standardError.writeAll(Array(text.utf8), descriptorMayBeClosed: true)
}
