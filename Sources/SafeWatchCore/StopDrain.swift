/// How a server told to stop is let go: first its requests, then its signal, then SIGKILL.
///
/// The runtime asks this with what it sees at the moment of the stop and carries out the answer.
public enum StopDrain: Equatable, Sendable {
    /// Signal at once: the server gets no traffic through safe-watch (restart mode), or the stop
    /// is SIGKILL (asked to stop twice).
    case none
    /// The server was swapped out (or never swapped in): new requests go elsewhere, so let the
    /// ones routed to it (tcp mode: its connections) finish, within `within`.
    case untilIdle(within: Duration)
    /// safe-watch is stopping and this server still answers: it answers the clients' last
    /// requests, within half the timeout (the other half is the server's own, after its signal).
    case lastRequests(within: Duration)

    /// - Parameters:
    ///   - forwardsTraffic: whether requests reach servers through safe-watch (proxy, tcp).
    ///   - shuttingDown: whether safe-watch is stopping.
    ///   - isRouted: whether new requests still go to this server.
    public init(forwardsTraffic: Bool, signal: Int32, timeout: Duration, shuttingDown: Bool, isRouted: Bool) {
        guard forwardsTraffic, signal != 9 else {
            self = .none
            return
        }
        if shuttingDown {
            self = .lastRequests(within: timeout / 2)
        } else if isRouted {
            // Still the target: it would never go idle. Its signal comes at once.
            self = .none
        } else {
            self = .untilIdle(within: timeout)
        }
    }

    /// How long the server has after its signal before SIGKILL, once draining took `drained`: what
    /// is left of `timeout`, but never less than half of it, so that a drain that took all of it (a
    /// WebSocket left open) still leaves the server time to exit cleanly.
    public static func signalTimeout(_ timeout: Duration, drained: Duration) -> Duration {
        max(timeout / 2, timeout - drained)
    }
}
