/// How safe-watch handed a candidate its port, and what it means when the candidate did not take it.
///
/// A server that ignores the port it is given binds one of its own — Vapor and Hummingbird bind
/// 8080, safe-watch's own default — and either dies with "Address already in use" or listens where
/// no traffic goes. Either way "exited before it became healthy" does not say what to change; these
/// messages do. The runtime gathers the facts (the candidate's last lines, the TCP ports it listens
/// on); the decisions are here.
public struct PortHandoff: Equatable, Sendable {
    /// The port the candidate was given: private in proxy and tcp mode, serve.listen's in restart mode, a
    /// health port (or none) in socket mode.
    public var port: Int?
    public var mode: ServeMode
    /// `[run] args` as configured (`{port}` not yet replaced).
    public var args: [String]
    /// `[run] port_env`; empty for none.
    public var portEnv: String
    /// Where safe-watch itself listens (proxy, tcp and socket modes), nil in restart mode.
    public var publicAddress: String?

    public init(port: Int?, mode: ServeMode, args: [String], portEnv: String, publicAddress: String?) {
        self.port = port
        self.mode = mode
        self.args = args
        self.portEnv = portEnv
        self.publicAddress = publicAddress
    }

    /// For a candidate that exited before it became healthy: why and what to change, when its
    /// output (its last lines, and the `isNotable` ones before them) says the address it wanted was
    /// taken; nil otherwise.
    public func diagnoseExit(output: [String]) -> String? {
        guard output.contains(where: Self.saysAddressInUse) else { return nil }
        var text = "it said \"Address already in use\""
        switch self.mode {
        case .socket:
            text += ": it binds an address of its own"
            if let publicAddress { text += " (safe-watch holds \(publicAddress) and passes it as fd 3)" }
            return text + "; \(Self.socketModeFix)"
        case .proxy, .tcp, .restart:
            text += ": it binds an address of its own instead of "
            text += self.given.map { "port \(self.port.map(String.init) ?? "?"), which safe-watch gave it \($0)" }
                ?? "a port from safe-watch, which gave it none ([run] args has no {port} and port_env is empty)"
            if let publicAddress { text += "; safe-watch itself listens on \(publicAddress)" }
            text += "; \(self.fix)"
            if self.mode == .restart, let port = self.port {
                text += " (if it does listen on \(port), another program holds that port: `ss -ltnp 'sport = :\(port)'` names it)"
            }
            return text
        }
    }

    /// For a live candidate: when it listens on TCP ports but not on the one it was given (where
    /// safe-watch probes it and sends its traffic), what it listens on and what to change; nil
    /// when it listens on its port, on nothing this can see (a child may hold the socket), or the
    /// mode has no port to compare (socket mode has its own check).
    public func diagnoseListening(_ sockets: [ListeningTCPSocket]) -> String? {
        guard self.mode != .socket, let port = self.port, !sockets.isEmpty, !sockets.contains(where: { $0.port == port }) else {
            return nil
        }
        let addresses = Set(sockets.map { "\($0.address):\($0.port)" }).sorted().joined(separator: ", ")
        var text = "it listens on \(addresses), not on port \(port)"
        text += self.given.map { ", which safe-watch gave it \($0)" } ?? " (safe-watch gave it no port: [run] args has no {port} and port_env is empty)"
        text += " and sends its traffic to; \(self.fix)"
        return text
    }

    /// How the port was passed: "in $PORT", "in its arguments ([run] args)"; nil when it was not.
    private var given: String? {
        var ways: [String] = []
        if self.args.contains(where: { $0.contains("{port}") }) { ways.append("in its arguments ([run] args)") }
        if !self.portEnv.isEmpty { ways.append("in $\(self.portEnv)") }
        return ways.isEmpty ? nil : ways.joined(separator: " and ")
    }

    /// What to change, naming the keys: `{port}` in `[run] args`, or `port_env`.
    private var fix: String {
        if self.args.contains(where: { $0.contains("{port}") }) {
            return "make [run] args put {port} where the server reads its port, or set [run] port_env to the variable it reads"
        }
        return "pass the port the way the server takes it: [run] args with {port}, e.g. "
            + "args = [\"serve\", \"--hostname\", \"127.0.0.1\", \"--port\", \"{port}\"] for Vapor, "
            + "or [run] port_env = the environment variable it reads its port from"
    }

    private static let socketModeFix =
        "in socket mode the server must serve on the socket passed as fd 3 (LISTEN_FDS, sd_listen_fds); "
        + "for a server that binds a port, use mode = \"proxy\" with {port} in [run] args or port_env"

    /// A line of output worth keeping for `diagnoseExit`, however much follows it.
    public static func isNotable(_ line: String) -> Bool {
        Self.saysAddressInUse(line)
    }

    /// NIO, glibc's strerror, Go and Rust all print this; some print the errno's name instead.
    static func saysAddressInUse(_ line: String) -> Bool {
        line.lowercased().contains("address already in use") || line.contains("EADDRINUSE")
    }
}
