import func SafeWatchProcesses.signalName

/// When a stop that hangs is cut short. A stop signal starts the clock the moment it arrives, on
/// the thread that receives signals, not in the supervisor's event loop: a wedged loop would never
/// get to it. Past the limit safe-watch kills its servers' process groups and exits (status 70).
public enum HardStop {
    /// Beyond `run.stop_timeout`: the servers have had their stop_timeout by then; this is for
    /// safe-watch's own last steps (stopping orphans, closing the proxy, the last log lines).
    public static let margin: Duration = .seconds(5)

    /// The exit status of a stop cut short (EX_SOFTWARE).
    public static let exitStatus: Int32 = 70

    /// SIGTERM, SIGINT and SIGQUIT stop safe-watch; SIGHUP reloads and starts no clock.
    public static func stops(_ signal: Int32) -> Bool {
        signal == 15 || signal == 2 || signal == 3
    }

    /// How long after the stop signal safe-watch gives up on stopping cleanly.
    public static func limit(stopTimeout: Duration) -> Duration {
        // stop_timeout is parsed below Int64.max nanoseconds, so this cannot overflow Duration
        // (128-bit); a negative value (never parsed) counts as zero.
        max(.zero, stopTimeout) + Self.margin
    }

    /// The line safe-watch prints when it gives up; `killed` are the processes it killed, each
    /// with its process group.
    public static func message(signal: Int32, limit: Duration, killed: [Int32]) -> String {
        let what = killed.isEmpty
            ? "nothing was left to kill"
            : "killed \(killed.count == 1 ? "process" : "processes") \(killed.map(String.init).joined(separator: ", ")), each with its process group, with SIGKILL"
        return "safe-watch: not stopped \(limit.humanReadable) after \(signalName(signal)) (run.stop_timeout + \(Self.margin.humanReadable)); "
            + "\(what); exiting with status \(Self.exitStatus)\n"
    }
}
