import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import TestSupport
import Testing

/// Bad input that stops safe-watch before it serves: one clear message and a sysexits code.
@Suite(.timeLimit(.minutes(5))) struct StartupErrorTests {

    func runToExit(_ arguments: [String]) async throws -> (ExitStatus?, String) {
        let safeWatch = try await SafeWatchProcess(arguments)
        let status = await safeWatch.waitForExit(limit: .seconds(60))
        return (status, safeWatch.output)
    }

    func package(_ manifest: String, sources: [String: String]) throws -> String {
        let directory = makeTemporaryDirectory("pkg")
        try manifest.save(to: directory + "/Package.swift")
        for (path, text) in sources {
            try createAccountDirectory(((directory + "/" + path) as NSString).deletingLastPathComponent)
            try text.save(to: directory + "/" + path)
        }
        return directory
    }

    @Test func projectDirectoryThatDoesNotExist() async throws {
        let (status, output) = try await runToExit(["--project", "/nonexistent/safe-watch-project"])
        #expect(status == .exited(66))
        #expect(output.contains("project directory /nonexistent/safe-watch-project does not exist"))
    }

    @Test func invalidConfigurationNamesFileLineAndKey() async throws {
        let directory = makeTemporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "product = \"app\"\n\n[health]\nintervall = \"1s\"\n".save(to: directory + "/safe-watch.toml")
        let (status, output) = try await runToExit(["--project", directory])
        #expect(status == .exited(78))
        #expect(output.contains("safe-watch.toml:4: health.intervall: unknown key in [health]"), "\(output)")

        try "[serve]\nmode = \"teleport\"\n".save(to: directory + "/safe-watch.toml")
        let (badValue, badOutput) = try await runToExit(["--project", directory])
        #expect(badValue == .exited(78))
        #expect(badOutput.contains("safe-watch.toml:2: serve.mode: unknown mode \"teleport\""), "\(badOutput)")

        try "[serve\nmode = 1\n".save(to: directory + "/safe-watch.toml")
        let (syntax, syntaxOutput) = try await runToExit(["--project", directory])
        #expect(syntax == .exited(78))
        #expect(syntaxOutput.contains("safe-watch.toml:1: not valid TOML"), "\(syntaxOutput)")
    }

    @Test func missingConfigurationFileGivenWithConfig() async throws {
        let directory = makeTemporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await runToExit(["--project", directory, "--config", directory + "/nope.toml"])
        #expect(status == .exited(66))
        #expect(output.contains("nope.toml does not exist (--config)"))
    }

    @Test func severalExecutableProductsNeedProduct() async throws {
        let directory = try package(
            """
            // swift-tools-version:6.0
            import PackageDescription
            let package = Package(name: "two", targets: [.executableTarget(name: "api"), .executableTarget(name: "worker")])
            """, sources: ["Sources/api/main.swift": "print(1)\n", "Sources/worker/main.swift": "print(2)\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await runToExit(["--project", directory])
        #expect(status == .exited(64))
        #expect(output.contains("several executable products (api, worker): choose one with --product NAME"), "\(output)")
    }

    @Test func noExecutableProduct() async throws {
        let directory = try package(
            """
            // swift-tools-version:6.0
            import PackageDescription
            let package = Package(name: "lib", targets: [.target(name: "Lib")])
            """, sources: ["Sources/Lib/Lib.swift": "public let x = 1\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await runToExit(["--project", directory])
        #expect(status == .exited(78))
        #expect(output.contains("has no executable product"), "\(output)")
    }

    @Test func listenPortInUse() async throws {
        let directory = makeTemporaryDirectory("busy")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Hold a port.
        let (fd, port) = try listenLoopback(backlog: 1)
        defer { close(fd) }
        let (status, output) = try await runToExit(
            ["--project", directory, "--build-command", "true", "--binary", "x", "--listen", "127.0.0.1:\(port)"])
        #expect(status == .exited(69))
        #expect(output.contains("cannot listen on 127.0.0.1:\(port)"), "\(output)")
        // The advice, once.
        #expect(output.components(separatedBy: "--listen").count == 2, "\(output)")
        #expect(output.contains("another process listens there; stop it, or choose another address with --listen or serve.listen"), "\(output)")
    }

    /// A bad value names its flag and says what the flag takes, before anything starts.
    @Test(arguments: [
        (["--mode", "teleport"], "The value 'teleport' is invalid for '--mode <mode>'. Please provide one of 'proxy', 'tcp', 'socket' or 'restart'."),
        (["--listen", "everywhere"], "The value 'everywhere' is invalid for '--listen <host:port>': not an address (use 127.0.0.1:8080"),
        (["--listen", "127.0.0.1:99999"], "The value '127.0.0.1:99999' is invalid for '--listen <host:port>': not an address"),
        (["--debounce", "soon"], "The value 'soon' is invalid for '--debounce <duration>': not a duration (use a number with ms, s, m or h"),
        (["--debounce=-5ms"], "The value '-5ms' is invalid for '--debounce <duration>': not a duration"),
        (["--poll=often"], #"The value 'often' is invalid for '--poll <interval>': "often" is not "auto", "off" or an interval like "500ms""#),
        // Not a bare --poll followed by a stray argument: the value it was meant to be.
        (["--poll", "often"], #"The value 'often' is invalid for '--poll <interval>': "often" is not "auto", "off""#),
        (["--poll=10ms"], "The value '10ms' is invalid for '--poll <interval>': 10 ms is outside 50 ms…60 s"),
    ])
    func badFlagsAreUsageErrors(arguments: [String], message: String) async throws {
        let directory = makeTemporaryDirectory("flags")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try await runToExit(["--project", directory] + arguments)
        #expect(status == .exited(64), "\(output)")
        #expect(output.contains("Error: " + message), "\(output)")
        #expect(output.contains("Usage: safe-watch run"), "\(output)")
    }

    @Test func badPollEnvironmentIsAUsageError() async throws {
        let directory = makeTemporaryDirectory("flags")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let safeWatch = try await SafeWatchProcess(["--project", directory], environment: ["SAFE_WATCH_POLL": "often"])
        let status = await safeWatch.waitForExit(limit: .seconds(60))
        #expect(status == .exited(64), "\(safeWatch.output)")
        #expect(safeWatch.output.contains(#"Error: SAFE_WATCH_POLL: "often" is not "auto", "off" or an interval like "500ms""#), "\(safeWatch.output)")
    }

    /// The flags reach the configuration as typed values: a bare `--poll` followed by another
    /// option still means every 500 ms; `--mode` and `--listen` (`:0`, the loopback) are taken as given.
    @Test func flagsAreTakenAsTheyParse() async throws {
        let directory = makeTemporaryDirectory("flags")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let safeWatch = try await SafeWatchProcess(
            ["--project", directory, "--build-command", "true", "--binary", "x", "--mode", "tcp", "--poll", "--debounce", "50ms",
             "--listen", ":0"])
        let polling = await safeWatch.log.waitForLine(containing: "polling every")
        #expect(polling?.contains("polling every 500 ms: . ([watch] poll, --poll or SAFE_WATCH_POLL)") == true, "\(safeWatch.output)")
        #expect(safeWatch.output.contains("tcp mode on tcp://127.0.0.1:"), "\(safeWatch.output)")
        kill(safeWatch.pid, SIGTERM)
        let status = await safeWatch.waitForExit(limit: .seconds(60))
        #expect(status == .exited(0), "\(safeWatch.output)")
    }
}
