/// How traffic reaches the server.
public enum ServeMode: String, Equatable, Sendable, CaseIterable {
    /// safe-watch listens and forwards each HTTP/1.1 request to the active generation's private port.
    case proxy
    /// safe-watch listens and joins each new connection byte for byte to the active generation's
    /// private port, where it stays until either side closes it: for what HTTP/1.1 routing cannot
    /// carry (HTTP/2 and gRPC, databases, custom protocols).
    case tcp
    /// safe-watch owns the listening socket(s) and passes them to every generation as fds 3…
    /// (`LISTEN_FDS`); old and new overlap on the same socket.
    case socket
    /// The server binds the public port itself: the old one stops before the new one starts.
    case restart

    /// Old and new servers run side by side during a swap.
    public var overlaps: Bool { self != .restart }

    /// safe-watch listens on the public address and sends the traffic to the generation it routes
    /// to, on a private port each generation gets (`[run] args` `{port}`, `port_env`). The old
    /// generation drains what was routed to it before it is stopped.
    public var forwardsToPrivatePort: Bool {
        switch self {
        case .proxy, .tcp: true
        case .socket, .restart: false
        }
    }

    /// The health check when `[health] type` is not written. tcp mode cannot assume its server
    /// answers an HTTP/1.1 GET (an HTTP/2-only server, a database): there a generation is healthy
    /// once it accepts connections.
    public var defaultHealthCheck: HealthCheck.Kind {
        switch self {
        case .tcp: .tcp
        case .proxy, .socket, .restart: .http(path: "/health")
        }
    }

    /// How the public address is written: `tcp://` for what may not be HTTP at all.
    public var addressScheme: String {
        self == .tcp ? "tcp" : "http"
    }

    /// The modes, for messages: `"proxy", "tcp", "socket" or "restart"` (quoted) or
    /// `proxy, tcp, socket or restart`.
    public static func names(quoted: Bool) -> String {
        let names = Self.allCases.map { quoted ? "\"\($0.rawValue)\"" : $0.rawValue }
        return names.dropLast().joined(separator: ", ") + " or " + (names.last ?? "")
    }
}
