import Glibc
import SafeWatchProcesses
import SafeWatchSystem

// The hidden exec-child trampoline must run before anything else: it is on every server's and
// build's start path.
if CommandLine.arguments.count > 1, CommandLine.arguments[1] == ExecChild.argument {
    exit(ExecChild.run(CommandLine.arguments))
}
// pg_dump and pg_restore (a backup) go through it as well; they have no ChildLauncher.
ExecChild.selfExecutable = realpath("/proc/self/exe", nil).map { path in
    defer { free(path) }
    return String(cString: path)
}

await SafeWatchCommand.parseAndRun()
