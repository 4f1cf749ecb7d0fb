import SafeWatchCore
import Testing

private let loader = ConfigurationLoader(fileName: "safe-watch.toml")

/// The error `text` is rejected with; nil when it loads.
private func loadError(_ text: String) -> ConfigurationError? {
    do {
        _ = try loader.load(text)
        return nil
    } catch {
        return error
    }
}

private func load(_ text: String) throws -> Configuration {
    try loader.load(text)
}

// MARK: - Defaults

@Suite("Configuration defaults")
struct ConfigurationDefaultsTests {
    @Test("empty text gives every documented default")
    func emptyTextGivesDefaults() throws {
        let config = try load("")
        #expect(config == Configuration())
        #expect(config.product == nil)
        #expect(config.build.command == nil)
        #expect(config.build.binary == nil)
        #expect(config.build.timeout == .seconds(600))
        #expect(config.run.args == [])
        #expect(config.run.env == [:])
        #expect(config.run.portEnv == "PORT")
        #expect(config.run.stopSignal == 15)
        #expect(config.run.stopTimeout == .seconds(5))
        #expect(config.run.keepGenerations == 3)
        #expect(config.run.rollbackWindow == .seconds(10))
        #expect(config.watch.paths == ["."])
        #expect(config.watch.ignore == [])
        #expect(config.watch.extensions == ["swift"])
        #expect(config.watch.debounce == .milliseconds(50))
        #expect(config.serve.mode == .proxy)
        #expect(config.serve.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(config.serve.holdTimeout == .seconds(30))
        #expect(config.health.kind == .http(path: "/health"))
        #expect(config.health.interval == .milliseconds(100))
        #expect(config.health.timeout == .seconds(2))
        #expect(config.health.successThreshold == 1)
        #expect(config.health.failureThreshold == 3)
        #expect(config.health.startupTimeout == .seconds(30))
        #expect(config.buildCommand == nil)
        #expect(config.binaryPath == nil)
    }

    @Test("comments, blank lines and empty tables keep the defaults")
    func commentsAndEmptyTables() throws {
        let config = try load(
            """
            # safe-watch configuration

            [build]
            [run]
            # nothing here
            [watch]
            [serve]
            [health]
            """)
        #expect(config == Configuration())
    }

    @Test("an empty [health] table is the default http check")
    func emptyHealthTable() throws {
        let config = try load("[health]\n")
        #expect(config.health == HealthCheck())
        #expect(config.health.kind == .http(path: "/health"))
    }
}

// MARK: - Every key

@Suite("Configuration keys")
struct ConfigurationKeysTests {
    static let full = """
        product = "hello-server"

        [build]
        command = "swift build -c release --product hello-server"
        binary = ".build/release/hello-server"
        timeout = "2m"

        [run]
        args = ["--port", "{port}", "--verbose"]
        env = { LOG_LEVEL = "debug", MODE = "dev" }
        port_env = "HTTP_PORT"
        stop_signal = "SIGINT"
        stop_timeout = "1.5s"
        keep_generations = 5
        rollback_window = "250ms"

        [watch]
        paths = ["Sources", "Package.swift"]
        ignore = ["*.generated.swift", "tmp/"]
        extensions = [".swift", "mustache"]
        debounce = "50ms"

        [serve]
        mode = "restart"
        listen = "[::1]:9000"
        hold_timeout = "1h"

        [health]
        type = "exec"
        command = "curl -fsS localhost:$PORT/ready"
        interval = "200ms"
        timeout = "3s"
        success_threshold = 2
        failure_threshold = 5
        startup_timeout = "45s"
        """

    @Test("top level: product")
    func product() throws {
        let config = try load(Self.full)
        #expect(config.product == "hello-server")
    }

    @Test("[build] command, binary, timeout")
    func build() throws {
        let config = try load(Self.full)
        #expect(config.build.command == "swift build -c release --product hello-server")
        #expect(config.build.binary == ".build/release/hello-server")
        #expect(config.build.timeout == .seconds(120))
        #expect(config.buildCommand == "swift build -c release --product hello-server")
        #expect(config.binaryPath == ".build/release/hello-server")
    }

    @Test("[run] args, env, port_env, stop_signal, stop_timeout, keep_generations, rollback_window")
    func run() throws {
        let config = try load(Self.full)
        #expect(config.run.args == ["--port", "{port}", "--verbose"])
        #expect(config.run.env == ["LOG_LEVEL": "debug", "MODE": "dev"])
        #expect(config.run.portEnv == "HTTP_PORT")
        #expect(config.run.stopSignal == 2)
        #expect(config.run.stopTimeout == .milliseconds(1500))
        #expect(config.run.keepGenerations == 5)
        #expect(config.run.rollbackWindow == .milliseconds(250))
    }

    @Test("[watch] paths, ignore, extensions (leading dot dropped), debounce")
    func watch() throws {
        let config = try load(Self.full)
        #expect(config.watch.paths == ["Sources", "Package.swift"])
        #expect(config.watch.ignore == ["*.generated.swift", "tmp/"])
        #expect(config.watch.extensions == ["swift", "mustache"])
        #expect(config.watch.debounce == .milliseconds(50))
    }

    @Test("[serve] mode, listen, hold_timeout")
    func serve() throws {
        let config = try load(Self.full)
        #expect(config.serve.mode == .restart)
        #expect(config.serve.listen == ListenAddress(host: "::1", port: 9000))
        #expect(config.serve.holdTimeout == .seconds(3600))
    }

    @Test("[health] type, command, interval, timeout, thresholds, startup_timeout")
    func health() throws {
        let config = try load(Self.full)
        #expect(config.health.kind == .exec(command: "curl -fsS localhost:$PORT/ready"))
        #expect(config.health.interval == .milliseconds(200))
        #expect(config.health.timeout == .seconds(3))
        #expect(config.health.successThreshold == 2)
        #expect(config.health.failureThreshold == 5)
        #expect(config.health.startupTimeout == .seconds(45))
    }

    @Test("the supervisor policy comes from [serve] and [run]")
    func policy() throws {
        let policy = try load(Self.full).policy
        #expect(policy.mode == .restart)
        #expect(policy.stopSignal == 2)
        #expect(policy.stopTimeout == .milliseconds(1500))
        #expect(policy.rollbackWindow == .milliseconds(250))
        #expect(policy.keepGenerations == 5)
    }

    @Test("[health] path for http checks")
    func healthHTTPPath() throws {
        let config = try load(
            """
            [health]
            type = "http"
            path = "/ready?full=1"
            """)
        #expect(config.health.kind == .http(path: "/ready?full=1"))
    }

    @Test("[health] path without type is an http check")
    func healthPathAlone() throws {
        let config = try load("[health]\npath = \"/status\"\n")
        #expect(config.health.kind == .http(path: "/status"))
    }

    @Test(
        "[health] type tcp / notify / none",
        arguments: [
            ("tcp", HealthCheck.Kind.tcp),
            ("notify", HealthCheck.Kind.notify),
            ("none", HealthCheck.Kind.none),
        ])
    func healthKinds(type: String, kind: HealthCheck.Kind) throws {
        let config = try load("[health]\ntype = \"\(type)\"\n")
        #expect(config.health.kind == kind)
    }

    @Test("a set [watch] table leaves unset keys at their defaults")
    func partialTables() throws {
        let config = try load(
            """
            [watch]
            debounce = "1s"
            [run]
            keep_generations = 2
            """)
        #expect(config.watch.debounce == .seconds(1))
        #expect(config.watch.paths == ["."])
        #expect(config.watch.extensions == ["swift"])
        #expect(config.run.keepGenerations == 2)
        #expect(config.run.stopSignal == 15)
        #expect(config.run.portEnv == "PORT")
        #expect(config.serve == Configuration.Serve())
    }

    @Test("an empty port_env is allowed (no port variable)")
    func emptyPortEnv() throws {
        #expect(try load("[run]\nport_env = \"\"\n").run.portEnv == "")
    }

    @Test("CRLF line endings load")
    func crlf() throws {
        let config = try load("product = \"app\"\r\n[run]\r\nkeep_generations = 4\r\n")
        #expect(config.product == "app")
        #expect(config.run.keepGenerations == 4)
    }
}

// MARK: - Derived values

@Suite("Configuration derived values")
struct ConfigurationDerivedTests {
    @Test("build command and binary default from the product")
    func defaultsFromProduct() throws {
        let config = try load("product = \"hello-server\"\n")
        #expect(config.buildCommand == "swift build --product hello-server")
        #expect(config.binaryPath == ".build/debug/hello-server")
    }

    @Test("the default build command quotes a product name that needs it")
    func quotedProduct() throws {
        let config = try load("product = \"my server\"\n")
        #expect(config.buildCommand == "swift build --product 'my server'")
        #expect(config.binaryPath == ".build/debug/my server")
    }

    @Test(
        "shellQuoted",
        arguments: [
            ("hello-server", "hello-server"),
            ("a_b.c/d:e=f@g%h+i", "a_b.c/d:e=f@g%h+i"),
            ("my app", "'my app'"),
            ("it's", "'it'\\''s'"),
            ("", "''"),
            ("$HOME", "'$HOME'"),
            ("a;rm -rf /", "'a;rm -rf /'"),
        ])
    func shellQuoting(input: String, expected: String) {
        #expect(shellQuoted(input) == expected)
    }
}

// MARK: - Durations and signals through the loader

@Suite("Configuration durations and signals")
struct ConfigurationValueTests {
    @Test(
        "durations",
        arguments: [
            ("250ms", Duration.milliseconds(250)),
            ("1.5s", Duration.milliseconds(1500)),
            ("2m", Duration.seconds(120)),
            ("5s", Duration.seconds(5)),
            ("1h", Duration.seconds(3600)),
            ("0.5m", Duration.seconds(30)),
            ("750us", Duration.microseconds(750)),
            ("0s", Duration.zero),
            (" 3 s ", Duration.seconds(3)),
        ])
    func durations(text: String, expected: Duration) throws {
        let config = try load("[watch]\ndebounce = \"\(text)\"\n")
        #expect(config.watch.debounce == expected)
    }

    @Test(
        "stop_signal names and numbers",
        arguments: [
            ("SIGTERM", Int32(15)),
            ("TERM", 15),
            ("term", 15),
            ("SIGINT", 2),
            ("INT", 2),
            ("hup", 1),
            ("SIGQUIT", 3),
            ("SIGUSR1", 10),
            ("9", 9),
            ("15", 15),
        ])
    func signals(text: String, expected: Int32) throws {
        let config = try load("[run]\nstop_signal = \"\(text)\"\n")
        #expect(config.run.stopSignal == expected)
    }

    @Test(
        "listen addresses",
        arguments: [
            ("127.0.0.1:8080", ListenAddress(host: "127.0.0.1", port: 8080)),
            ("0.0.0.0:80", ListenAddress(host: "0.0.0.0", port: 80)),
            ("[::1]:9000", ListenAddress(host: "::1", port: 9000)),
            (":8081", ListenAddress(host: "127.0.0.1", port: 8081)),
            ("8082", ListenAddress(host: "127.0.0.1", port: 8082)),
            ("localhost:3000", ListenAddress(host: "localhost", port: 3000)),
        ])
    func listen(text: String, expected: ListenAddress) throws {
        let config = try load("[serve]\nlisten = \"\(text)\"\n")
        #expect(config.serve.listen == expected)
    }
}

// MARK: - ListenAddress

@Suite("ListenAddress")
struct ListenAddressTests {
    @Test(
        "parses",
        arguments: [
            ("127.0.0.1:8080", "127.0.0.1", 8080),
            ("[::1]:9000", "::1", 9000),
            ("[fe80::1%eth0]:443", "fe80::1%eth0", 443),
            (":8080", "127.0.0.1", 8080),
            ("8080", "127.0.0.1", 8080),
            ("0", "127.0.0.1", 0),
            ("example.com:65535", "example.com", 65535),
        ])
    func parses(text: String, host: String, port: Int) throws {
        let address = try #require(ListenAddress(parsing: text))
        #expect(address.host == host)
        #expect(address.port == port)
    }

    @Test(
        "rejects",
        arguments: [
            "", "localhost", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536", "127.0.0.1:-1",
            "[::1]", "[::1]9000", "[::1:9000", "[]:9000", "host:80x", "99999",
        ])
    func rejects(text: String) {
        #expect(ListenAddress(parsing: text) == nil)
    }

    @Test("description brackets IPv6 hosts")
    func description() {
        #expect(ListenAddress(host: "127.0.0.1", port: 8080).description == "127.0.0.1:8080")
        #expect(ListenAddress(host: "::1", port: 9000).description == "[::1]:9000")
        #expect(ListenAddress(parsing: "[::1]:9000")?.description == "[::1]:9000")
    }
}

// MARK: - Errors

@Suite("Configuration errors")
struct ConfigurationErrorTests {
    /// Checks the located parts of an error and that `description` starts with `file:line: key: `.
    private func expectLocated(
        _ error: ConfigurationError?, line: Int, key: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error else {
            Issue.record("expected a configuration error", sourceLocation: sourceLocation)
            return
        }
        #expect(error.file == "safe-watch.toml", sourceLocation: sourceLocation)
        #expect(error.line == line, sourceLocation: sourceLocation)
        #expect(error.key == key, sourceLocation: sourceLocation)
        #expect(
            error.description.hasPrefix("safe-watch.toml:\(line): \(key): "),
            "description: \(error.description)", sourceLocation: sourceLocation)
    }

    @Test("unknown top-level key")
    func unknownTopLevelKey() {
        let error = loadError(
            """
            product = "app"

            prodcut = "typo"
            """)
        expectLocated(error, line: 3, key: "prodcut")
        #expect(
            error?.description
                == "safe-watch.toml:3: prodcut: unknown key at the top level (known keys: browser, build, health, migrations, product, run, serve, watch)"
        )
    }

    @Test("unknown top-level table")
    func unknownTopLevelTable() {
        let error = loadError(
            """
            product = "app"
            [build]
            timeout = "1s"

            [helth]
            type = "tcp"
            """)
        expectLocated(error, line: 5, key: "helth")
        #expect(error?.message.contains("unknown key at the top level") == true)
    }

    @Test("unknown key inside [health]")
    func unknownHealthKey() {
        let error = loadError(
            """
            [build]
            timeout = "1s"

            [health]
            type = "http"
            intervall = "1s"
            """)
        expectLocated(error, line: 6, key: "health.intervall")
        #expect(error?.message.hasPrefix("unknown key in [health] (known keys: command, failure_threshold,") == true)
    }

    @Test("unknown key inside [run], [watch], [serve], [build]", arguments: ["run", "watch", "serve", "build"])
    func unknownKeyInTable(table: String) {
        let error = loadError("# header\n[\(table)]\nbogus = 1\n")
        expectLocated(error, line: 3, key: "\(table).bogus")
        #expect(error?.message.contains("unknown key in [\(table)]") == true)
    }

    @Test("a string where an integer is expected")
    func stringForInt() {
        let error = loadError(
            """
            [run]
            stop_timeout = "1s"
            keep_generations = "3"
            """)
        expectLocated(error, line: 3, key: "run.keep_generations")
        #expect(error?.message == "must be an integer, got string")
    }

    @Test("a string where a health threshold is expected")
    func stringForThreshold() {
        let error = loadError("[health]\ntype = \"tcp\"\n\nsuccess_threshold = \"2\"\n")
        expectLocated(error, line: 4, key: "health.success_threshold")
        #expect(error?.message == "must be an integer, got string")
    }

    @Test("an integer where a string is expected")
    func intForString() {
        let error = loadError("\n\nproduct = 5\n")
        expectLocated(error, line: 3, key: "product")
        #expect(error?.message == "must be a string, got integer")
    }

    @Test("a number where a duration string is expected")
    func numberForDuration() {
        let error = loadError("[build]\ntimeout = 5\n")
        expectLocated(error, line: 2, key: "build.timeout")
        #expect(error?.message.hasPrefix("must be a duration string like \"250ms\"") == true)
    }

    @Test("a string where an array of strings is expected")
    func stringForArray() {
        let error = loadError("[watch]\npaths = \"Sources\"\n")
        expectLocated(error, line: 2, key: "watch.paths")
        #expect(error?.message.hasPrefix("must be an array of strings") == true)
    }

    @Test("an array holding a non-string")
    func arrayWithInt() {
        let error = loadError("[run]\nargs = [\"--port\", 8080]\n")
        expectLocated(error, line: 2, key: "run.args")
        #expect(error?.message.hasPrefix("must be an array of strings, found integer") == true)
    }

    @Test("env must be a table of strings")
    func envValues() {
        let notTable = loadError("[run]\nenv = \"A=1\"\n")
        expectLocated(notTable, line: 2, key: "run.env")
        let notString = loadError("[run]\nenv = { A = 1 }\n")
        expectLocated(notString, line: 2, key: "run.env")
        #expect(notString?.message == "A must be a string")
    }

    @Test("a known table given as a value")
    func tableAsValue() {
        let error = loadError("product = \"app\"\nbuild = \"swift build\"\n")
        expectLocated(error, line: 2, key: "build")
        #expect(error?.message == "must be a table ([build])")
    }

    @Test("a bad duration", arguments: ["fast", "10", "-1s", "1.5 parsecs", "s", "1e30h"])
    func badDuration(text: String) {
        let error = loadError(
            """
            [watch]
            paths = ["Sources"]
            debounce = "\(text)"
            """)
        expectLocated(error, line: 3, key: "watch.debounce")
        #expect(error?.message.hasPrefix("\"\(text)\" is not a duration") == true)
    }

    @Test("a bad duration in [health] points at [health], not an earlier table with the same key")
    func badDurationSameKeyElsewhere() {
        let error = loadError(
            """
            [build]
            timeout = "10m"

            [health]
            type = "tcp"
            timeout = "soon"
            """)
        expectLocated(error, line: 6, key: "health.timeout")
    }

    @Test("a zero health duration")
    func zeroHealthDuration() {
        let error = loadError("[health]\ninterval = \"0ms\"\n")
        expectLocated(error, line: 2, key: "health.interval")
        #expect(error?.message == "must be more than 0")
    }

    @Test("a bad mode")
    func badMode() {
        let error = loadError(
            """
            [serve]
            listen = "127.0.0.1:8080"
            mode = "blue-green"
            """)
        expectLocated(error, line: 3, key: "serve.mode")
        #expect(error?.message == "unknown mode \"blue-green\" (use \"proxy\", \"tcp\", \"socket\" or \"restart\")")
    }

    @Test("a bad signal", arguments: ["SIGFOO", "bogus", "99", ""])
    func badSignal(text: String) {
        let error = loadError("[run]\n\nstop_signal = \"\(text)\"\n")
        expectLocated(error, line: 3, key: "run.stop_signal")
        #expect(error?.message.hasPrefix("unknown signal \"\(text)\"") == true)
    }

    @Test("a bad listen address")
    func badListen() {
        let error = loadError("[serve]\nlisten = \"localhost\"\n")
        expectLocated(error, line: 2, key: "serve.listen")
        #expect(error?.message.hasPrefix("\"localhost\" is not an address") == true)
    }

    @Test("invalid TOML syntax carries the parser's line")
    func invalidTOML() throws {
        let error = try #require(
            loadError(
                """
                product = "app"

                [run]
                stop_timeout = "5s
                keep_generations = 3
                """))
        #expect(error.file == "safe-watch.toml")
        #expect(error.line == 4)
        #expect(error.key == nil)
        #expect(error.message.hasPrefix("not valid TOML: "))
        #expect(error.description.hasPrefix("safe-watch.toml:4: not valid TOML: "))
    }

    @Test("a duplicate key is invalid TOML at its line")
    func duplicateKey() throws {
        let error = try #require(loadError("[run]\nkeep_generations = 3\nkeep_generations = 4\n"))
        #expect(error.line == 3)
        #expect(error.key == nil)
        #expect(error.description.hasPrefix("safe-watch.toml:3: not valid TOML: "))
    }

    @Test("keep_generations below 2", arguments: [1, 0, -3])
    func keepGenerationsTooSmall(value: Int) {
        let error = loadError(
            """
            [run]
            args = []
            keep_generations = \(value)
            """)
        expectLocated(error, line: 3, key: "run.keep_generations")
        #expect(error?.message == "must be at least 2 (rollback needs the previous generation), got \(value)")
    }

    @Test("an exec health check without a command")
    func execWithoutCommand() {
        let error = loadError(
            """
            [health]
            interval = "1s"
            type = "exec"
            """)
        expectLocated(error, line: 3, key: "health.type")
        #expect(error?.message == "type \"exec\" needs health.command")
    }

    @Test("an exec health check with a blank command")
    func execBlankCommand() {
        let error = loadError("[health]\ntype = \"exec\"\ncommand = \"   \"\n")
        expectLocated(error, line: 3, key: "health.command")
        #expect(error?.message == "must not be empty")
    }

    @Test("health.path without a leading slash")
    func healthPathWithoutSlash() {
        let error = loadError(
            """
            [health]
            type = "http"
            path = "health"
            """)
        expectLocated(error, line: 3, key: "health.path")
        #expect(error?.message == "must start with \"/\", got \"health\"")
    }

    @Test("an unknown health type")
    func unknownHealthType() {
        let error = loadError("[health]\ntype = \"grpc\"\n")
        expectLocated(error, line: 2, key: "health.type")
        #expect(error?.message.hasPrefix("unknown type \"grpc\"") == true)
    }

    @Test("health thresholds below 1", arguments: ["success_threshold", "failure_threshold"])
    func thresholdTooSmall(key: String) {
        let error = loadError("[health]\n\(key) = 0\n")
        expectLocated(error, line: 2, key: "health.\(key)")
        #expect(error?.message == "must be at least 1, got 0")
    }

    @Test("an empty build command")
    func emptyBuildCommand() {
        let error = loadError("[build]\ncommand = \"\"\n")
        expectLocated(error, line: 2, key: "build.command")
        #expect(error?.message == "must not be empty")
    }

    @Test("quoted keys and indented lines still get their line")
    func quotedKey() {
        let error = loadError("[run]\n  \"keep_generations\" = 1\n")
        expectLocated(error, line: 2, key: "run.keep_generations")
    }

    @Test("CRLF files report the right line")
    func crlfLines() {
        let error = loadError("product = \"app\"\r\n\r\n[serve]\r\nmode = \"blue\"\r\n")
        expectLocated(error, line: 4, key: "serve.mode")
    }

    @Test("the file name is the one given to the loader")
    func fileName() {
        let other = ConfigurationLoader(fileName: "config/dev.toml")
        do {
            _ = try other.load("[serve]\nmode = \"x\"\n")
            Issue.record("expected an error")
        } catch {
            #expect(error.file == "config/dev.toml")
            #expect(error.description.hasPrefix("config/dev.toml:2: serve.mode: "))
        }
    }

    @Test("description without line or key")
    func descriptionShapes() {
        #expect(ConfigurationError(file: "f.toml", message: "boom").description == "f.toml: boom")
        #expect(ConfigurationError(file: "f.toml", line: 7, message: "boom").description == "f.toml:7: boom")
        #expect(
            ConfigurationError(file: "f.toml", line: 7, key: "run.args", message: "boom").description
                == "f.toml:7: run.args: boom")
    }
}
