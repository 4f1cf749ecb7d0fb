import func SafeWatchProcesses.parseSignal
import TOMLKit

/// A configuration problem, located: "safe-watch.toml:12: [health] interval: …".
public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    /// The key, as written in the file (`health.interval`).
    public var key: String?
    public var message: String

    public init(file: String, line: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let location = self.line.map { "\(self.file):\($0)" } ?? self.file
        let key = self.key.map { "\($0): " } ?? ""
        return "\(location): \(key)\(self.message)"
    }
}

/// Reads `safe-watch.toml` text into a `Configuration`, rejecting unknown keys and bad values with
/// the file, line and key named. Pure: the caller reads the file.
public struct ConfigurationLoader: Sendable {
    public var fileName: String

    public init(fileName: String) {
        self.fileName = fileName
    }

    /// The keys each table accepts; anything else is an error (a typo must not pass silently).
    static let knownKeys: [String: Set<String>] = [
        "": ["product", "build", "run", "watch", "serve", "health", "migrations", "browser"],
        "browser": ["enabled", "prefix", "assets", "public_hosts"],
        "migrations": ["dir", "database_url", "apply", "backup", "backup_dir", "ignore_missing"],
        "build": ["command", "binary", "timeout"],
        "run": ["args", "env", "port_env", "stop_signal", "stop_timeout", "keep_generations", "rollback_window"],
        "watch": ["paths", "ignore", "extensions", "debounce", "poll"],
        "serve": ["mode", "listen", "hold_timeout", "socket_name", "forwarded_headers"],
        "health": ["type", "path", "command", "interval", "timeout", "success_threshold", "failure_threshold",
                   "startup_timeout"],
    ]

    public func load(_ text: String) throws(ConfigurationError) -> Configuration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(file: self.fileName, line: error.source.begin.line, message: "not valid TOML: \(error.description)")
        } catch {
            throw ConfigurationError(file: self.fileName, message: "not valid TOML: \(error)")
        }
        let reader = TableReader(loader: self, text: text)
        var config = Configuration()
        try reader.checkKeys(root, table: "")
        config.product = try reader.string(root, "", "product")

        if let build = try reader.table(root, "build") {
            config.build.command = try reader.nonEmptyString(build, "build", "command")
            config.build.binary = try reader.nonEmptyString(build, "build", "binary")
            config.build.timeout = try reader.duration(build, "build", "timeout") ?? config.build.timeout
        }
        if let run = try reader.table(root, "run") {
            config.run.args = try reader.strings(run, "run", "args") ?? []
            config.run.env = try reader.stringTable(run, "run", "env") ?? [:]
            config.run.portEnv = try reader.string(run, "run", "port_env") ?? config.run.portEnv
            if let text = try reader.string(run, "run", "stop_signal") {
                guard let signal = parseSignal(text) else {
                    throw reader.error("run", "stop_signal", "unknown signal \"\(text)\" (use a name like SIGTERM or SIGINT)")
                }
                config.run.stopSignal = signal
            }
            config.run.stopTimeout = try reader.duration(run, "run", "stop_timeout") ?? config.run.stopTimeout
            if let keep = try reader.int(run, "run", "keep_generations") {
                guard keep >= 2 else { throw reader.error("run", "keep_generations", "must be at least 2 (rollback needs the previous generation), got \(keep)") }
                config.run.keepGenerations = keep
            }
            config.run.rollbackWindow = try reader.duration(run, "run", "rollback_window") ?? config.run.rollbackWindow
        }
        if let watch = try reader.table(root, "watch") {
            config.watch.paths = try reader.strings(watch, "watch", "paths") ?? config.watch.paths
            config.watch.ignore = try reader.strings(watch, "watch", "ignore") ?? []
            config.watch.extensions = (try reader.strings(watch, "watch", "extensions") ?? config.watch.extensions)
                .map { $0.hasPrefix(".") ? String($0.dropFirst()) : $0 }
            config.watch.debounce = try reader.duration(watch, "watch", "debounce") ?? config.watch.debounce
            if let value = watch["poll"] {
                if let enabled = value.bool {
                    config.watch.poll = enabled ? .every(PollSetting.automaticInterval) : .off
                } else if let text = value.string {
                    do {
                        config.watch.poll = try PollSetting(parsing: text)
                    } catch {
                        throw reader.error("watch", "poll", error.description)
                    }
                } else {
                    throw reader.error("watch", "poll", "must be \"auto\", \"off\" or an interval like \"500ms\", got \(value.type)")
                }
            }
        }
        if let serve = try reader.table(root, "serve") {
            if let mode = try reader.string(serve, "serve", "mode") {
                guard let parsed = ServeMode(rawValue: mode) else {
                    throw reader.error("serve", "mode", "unknown mode \"\(mode)\" (use \(ServeMode.names(quoted: true)))")
                }
                config.serve.mode = parsed
            }
            if let listen = try reader.string(serve, "serve", "listen") {
                guard let address = ListenAddress(parsing: listen) else {
                    throw reader.error("serve", "listen", "\"\(listen)\" is not an address (use \"127.0.0.1:8080\" or \"[::1]:8080\")")
                }
                config.serve.listen = address
            }
            config.serve.holdTimeout = try reader.duration(serve, "serve", "hold_timeout") ?? config.serve.holdTimeout
            config.serve.forwardedHeaders = try reader.bool(serve, "serve", "forwarded_headers") ?? config.serve.forwardedHeaders
            if let name = try reader.nonEmptyString(serve, "serve", "socket_name") {
                // systemd's FDNAME: at most 255 characters, no ':' (the LISTEN_FDNAMES separator).
                guard name.count <= 255, !name.contains(":"), name.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                    throw reader.error("serve", "socket_name", "\"\(name)\" cannot be a systemd FileDescriptorName (printable ASCII, no ':' or spaces)")
                }
                config.serve.socketName = name
            }
        }
        if let health = try reader.table(root, "health") {
            config.health = try reader.healthCheck(health)
        }
        if let migrations = try reader.table(root, "migrations") {
            config.migrations.dir = try reader.nonEmptyString(migrations, "migrations", "dir") ?? config.migrations.dir
            config.migrations.databaseURL = try reader.nonEmptyString(migrations, "migrations", "database_url")
            if let apply = try reader.string(migrations, "migrations", "apply") {
                guard let applier = Configuration.Migrations.Applier(rawValue: apply) else {
                    throw reader.error("migrations", "apply", "unknown value \"\(apply)\" (use \"server\" or \"safe-watch\")")
                }
                config.migrations.apply = applier
            }
            if let value = migrations["backup"] {
                guard let backup = value.bool else { throw reader.error("migrations", "backup", "must be true or false") }
                config.migrations.backup = backup
            }
            config.migrations.backupDir = try reader.nonEmptyString(migrations, "migrations", "backup_dir") ?? config.migrations.backupDir
            config.migrations.ignoreMissing = try reader.bool(migrations, "migrations", "ignore_missing") ?? config.migrations.ignoreMissing
        }
        if let browser = try reader.table(root, "browser") {
            config.browser = try reader.browser(browser)
        }
        config.settleModeDefaults()
        return config
    }
}

/// Typed, located access to the TOML tables.
struct TableReader {
    let loader: ConfigurationLoader
    let text: String

    func error(_ table: String, _ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError(
            file: self.loader.fileName, line: self.line(of: key, in: table),
            key: table.isEmpty ? key : "\(table).\(key)", message: message)
    }

    func checkKeys(_ toml: TOMLTable, table: String) throws(ConfigurationError) {
        let known = ConfigurationLoader.knownKeys[table] ?? []
        for key in toml.keys where !known.contains(key) {
            let place = table.isEmpty ? "at the top level" : "in [\(table)]"
            throw self.error(table, key, "unknown key \(place) (known keys: \(known.sorted().joined(separator: ", ")))")
        }
    }

    func table(_ root: TOMLTable, _ name: String) throws(ConfigurationError) -> TOMLTable? {
        guard let value = root[name] else { return nil }
        guard let table = value.table else { throw self.error("", name, "must be a table ([\(name)])") }
        try self.checkKeys(table, table: name)
        return table
    }

    func string(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> String? {
        guard let value = toml[key] else { return nil }
        guard let string = value.string else { throw self.error(table, key, "must be a string, got \(value.type)") }
        return string
    }

    func nonEmptyString(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> String? {
        guard let string = try self.string(toml, table, key) else { return nil }
        guard !string.trimmingWhitespace().isEmpty else { throw self.error(table, key, "must not be empty") }
        return string
    }

    func int(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> Int? {
        guard let value = toml[key] else { return nil }
        guard let int = value.int else { throw self.error(table, key, "must be an integer, got \(value.type)") }
        return int
    }

    func bool(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> Bool? {
        guard let value = toml[key] else { return nil }
        guard let bool = value.bool else { throw self.error(table, key, "must be true or false, got \(value.type)") }
        return bool
    }

    func strings(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> [String]? {
        guard let value = toml[key] else { return nil }
        guard let array = value.array else { throw self.error(table, key, "must be an array of strings, got \(value.type)") }
        var strings: [String] = []
        for element in array {
            guard let string = element.string else {
                throw self.error(table, key, "must be an array of strings, found \(element.type) \(element)")
            }
            strings.append(string)
        }
        return strings
    }

    func stringTable(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> [String: String]? {
        guard let value = toml[key] else { return nil }
        guard let inner = value.table else { throw self.error(table, key, "must be a table of strings, like { NAME = \"value\" }") }
        var result: [String: String] = [:]
        for name in inner.keys {
            guard let string = inner[name]?.string else { throw self.error(table, key, "\(name) must be a string") }
            result[name] = string
        }
        return result
    }

    func duration(_ toml: TOMLTable, _ table: String, _ key: String) throws(ConfigurationError) -> Duration? {
        guard let value = toml[key] else { return nil }
        guard let text = value.string else {
            throw self.error(table, key, "must be a duration string like \"250ms\", \"5s\" or \"2m\", got \(value.type) \(value)")
        }
        guard let duration = parseDuration(text) else {
            throw self.error(table, key, "\"\(text)\" is not a duration (use a number with ms, s, m or h: \"250ms\", \"5s\")")
        }
        return duration
    }

    func healthCheck(_ toml: TOMLTable) throws(ConfigurationError) -> HealthCheck {
        var check = HealthCheck()
        let given = try self.string(toml, "health", "type")
        let type = given ?? "http"
        let path = try self.string(toml, "health", "path")
        // A path says http; with neither, the type is the serve mode's default.
        check.kindFollowsMode = given == nil && path == nil
        let command = try self.nonEmptyString(toml, "health", "command")
        switch type {
        case "http":
            let path = path ?? "/health"
            guard path.hasPrefix("/") else { throw self.error("health", "path", "must start with \"/\", got \"\(path)\"") }
            check.kind = .http(path: path)
        case "tcp": check.kind = .tcp
        case "exec":
            guard let command else { throw self.error("health", "type", "type \"exec\" needs health.command") }
            check.kind = .exec(command: command)
        case "notify": check.kind = .notify
        case "none": check.kind = .none
        default:
            throw self.error("health", "type", "unknown type \"\(type)\" (use http, tcp, exec, notify or none)")
        }
        check.interval = try self.positiveDuration(toml, "interval") ?? check.interval
        check.timeout = try self.positiveDuration(toml, "timeout") ?? check.timeout
        check.startupTimeout = try self.positiveDuration(toml, "startup_timeout") ?? check.startupTimeout
        for key in ["success_threshold", "failure_threshold"] {
            guard let value = try self.int(toml, "health", key) else { continue }
            guard value >= 1 else { throw self.error("health", key, "must be at least 1, got \(value)") }
            if key == "success_threshold" { check.successThreshold = value } else { check.failureThreshold = value }
        }
        return check
    }

    func browser(_ toml: TOMLTable) throws(ConfigurationError) -> Configuration.Browser {
        var browser = Configuration.Browser()
        browser.enabled = try self.bool(toml, "browser", "enabled")
        if let prefix = try self.string(toml, "browser", "prefix") {
            // Compared with the request target as bytes: a prefix needing percent-encoding, or
            // "/" (which would take every path from the server), cannot work.
            let allowed = prefix.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "?") && $0 != UInt8(ascii: "#") && $0 != UInt8(ascii: "%") }
            guard prefix.hasPrefix("/"), prefix.hasSuffix("/"), prefix.count > 1, allowed else {
                throw self.error("browser", "prefix", "must be a path that starts and ends with \"/\" and is not \"/\", like \"/_safe-watch/\", got \"\(prefix)\"")
            }
            browser.prefix = prefix
        }
        if let assets = try self.strings(toml, "browser", "assets") {
            browser.assets = try assets.map { (path: String) throws(ConfigurationError) -> String in
                var path = path
                while path.hasSuffix("/") && path.count > 1 { path.removeLast() }
                if path.hasPrefix("./") { path.removeFirst(2) }
                guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                    throw self.error("browser", "assets", "\"\(path)\" must be a directory inside the project, like \"Public\"")
                }
                return path
            }
        }
        if let hosts = try self.strings(toml, "browser", "public_hosts") {
            browser.publicHosts = try hosts.map { (host: String) throws(ConfigurationError) -> String in
                let host = host.lowercased()
                guard !host.isEmpty, !host.contains("/"), !host.contains(" "), !host.contains("*") else {
                    throw self.error("browser", "public_hosts", "\"\(host)\" is not a host name (use \"dev.example.com\" or \"dev.example.com:443\")")
                }
                return host
            }
        }
        return browser
    }

    private func positiveDuration(_ toml: TOMLTable, _ key: String) throws(ConfigurationError) -> Duration? {
        guard let duration = try self.duration(toml, "health", key) else { return nil }
        guard duration > .zero else { throw self.error("health", key, "must be more than 0") }
        return duration
    }

    /// The line where `key` is set inside `[table]` (1-based); TOMLKit keeps no positions for values.
    func line(of key: String, in table: String) -> Int? {
        var current = ""
        for (index, raw) in self.text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = raw.trimmingWhitespace()
            if line.hasPrefix("[") && !line.hasPrefix("[[") {
                let name = line.dropFirst().prefix { $0 != "]" }.trimmingWhitespace()
                current = name
                if table.isEmpty && name == key { return index + 1 }
                continue
            }
            guard current == table, let equals = line.firstIndex(of: "=") else { continue }
            var name = line[..<equals].trimmingWhitespace()
            if name.hasPrefix("\"") && name.hasSuffix("\"") && name.count >= 2 { name = String(name.dropFirst().dropLast()) }
            if name == key { return index + 1 }
        }
        return nil
    }
}
