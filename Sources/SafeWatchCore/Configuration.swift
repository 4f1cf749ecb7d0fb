/// Everything `safe-watch.toml` can say; every key is optional (README, "Configuration reference").
public struct Configuration: Equatable, Sendable {
    /// The executable product to build and run; found with `swift package describe` when unset.
    public var product: String?
    public var build = Build()
    public var run = Run()
    public var watch = Watch()
    public var serve = Serve()
    public var health = HealthCheck()
    public var migrations = Migrations()
    public var browser = Browser()

    public init() {}

    /// The browser side of the proxy: live reload, the build-error overlay, the status page
    /// (README, "In the browser").
    public struct Browser: Equatable, Sendable {
        public init() {}

        /// nil: on in proxy mode, the only mode that sees HTTP responses to inject into.
        public var enabled: Bool?
        /// The reserved path prefix safe-watch answers itself and never forwards; starts and ends with "/".
        public var prefix = "/_safe-watch/"
        /// Directories (relative to the project) whose changes reach the browser without a build;
        /// nil: `Public` and `Resources/Views`, those of them that exist.
        public var assets: [String]?
        /// Host names besides the listen address that may trigger the status page's actions (a
        /// tunnel's name, say).
        public var publicHosts: [String] = []

        /// The asset directories used when `assets` is not set, those that exist.
        public static let defaultAssets = ["Public", "Resources/Views"]
    }

    public struct Migrations: Equatable, Sendable {
        public init() {}

        public enum Applier: String, Equatable, Sendable {
            /// The new server applies pending migrations when it starts (sqlx's `migrate!().run`).
            case server
            /// safe-watch applies them before it launches the new server.
            case safeWatch = "safe-watch"
        }

        /// The sqlx-layout migrations directory, relative to the project.
        public var dir = "migrations"
        /// The database to check live (and apply to); default: $DATABASE_URL.
        public var databaseURL: String?
        public var apply: Applier = .server
        /// Back the database up before pending migrations are applied.
        public var backup = false
        /// Where backups go, relative to the project.
        public var backupDir = ".safe-watch/backups"
        /// sqlx's `ignore_missing`: versions applied in the database with no file in this checkout
        /// (another branch's) do not block.
        public var ignoreMissing = false
    }

    public struct Build: Equatable, Sendable {
        public init() {}

        /// Run with `/bin/sh -c` in the project directory. Default `swift build --product <product>`.
        public var command: String?
        /// The binary the build produces, relative to the project. Default `.build/debug/<product>`.
        public var binary: String?
        /// A build still running after this long is stopped and counts as failed.
        public var timeout: Duration = .seconds(600)
    }

    public struct Run: Equatable, Sendable {
        public init() {}

        /// Arguments for the server; `{port}` is replaced by the port it must listen on.
        public var args: [String] = []
        /// Extra environment for the server.
        public var env: [String: String] = [:]
        /// The environment variable that carries the port; empty for none.
        public var portEnv = "PORT"
        public var stopSignal: Int32 = 15
        /// How long an old server may drain after `stop_signal` before its process group is killed.
        public var stopTimeout: Duration = .seconds(5)
        /// Staged generations kept for rollback (at least 2).
        public var keepGenerations = 3
        /// A generation crashing this soon after its swap is rolled back to the previous one.
        public var rollbackWindow: Duration = .seconds(10)
    }

    public struct Watch: Equatable, Sendable {
        public init() {}

        /// Directories (relative to the project) to watch.
        public var paths: [String] = ["."]
        /// Extra gitignore-style patterns never watched.
        public var ignore: [String] = []
        /// File extensions whose changes rebuild.
        public var extensions: [String] = ["swift"]
        /// Quiet time after the last change before a build starts.
        public var debounce: Duration = .milliseconds(50)
        /// inotify, or stat polling for trees whose file system loses inotify events.
        public var poll: PollSetting = .auto
    }

    public struct Serve: Equatable, Sendable {
        public init() {}

        public var mode: ServeMode = .proxy
        /// The public address: the proxy's in proxy and tcp mode, the shared socket's in socket mode, the
        /// server's own in restart mode. Sockets systemd passes (socket activation) take its place.
        public var listen = ListenAddress(host: "127.0.0.1", port: 8080)
        /// Use only the sockets systemd passes under this name (`FileDescriptorName=` of the
        /// `.socket` unit); nil takes every socket passed.
        public var socketName: String?
        /// How long a connection is held while no healthy server exists: then the proxy answers
        /// 503, tcp mode closes it.
        public var holdTimeout: Duration = .seconds(30)
        /// The proxy tells the server who asked: X-Forwarded-For, X-Forwarded-Proto, Forwarded.
        public var forwardedHeaders = true
    }

    /// Settles what follows the serve mode: a health check whose type nobody chose becomes the
    /// mode's default (`ServeMode.defaultHealthCheck`). Run once the file is read and again once the
    /// command line has had its say (`--mode tcp` on a file without `[health] type`).
    public mutating func settleModeDefaults() {
        if self.health.kindFollowsMode { self.health.kind = self.serve.mode.defaultHealthCheck }
    }

    /// The supervisor's part of the configuration.
    public var policy: SupervisorPolicy {
        SupervisorPolicy(
            mode: self.serve.mode,
            stopSignal: self.run.stopSignal,
            stopTimeout: self.run.stopTimeout,
            rollbackWindow: self.run.rollbackWindow,
            keepGenerations: self.run.keepGenerations
        )
    }

    /// The build command, given the product name.
    public var buildCommand: String? {
        if let command = self.build.command { return command }
        return self.product.map { "swift build --product \(shellQuoted($0))" }
    }

    /// The built binary's path relative to the project.
    public var binaryPath: String? {
        if let binary = self.build.binary { return binary }
        return self.product.map { ".build/debug/\($0)" }
    }
}

/// `host:port`; `[::1]:8080` for IPv6.
public struct ListenAddress: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `127.0.0.1:8080`, `[::1]:8080`, `:8080` (loopback) or `8080`.
    public init?(parsing text: String) {
        var host = "127.0.0.1"
        var portText = Substring(text)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            let given = text[..<colon]
            if !given.isEmpty { host = String(given) }
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port), !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// Quotes `text` for /bin/sh when it needs it.
public func shellQuoted(_ text: String) -> String {
    let safe = text.allSatisfy { $0.isLetter || $0.isNumber || "-_./:=@%+".contains($0) }
    if safe && !text.isEmpty { return text }
    return "'" + text.replacing("'", with: "'\\''") + "'"
}
