/// The `safe-watch.toml` that `safe-watch init` writes: the product active, every other key
/// commented out at its default, so the file documents itself and changes nothing until edited.
///
/// Convention (a test holds it): a line `# key = value` is a default — uncommenting it changes
/// nothing; examples that are not defaults are indented further (`#   key = value`).
public struct StarterConfiguration: Equatable, Sendable {
    public static let fileName = "safe-watch.toml"

    /// The product the file makes active.
    public var product: String
    /// The package's other executable products, listed in a comment beside `product`.
    public var otherProducts: [String]
    /// The product's framework: its `[run]` and `[health]` settings are written active.
    public var framework: ServerFramework?

    public init(product: String, otherProducts: [String] = [], framework: ServerFramework? = nil) {
        self.product = product
        self.otherProducts = otherProducts
        self.framework = framework
    }

    /// The starter for a package's executable products; nil when it has none (the caller says how
    /// to fix that: `init` cannot pick a build for a package without an executable).
    public init?(products: ExecutableProducts) {
        switch products.choice {
        case .none: return nil
        case .one(let name): self.init(product: name, framework: products.framework(of: name))
        case .several(let first, let others):
            self.init(product: first, otherProducts: others, framework: products.framework(of: first))
        }
    }

    /// What `init` says about how the product will run, after "safe-watch will build and run …".
    public var howItRuns: String {
        guard let framework = self.framework else {
            return "Your server must listen on the port in $PORT and answer GET /health (or see [run] and [health])."
        }
        var text = "It uses \(framework.name): safe-watch runs it with \(framework.portHandoff) and counts a generation "
            + "healthy once it accepts connections (\(framework.name) has no /health route); see [run] and [health]."
        if case .hummingbird(.unknown) = framework {
            text += " It must listen on the port in $PORT, or set [run] args with {port} or port_env."
        }
        return text
    }

    public var text: String {
        let product = tomlString(self.product)
        let others = self.otherProducts.isEmpty
            ? ""
            : "# other executable products: \(self.otherProducts.joined(separator: ", ")) — pick one\n"
        let build = tomlString("swift build --product \(shellQuoted(self.product))")
        let binary = tomlString(".build/debug/\(self.product)")
        return """
            # safe-watch.toml — written by `safe-watch init`. Every key is optional: a commented-out
            # `key = value` line is the default, so uncomment one to change it. Saving this file while
            # safe-watch runs reloads it (an invalid file is reported and the previous one stays).
            # Command-line flags (--product, --listen, --mode, …) override it. Check the machine with
            # `safe-watch doctor`.

            # The SwiftPM executable product to build and run.
            product = \(product)
            \(others)
            [build]
            # Run with /bin/sh -c in the project directory. Any language works, e.g.:
            #   command = "cargo build"             with  binary = "target/debug/app"
            #   command = "go build -o bin/app ."   with  binary = "bin/app"
            # command = \(build)
            # binary = \(binary)
            # timeout = "10m"             # a longer build is stopped and counts as failed

            [run]
            \(self.runLines)
            # stop_signal = "SIGTERM"     # asks a server to drain and exit
            # stop_timeout = "5s"         # then its process group is killed
            # keep_generations = 3        # staged builds kept for rollback (at least 2)
            # rollback_window = "10s"     # a generation crashing this soon after its swap is rolled back

            [watch]
            # paths = ["."]
            # ignore = []                 # gitignore syntax, e.g. ["tmp/", "*.log"]; .gitignore applies too
            # extensions = ["swift"]      # Package.swift and anything under Sources/ always rebuild
            # debounce = "50ms"           # quiet time after the last change before a build starts
            # poll = "auto"               # "off", or an interval such as "500ms" to poll with stat instead of inotify

            [serve]
            # mode = "proxy"              # HTTP/1.1: each request goes to the newest healthy generation. Or:
            #   "tcp": each new connection is joined byte for byte to the newest generation (HTTP/2, gRPC,
            #     databases); it stays on that generation until it closes, which holds the old one's stop
            #     up to stop_timeout; the [health] check is then "tcp" unless type says otherwise
            #   "socket": servers get the listening socket as fd 3; "restart": the server binds the port
            # listen = "127.0.0.1:8080"   # ":0" picks a free port
            # hold_timeout = "30s"        # how long a request waits while no server is healthy, then 503 (tcp: closed)
            # forwarded_headers = true    # the proxy adds X-Forwarded-For, X-Forwarded-Proto and Forwarded
            # With systemd socket activation, only the sockets of one FileDescriptorName= (default: all), e.g.:
            #   socket_name = "http"

            [health]
            \(self.healthTypeLines)
            # path = "/health"            # GET, healthy on 200–399
            # For type = "exec" (PORT is set), e.g.:
            #   command = "curl -fsS http://127.0.0.1:$PORT/ready"
            # interval = "100ms"          # new candidates are first probed after 5, 10, 20 ms… up to this
            # timeout = "2s"
            # success_threshold = 1
            # failure_threshold = 3
            # startup_timeout = "30s"

            [migrations]
            # dir = "migrations"          # sqlx layout; when it exists every new generation passes the gate
            # The database to check live (default: $DATABASE_URL), e.g.:
            #   database_url = "postgres://app@127.0.0.1/app_dev"
            # apply = "server"            # or "safe-watch": applied before the new server starts
            # backup = false
            # backup_dir = ".safe-watch/backups"
            # ignore_missing = false      # true: versions applied from another branch do not block (sqlx's ignore_missing)

            """
    }
}

extension StarterConfiguration {
    /// `args`, `env` and `port_env`: the framework's active with why, the others commented out at
    /// their defaults.
    fileprivate var runLines: String {
        var lines: [String] = []
        if let framework = self.framework, framework.args != nil || framework.portEnv != nil {
            lines.append(Self.portComment(framework))
        }
        if let args = self.framework?.args {
            lines.append("args = [\(args.map(tomlString).joined(separator: ", "))]")
        } else {
            lines.append("# args = []                   # e.g. [\"serve\", \"--port\", \"{port}\"] for Vapor; {port} is the port")
        }
        lines.append("# env = {}                    # e.g. { LOG_LEVEL = \"debug\" }")
        if let portEnv = self.framework?.portEnv {
            let padding = String(repeating: " ", count: max(1, 30 - "port_env = \(tomlString(portEnv))".count))
            lines.append("port_env = \(tomlString(portEnv))\(padding)# default \"PORT\"; \"\" for none")
        } else {
            lines.append("# port_env = \"PORT\"           # the variable that carries the port, e.g. \"HTTP_PORT\"; \"\" for none")
        }
        return lines.joined(separator: "\n")
    }

    private static func portComment(_ framework: ServerFramework) -> String {
        switch framework {
        case .vapor:
            "# Vapor binds 127.0.0.1:8080 and ignores $PORT: its serve command gets the port of each\n"
                + "# generation ({port}) instead."
        case .hummingbird(.argumentParser):
            "# Hummingbird's template binds 127.0.0.1:8080 unless its --hostname/--port options say\n"
                + "# otherwise: each generation gets its port ({port}) there."
        case .hummingbird(.configuration):
            "# Hummingbird reads http.port with swift-configuration: from the environment, that is HTTP_PORT."
        case .hummingbird(.unknown):
            ""
        }
    }

    /// `type`: tcp for a framework (no /health route to ask), else the commented default.
    fileprivate var healthTypeLines: String {
        guard let framework = self.framework else {
            return "# type = \"http\"               # http | tcp | exec | notify | none (tcp mode's default: \"tcp\")"
        }
        return """
            # \(framework.name) has no /health route: a generation is healthy once it accepts connections.
            # Add a route and set type = "http" with its path to have each generation answer first.
            type = "tcp"                  # default "http"; http | tcp | exec | notify | none
            """
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
func tomlString(_ text: String) -> String {
    var quoted = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": quoted += "\\\""
        case "\\": quoted += "\\\\"
        case "\n": quoted += "\\n"
        case "\t": quoted += "\\t"
        case "\r": quoted += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                quoted += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                quoted.unicodeScalars.append(scalar)
            }
        }
    }
    return quoted + "\""
}
