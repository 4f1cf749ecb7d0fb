/// A Swift server framework safe-watch knows how to run with no configuration.
///
/// Both bind 127.0.0.1:8080 unless told otherwise, which is where safe-watch's proxy listens by
/// default, and neither reads `$PORT`: run with safe-watch's generic defaults, every generation
/// dies with "Address already in use". Neither has a `/health` route unless the app adds one.
public enum ServerFramework: Equatable, Sendable {
    /// Vapor 4: the `serve` command takes `--hostname` and `--port` (ConsoleKit), and nothing reads
    /// the environment for them.
    case vapor
    /// Hummingbird 2: the framework has no command line; the app decides where its address comes from.
    case hummingbird(HummingbirdAddress)

    /// Where a Hummingbird app takes its address from, judged by what its executable uses.
    public enum HummingbirdAddress: Equatable, Sendable {
        /// swift-argument-parser: the project template's `--hostname`/`--port` options.
        case argumentParser
        /// swift-configuration: the newer template reads `http.host`/`http.port` from the command
        /// line and the environment (`HTTP_PORT`).
        case configuration
        /// Neither: the app's own code decides.
        case unknown
    }

    public var name: String {
        switch self {
        case .vapor: "Vapor"
        case .hummingbird: "Hummingbird"
        }
    }

    /// `[run] args` it needs; nil leaves the default (none).
    public var args: [String]? {
        switch self {
        case .vapor: ["serve", "--hostname", "127.0.0.1", "--port", "{port}"]
        case .hummingbird(.argumentParser): ["--hostname", "127.0.0.1", "--port", "{port}"]
        case .hummingbird(.configuration), .hummingbird(.unknown): nil
        }
    }

    /// `[run] port_env` it needs; nil leaves the default (`PORT`). Empty when the port goes in the
    /// arguments: a `PORT` nobody reads would only mislead.
    public var portEnv: String? {
        switch self {
        case .vapor, .hummingbird(.argumentParser): ""
        // swift-configuration's EnvironmentVariablesProvider spells the key http.port HTTP_PORT;
        // the host defaults to 127.0.0.1 once a port is set.
        case .hummingbird(.configuration): "HTTP_PORT"
        case .hummingbird(.unknown): nil
        }
    }

    /// The health check that works with no route added: a generation is healthy once it accepts
    /// connections. Both bind their port only after the app is set up (Vapor after `configure`,
    /// Hummingbird when its server service starts), so accepting means it can answer.
    public var health: HealthCheck.Kind { .tcp }

    /// The framework's settings on top of `configuration` (for a project with no safe-watch.toml).
    public func apply(to configuration: inout Configuration) {
        if let args = self.args { configuration.run.args = args }
        if let portEnv = self.portEnv { configuration.run.portEnv = portEnv }
        configuration.health.kind = self.health
        configuration.health.kindFollowsMode = false
    }

    /// How it gets its port, in a few words: "`serve --hostname 127.0.0.1 --port {port}`".
    public var portHandoff: String {
        if let args = self.args { return "`\(args.joined(separator: " "))`" }
        if let portEnv = self.portEnv, !portEnv.isEmpty { return "the port in $\(portEnv)" }
        return "the port in $PORT"
    }

    /// One line for `run` with no safe-watch.toml: what it assumed about `product`.
    public func assumption(product: String) -> String {
        var line = "no safe-watch.toml: \(product) uses \(self.name), so it runs with \(self.portHandoff)"
        if case .hummingbird(.unknown) = self {
            line += " (if it reads its port elsewhere, set [run] args with {port} or port_env)"
        }
        return line + " and is healthy once it accepts connections (\(self.name) has no /health route); `safe-watch init` writes this down"
    }
}

extension ExecutableProducts {
    /// Recognises the framework of `product` from what its targets use, following the package's
    /// own targets (`Run` → `App` → Vapor, the older Vapor layout) to the products they depend on.
    static func framework(
        of product: Described.Product, in described: Described
    ) -> ServerFramework? {
        let packages = Set(described.dependencies.map { $0.identity.lowercased() })
        let targets = Dictionary(described.targets.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var used: Set<String> = []
        var seen: Set<String> = []
        var queue = product.targets
        while let name = queue.popLast() {
            guard seen.insert(name).inserted, let target = targets[name] else { continue }
            used.formUnion(target.productDependencies)
            queue += target.targetDependencies
        }
        if packages.contains("vapor"), used.contains("Vapor") {
            return .vapor
        }
        if packages.contains("hummingbird"), !used.isDisjoint(with: ["Hummingbird", "HummingbirdCore", "HummingbirdRouter"]) {
            if packages.contains("swift-argument-parser"), used.contains("ArgumentParser") {
                return .hummingbird(.argumentParser)
            }
            if packages.contains("swift-configuration"), used.contains("Configuration") {
                return .hummingbird(.configuration)
            }
            return .hummingbird(.unknown)
        }
        return nil
    }
}
