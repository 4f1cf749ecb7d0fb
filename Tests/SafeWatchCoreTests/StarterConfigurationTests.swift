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
                    "interval", "success_threshold", "failure_threshold", "startup_timeout", "dir", "apply", "backup", "backup_dir"]
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
}
