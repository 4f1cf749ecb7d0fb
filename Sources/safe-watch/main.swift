import Glibc
import SafeWatchSystem

// The hidden exec-child trampoline must run before anything else: it is on every server's and
// build's start path.
if CommandLine.arguments.count > 1, CommandLine.arguments[1] == ExecChild.argument {
    exit(ExecChild.run(CommandLine.arguments))
}

await SafeWatchCommand.parseAndRun()
