/// How a process ended: what the `Reaper` reports, and what the `Supervisor` state machine (in
/// SafeWatchCore) decides on.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signalled(let signal): return "signal \(signalName(signal))"
        }
    }
}
