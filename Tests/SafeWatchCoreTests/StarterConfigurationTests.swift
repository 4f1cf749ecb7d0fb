import SafeWatchCore
import Testing

@Suite("The safe-watch.toml that init writes")
struct StarterConfigurationTests {
    /// The starter with every `# key = value` default line uncommented.
    static func uncommented(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            let isDefault = line.hasPrefix("# ") && line.dropFirst(2).prefix { $0.isLetter || $0 == "_" }.count > 0
                && line.dropFirst(2).drop { $0.isLetter || $0 == "_" }.hasPrefix(" = ")
            return isDefault ? String(line.dropFirst(2)) : String(line)
        }.joined(separator: "\n")
    }

    static func load(_ text: String) throws -> Configuration {
        try ConfigurationLoader(fileName: "safe-watch.toml").load(text)
    }

    @Test("one product: loads as the defaults with that product")
    func oneProduct() throws {
        let starter = try #require(StarterConfiguration(products: ExecutableProducts(describeOutput: DescribeOutput.oneExecutable)))
        #expect(starter.text.contains("\nproduct = \"app\"\n"))
        #expect(!starter.text.contains("other executable products"))
        var expected = Configuration()
        expected.product = "app"
        #expect(try Self.load(starter.text) == expected)
    }

    @Test("several products: the first active, the others named in a comment")
    func severalProducts() throws {
        let products = try ExecutableProducts(describeOutput: DescribeOutput.twoExecutablesAndALibrary)
        let starter = try #require(StarterConfiguration(products: products))
        #expect(starter.text.contains("\nproduct = \"alpha\"\n# other executable products: beta — pick one\n"))
        #expect(try Self.load(starter.text).product == "alpha")
        let three = StarterConfiguration(product: "a", otherProducts: ["b", "c"])
        #expect(three.text.contains("# other executable products: b, c — pick one\n"))
    }

    /// Every commented `key = value` must be the real default, or the file lies to whoever reads it.
    @Test("uncommenting every default changes nothing")
    func commentedDefaultsAreTheDefaults() throws {
        let starter = StarterConfiguration(product: "hello-server")
        let text = Self.uncommented(starter.text)
        // Every section is there, and every key of each: the file documents them all.
        for key in ["timeout", "args", "env", "port_env", "stop_signal", "stop_timeout", "keep_generations", "rollback_window",
                    "paths", "ignore", "extensions", "debounce", "poll", "mode", "listen", "hold_timeout", "type", "path",
                    "interval", "success_threshold", "failure_threshold", "startup_timeout", "dir", "apply", "backup", "backup_dir", "ignore_missing"]
        {
            #expect(text.contains("\n\(key) = "), "\(key) is not written out with its default")
        }
        for section in ["build", "run", "watch", "serve", "health", "migrations"] {
            #expect(starter.text.contains("\n[\(section)]\n"))
        }
        let loaded = try Self.load(text)
        var defaults = Configuration()
        defaults.product = "hello-server"
        // The build lines spell out what the product implies.
        #expect(loaded.buildCommand == defaults.buildCommand)
        #expect(loaded.binaryPath == defaults.binaryPath)
        var withoutBuild = loaded
        withoutBuild.build.command = nil
        withoutBuild.build.binary = nil
        #expect(withoutBuild == defaults)
    }

    @Test("a product name TOML or the shell would misread is quoted")
    func quoting() throws {
        let starter = StarterConfiguration(product: "odd \"name\"\\x")
        let loaded = try Self.load(Self.uncommented(starter.text))
        #expect(loaded.product == "odd \"name\"\\x")
        #expect(loaded.build.command == "swift build --product 'odd \"name\"\\x'")
    }

    @Test("Vapor: serve with {port} and no PORT, a tcp check; uncommenting the defaults changes nothing")
    func vapor() throws {
        let starter = try #require(StarterConfiguration(products: ExecutableProducts(describeOutput: DescribeOutput.vaporTemplate)))
        #expect(starter.framework == .vapor)
        #expect(starter.text.contains("\nargs = [\"serve\", \"--hostname\", \"127.0.0.1\", \"--port\", \"{port}\"]\n"), "\(starter.text)")
        #expect(starter.text.contains("\nport_env = \"\" "), "\(starter.text)")
        #expect(starter.text.contains("\ntype = \"tcp\" "), "\(starter.text)")
        var expected = Configuration()
        expected.product = "App"
        ServerFramework.vapor.apply(to: &expected)
        #expect(expected.run.args == ["serve", "--hostname", "127.0.0.1", "--port", "{port}"])
        #expect(expected.run.portEnv == "")
        #expect(expected.health.kind == .tcp)
        #expect(try Self.load(starter.text) == expected)
        try Self.expectDefaultsAreDefaults(starter, expected: expected)
        #expect(starter.howItRuns.contains("uses Vapor"), "\(starter.howItRuns)")
        #expect(starter.howItRuns.contains("`serve --hostname 127.0.0.1 --port {port}`"), "\(starter.howItRuns)")
        #expect(!starter.howItRuns.contains("$PORT"), "\(starter.howItRuns)")
    }

    @Test("Hummingbird: --hostname/--port with swift-argument-parser, HTTP_PORT with swift-configuration")
    func hummingbird() throws {
        let parser = try #require(
            StarterConfiguration(products: ExecutableProducts(describeOutput: DescribeOutput.hummingbirdArgumentParser)))
        var expected = Configuration()
        expected.product = "App"
        expected.run.args = ["--hostname", "127.0.0.1", "--port", "{port}"]
        expected.run.portEnv = ""
        expected.health.kind = .tcp
        #expect(try Self.load(parser.text) == expected)
        try Self.expectDefaultsAreDefaults(parser, expected: expected)

        let configuration = try #require(
            StarterConfiguration(products: ExecutableProducts(describeOutput: DescribeOutput.hummingbirdConfiguration)))
        expected.run.args = []
        expected.run.portEnv = "HTTP_PORT"
        #expect(try Self.load(configuration.text) == expected)
        try Self.expectDefaultsAreDefaults(configuration, expected: expected)
        #expect(configuration.howItRuns.contains("the port in $HTTP_PORT"), "\(configuration.howItRuns)")

        let unknown = StarterConfiguration(product: "App", framework: .hummingbird(.unknown))
        expected.run.portEnv = "PORT"
        #expect(try Self.load(unknown.text) == expected)
        try Self.expectDefaultsAreDefaults(unknown, expected: expected)
        #expect(unknown.howItRuns.contains("set [run] args with {port} or port_env"), "\(unknown.howItRuns)")
    }

    /// The convention holds with a framework's keys active: every `# key = value` is the default
    /// given those keys, and no key is written twice.
    static func expectDefaultsAreDefaults(_ starter: StarterConfiguration, expected: Configuration) throws {
        var loaded = try Self.load(Self.uncommented(starter.text))
        #expect(loaded.buildCommand == expected.buildCommand)
        #expect(loaded.binaryPath == expected.binaryPath)
        loaded.build.command = nil
        loaded.build.binary = nil
        #expect(loaded == expected)
    }
}

@Suite("Frameworks safe-watch runs with no configuration")
struct ServerFrameworkTests {
    @Test("run's one line says what it assumed and how to keep it")
    func assumption() {
        let line = ServerFramework.vapor.assumption(product: "App")
        #expect(!line.contains("\n"))
        #expect(line.contains("no safe-watch.toml: App uses Vapor"), "\(line)")
        #expect(line.contains("`serve --hostname 127.0.0.1 --port {port}`"), "\(line)")
        #expect(line.contains("healthy once it accepts connections"), "\(line)")
        #expect(line.contains("`safe-watch init`"), "\(line)")
        #expect(ServerFramework.hummingbird(.configuration).assumption(product: "App").contains("the port in $HTTP_PORT"))
    }

    @Test("apply sets only what the framework needs")
    func apply() {
        var configuration = Configuration()
        configuration.run.env = ["LOG_LEVEL": "debug"]
        configuration.serve.listen = ListenAddress(host: "127.0.0.1", port: 0)
        ServerFramework.hummingbird(.unknown).apply(to: &configuration)
        var expected = Configuration()
        expected.run.env = ["LOG_LEVEL": "debug"]
        expected.serve.listen = ListenAddress(host: "127.0.0.1", port: 0)
        expected.health.kind = .tcp
        #expect(configuration == expected)
    }
}
