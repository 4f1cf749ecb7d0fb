import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Testing

/// A minimal app on a real server framework, from its usual URL (git resolves it like any user's
/// checkout would): Vapor's template entry point with one route, Hummingbird's template-style
/// command with `--hostname`/`--port`. `GET /` answers "hello-<name> <version>".
enum FrameworkApp: String, CaseIterable, Sendable {
    case vapor
    case hummingbird

    var name: String { "hello-\(self.rawValue)" }

    /// The file an edit changes.
    var sourceFile: String {
        switch self {
        case .vapor: "Sources/App/entrypoint.swift"
        case .hummingbird: "Sources/App/App.swift"
        }
    }

    var manifest: String {
        switch self {
        case .vapor:
            """
            // swift-tools-version:6.0
            import PackageDescription

            let package = Package(
                name: "hello-vapor",
                platforms: [.macOS(.v13)],
                dependencies: [
                    .package(url: "https://github.com/vapor/vapor.git", exact: "4.122.3"),
                ],
                targets: [
                    .executableTarget(name: "App", dependencies: [.product(name: "Vapor", package: "vapor")]),
                ]
            )

            """
        case .hummingbird:
            """
            // swift-tools-version:6.2
            import PackageDescription

            let package = Package(
                name: "hello-hummingbird",
                platforms: [.macOS(.v15)],
                dependencies: [
                    .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
                    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.3.0"),
                ],
                targets: [
                    .executableTarget(name: "App", dependencies: [
                        .product(name: "Hummingbird", package: "hummingbird"),
                        .product(name: "ArgumentParser", package: "swift-argument-parser"),
                    ]),
                ]
            )

            """
        }
    }

    func source(version: String) -> String {
        switch self {
        case .vapor:
            """
            import Vapor

            @main
            enum Entrypoint {
                static func main() async throws {
                    var env = try Environment.detect()
                    try LoggingSystem.bootstrap(from: &env)
                    let app = try await Application.make(env)
                    do {
                        try await configure(app)
                        try await app.execute()
                    } catch {
                        app.logger.report(error: error)
                        try? await app.asyncShutdown()
                        throw error
                    }
                    try await app.asyncShutdown()
                }
            }

            func configure(_ app: Application) async throws {
                app.get { _ in "\(self.name) \(version)\\n" }
            }

            """
        case .hummingbird:
            """
            import ArgumentParser
            import Hummingbird

            @main
            struct App: AsyncParsableCommand {
                @Option(name: .shortAndLong)
                var hostname: String = "127.0.0.1"

                @Option(name: .shortAndLong)
                var port: Int = 8080

                func run() async throws {
                    let router = Router()
                    router.get("/") { _, _ in "\(self.name) \(version)\\n" }
                    let app = Application(router: router, configuration: .init(address: .hostname(self.hostname, port: self.port)))
                    try await app.runService()
                }
            }

            """
        }
    }

    /// Writes the package into `directory` (only files whose text differs, so a built app stays built).
    func write(into directory: String, version: String) throws {
        try createAccountDirectory(directory + "/Sources/App")
        for (path, text) in [("Package.swift", self.manifest), (self.sourceFile, self.source(version: version))] {
            let file = directory + "/" + path
            if (try? String(contentsOfFile: file, encoding: .utf8)) != text {
                try text.save(to: file)
            }
        }
    }
}

/// The framework apps, built once per test run and shared by the serialized suite. Set
/// SAFE_WATCH_FRAMEWORK_APPS to a directory to keep them there between runs.
actor FrameworkFixtures {
    static let shared = FrameworkFixtures()

    private var prepared: [FrameworkApp: String] = [:]
    private lazy var base: String = {
        if let kept = ProcessInfo.processInfo.environment["SAFE_WATCH_FRAMEWORK_APPS"], !kept.isEmpty { return kept }
        return makeTemporaryDirectory("framework-apps")
    }()

    /// Killed by a signal: directly, or as the shell reports it (128 + N).
    static func diedOfASignal(_ status: ExitStatus) -> Bool {
        switch status {
        case .signalled: true
        case .exited(let code): code > 128
        }
    }

    /// The app's directory, generated and built on first use.
    func directory(_ app: FrameworkApp) async throws -> String {
        if let prepared = self.prepared[app] { return prepared }
        let directory = self.base + "/" + app.name
        try app.write(into: directory, version: "v1")
        let started = ContinuousClock.now
        // Built by the account safe-watch runs as, as a user's checkout is.
        var (status, output) = try await runAsAccount("/bin/sh", ["-c", "swift build --product App 2>&1"], in: directory)
        if Self.diedOfASignal(status) {
            // swift-build itself crashed (this machine's kernel log shows SwiftPM dying of SIGILL
            // now and then): the fixture, not safe-watch, failed. Once more, from where it stopped.
            print("FrameworkFixtures: swift build of \(app.name) died (\(status)); building again")
            (status, output) = try await runAsAccount("/bin/sh", ["-c", "swift build --product App 2>&1"], in: directory)
        }
        guard status == .exited(0) else { throw HarnessError("building \(app.name) failed (\(status)): \(output.suffix(3000))") }
        // The first builds are most of this suite's time, and of CI's: say how long they took.
        print("FrameworkFixtures: swift build of \(app.name) took \((ContinuousClock.now - started).humanReadable)")
        self.prepared[app] = directory
        return directory
    }

    /// The built app at `version`, with no safe-watch.toml and no state of an earlier test.
    func reset(_ app: FrameworkApp, version: String) async throws -> String {
        let directory = try await self.directory(app)
        try app.write(into: directory, version: version)
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
        return directory
    }
}

/// Vapor and Hummingbird with no configuration, and the message a server that ignores its port gets.
/// Serialized: the tests share two builds that take minutes each the first time.
@Suite(.serialized, .timeLimit(.minutes(45))) struct FrameworkTests {

    @Test(arguments: FrameworkApp.allCases)
    func initWritesWhatTheFrameworkNeeds(_ app: FrameworkApp) async throws {
        // `init` only reads the manifest: a fresh, unbuilt copy will do.
        let directory = makeTemporaryDirectory("sw-\(app.rawValue)-init")
        try app.write(into: directory, version: "v1")
        let (status, output) = try await runAsAccount(Paths.safeWatch, ["init"], in: directory)
        #expect(status == .exited(0), "\(output)")
        let text = try String(contentsOfFile: directory + "/safe-watch.toml", encoding: .utf8)
        let configuration = try ConfigurationLoader(fileName: "safe-watch.toml").load(text)
        #expect(configuration.product == "App")
        switch app {
        case .vapor:
            #expect(configuration.run.args == ["serve", "--hostname", "127.0.0.1", "--port", "{port}"], "\(text)")
            #expect(output.contains("It uses Vapor"), "\(output)")
        case .hummingbird:
            #expect(configuration.run.args == ["--hostname", "127.0.0.1", "--port", "{port}"], "\(text)")
            #expect(output.contains("It uses Hummingbird"), "\(output)")
        }
        #expect(configuration.run.portEnv == "", "\(text)")
        #expect(configuration.health.kind == .tcp, "\(text)")
        #expect(!output.contains("$PORT"), "the port does not go in $PORT: \(output)")
    }

    @Test(arguments: FrameworkApp.allCases)
    func noConfigurationServesTheAppAndSwapsAfterAnEdit(_ app: FrameworkApp) async throws {
        let directory = try await FrameworkFixtures.shared.reset(app, version: "v1")
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort(), "no start line:\n\(safeWatch.output)")
        // Printed right after the start line.
        let assumed = await safeWatch.log.waitForLine(containing: "no safe-watch.toml: App uses", limit: .seconds(10))
        #expect(assumed?.contains("App uses \(app == .vapor ? "Vapor" : "Hummingbird")") == true, "\(safeWatch.output)")
        try #require(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", limit: .seconds(300)) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "\(app.name) v1\n", "\(safeWatch.output)")

        try app.write(into: directory, version: "v2")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", limit: .seconds(300)) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "\(app.name) v2\n", "\(safeWatch.output)")
        let children = safeWatch.descendantIdentities
        #expect(!children.isEmpty, "gen 2 should be running under safe-watch")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
        #expect(children.filter(\.isRunning).isEmpty, "left running: \(children.filter(\.isRunning))")
    }

    @Test func aServerThatBindsATakenPortOfItsOwnIsToldWhichKeyToChange() async throws {
        let directory = try await FrameworkFixtures.shared.reset(.vapor, version: "taken")
        // The mistake: a fixed port, here the one safe-watch listens on (as Vapor's default 8080
        // is safe-watch's). Vapor's error reaches the top level: the line that says why comes
        // before a backtrace of a hundred lines or more.
        let port = try freeLoopbackPort()
        try """
            product = "App"
            [run]
            args = ["serve", "--port", "\(port)"]

            """.save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:\(port)"])
        let line = await safeWatch.log.waitForLine(containing: "✗ gen 1 discarded", limit: .seconds(300))
        #expect(line?.contains("before it became healthy: it said \"Address already in use\"") == true, "\(safeWatch.output)")
        #expect(line?.contains("which safe-watch gave it in $PORT; safe-watch itself listens on 127.0.0.1:\(port)") == true, "\(line ?? "")")
        #expect(line?.contains("[run] args with {port}") == true, "\(line ?? "")")
        #expect(line?.contains("port_env") == true, "\(line ?? "")")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    @Test func aServerListeningOnAnotherPortIsToldWhichKeyToChange() async throws {
        let directory = try await FrameworkFixtures.shared.reset(.hummingbird, version: "elsewhere")
        // It serves, but on a port of its own: safe-watch probes and proxies to the one it gave.
        let own = try freeLoopbackPort()
        try """
            product = "App"
            [run]
            args = ["--port", "\(own)"]
            [health]
            startup_timeout = "3s"

            """.save(to: directory + "/safe-watch.toml")
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let line = await safeWatch.log.waitForLine(containing: "✗ gen 1 discarded", limit: .seconds(300))
        #expect(line?.contains("not healthy within startup_timeout") == true, "\(safeWatch.output)")
        #expect(line?.contains("it listens on 127.0.0.1:\(own), not on port ") == true, "\(line ?? "")")
        #expect(line?.contains("which safe-watch gave it in $PORT") == true, "\(line ?? "")")
        #expect(line?.contains("[run] args with {port}") == true, "\(line ?? "")")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }
}
