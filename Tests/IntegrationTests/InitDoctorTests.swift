import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Testing

/// A SwiftPM package in a private temporary directory: a manifest and a main.swift per executable.
/// `swift package describe` reads the manifest only, so nothing is built.
func makePackage(executables: [String], libraries: [String] = []) throws -> String {
    let directory = makeTemporaryDirectory("sw-package")
    let targets = executables.map { ".executableTarget(name: \"\($0)\")" } + libraries.map { ".target(name: \"\($0)\")" }
    let products = libraries.map { ".library(name: \"\($0)\", targets: [\"\($0)\"])" }
    let manifest = """
        // swift-tools-version:6.0
        import PackageDescription

        let package = Package(
            name: "fixture",
            products: [\(products.joined(separator: ", "))],
            targets: [\(targets.joined(separator: ", "))]
        )

        """
    try manifest.write(toFile: directory + "/Package.swift", atomically: true, encoding: .utf8)
    for name in executables {
        try FileManager.default.createDirectory(atPath: directory + "/Sources/\(name)", withIntermediateDirectories: true)
        try "print(\"\(name)\")\n".write(toFile: directory + "/Sources/\(name)/main.swift", atomically: true, encoding: .utf8)
    }
    for name in libraries {
        try FileManager.default.createDirectory(atPath: directory + "/Sources/\(name)", withIntermediateDirectories: true)
        try "public let name = \"\(name)\"\n".write(toFile: directory + "/Sources/\(name)/\(name).swift", atomically: true, encoding: .utf8)
    }
    return directory
}

@Suite(.timeLimit(.minutes(3))) struct InitConfigurationTests {
    func loadConfiguration(in directory: String) throws -> Configuration {
        let text = try String(contentsOfFile: directory + "/safe-watch.toml", encoding: .utf8)
        return try ConfigurationLoader(fileName: "safe-watch.toml").load(text)
    }

    @Test func bareInitWritesSafeWatchTomlForTheOneProductAndRefusesToOverwrite() async throws {
        let package = try makePackage(executables: ["server"])
        let (status, output) = try await run(Paths.safeWatch, ["init"], in: package)
        #expect(status == .exited(0), "\(output)")
        #expect(output.contains("wrote \(package)/safe-watch.toml"), "\(output)")
        #expect(output.contains("\n    safe-watch\n") || output.hasSuffix("\n    safe-watch"), "the next command: \(output)")
        var expected = Configuration()
        expected.product = "server"
        #expect(try self.loadConfiguration(in: package) == expected)
        let text = try String(contentsOfFile: package + "/safe-watch.toml", encoding: .utf8)
        #expect(text.contains("\n# listen = \"127.0.0.1:8080\""))
        // Only the configuration: no units, no container files.
        #expect(!FileManager.default.fileExists(atPath: package + "/Dockerfile.dev"))

        try "product = \"mine\"\n".write(toFile: package + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let (again, refusal) = try await run(Paths.safeWatch, ["init"], in: package)
        #expect(again == .exited(1))
        #expect(refusal.contains("\(package)/safe-watch.toml exists; run again with --force to overwrite it"), "\(refusal)")
        #expect(try self.loadConfiguration(in: package).product == "mine", "a refusal leaves the file alone")

        let (forced, forcedOutput) = try await run(Paths.safeWatch, ["init", "--force", "--project", package], in: "/")
        #expect(forced == .exited(0), "\(forcedOutput)")
        #expect(try self.loadConfiguration(in: package).product == "server")
        #expect(forcedOutput.contains("safe-watch --project \(package)"), "\(forcedOutput)")
    }

    @Test func severalProductsMakeTheFirstActiveAndListTheOthers() async throws {
        let package = try makePackage(executables: ["worker", "api", "migrate"], libraries: ["Core"])
        let (status, output) = try await run(Paths.safeWatch, ["init"], in: package)
        #expect(status == .exited(0), "\(output)")
        let text = try String(contentsOfFile: package + "/safe-watch.toml", encoding: .utf8)
        #expect(text.contains("\nproduct = \"api\"\n# other executable products: migrate, worker — pick one\n"), "\(text)")
        #expect(try self.loadConfiguration(in: package).product == "api")
        #expect(output.contains("migrate, worker"), "\(output)")
    }

    @Test func aPackageWithoutAnExecutableProductGetsTheFix() async throws {
        let package = try makePackage(executables: [], libraries: ["Core"])
        let (status, output) = try await run(Paths.safeWatch, ["init"], in: package)
        #expect(status == .exited(1))
        #expect(output.contains("has no executable product"), "\(output)")
        #expect(output.contains(".executableTarget(name:"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: package + "/safe-watch.toml"))
    }

    @Test func flagsWriteOnlyTheirFilesAndTomlAddsTheConfiguration() async throws {
        let package = try makePackage(executables: ["site"])
        let (docker, dockerOutput) = try await run(Paths.safeWatch, ["init", "--docker"], in: package)
        #expect(docker == .exited(0), "\(dockerOutput)")
        #expect(!FileManager.default.fileExists(atPath: package + "/safe-watch.toml"))

        let other = try makePackage(executables: ["site"])
        let units = makeTemporaryDirectory("sw-units")
        let (all, allOutput) = try await run(Paths.safeWatch, ["init", "--toml", "--docker", "--systemd", "--unit-directory", units], in: other)
        #expect(all == .exited(0), "\(allOutput)")
        #expect(try self.loadConfiguration(in: other).product == "site")
        #expect(FileManager.default.fileExists(atPath: units + "/safe-watch.service"))
        // The container files name the product the new configuration names, not the directory.
        let dockerfile = try String(contentsOfFile: other + "/Dockerfile.dev", encoding: .utf8)
        #expect(dockerfile.contains("# A dev container for site:"), "\(dockerfile.prefix(200))")
    }
}

@Suite(.timeLimit(.minutes(3))) struct DoctorCommandTests {
    /// A /proc/sys stand-in with the given inotify limits (`SAFE_WATCH_PROC_SYS`).
    func procSys(watches: Int, instances: Int = 1_000_000) throws -> String {
        let directory = makeTemporaryDirectory("sw-procsys")
        try FileManager.default.createDirectory(atPath: directory + "/fs/inotify", withIntermediateDirectories: true)
        try "\(watches)\n".write(toFile: directory + "/fs/inotify/max_user_watches", atomically: true, encoding: .utf8)
        try "\(instances)\n".write(toFile: directory + "/fs/inotify/max_user_instances", atomically: true, encoding: .utf8)
        return directory
    }

    /// A project of `directories` watched directories (the root and d0…), plus trees the watcher
    /// ignores: .build, .git and a .gitignore'd one.
    func project(directories: Int, listen: String) throws -> String {
        let directory = makeTemporaryDirectory("sw-doctor")
        let files = FileManager.default
        for index in 0..<(directories - 1) {
            try files.createDirectory(atPath: directory + "/d\(index)", withIntermediateDirectories: true)
        }
        for ignored in [".build", ".git", "generated"] {
            for index in 0..<30 {
                try files.createDirectory(atPath: directory + "/\(ignored)/sub\(index)", withIntermediateDirectories: true)
            }
        }
        try "generated/\n".write(toFile: directory + "/.gitignore", atomically: true, encoding: .utf8)
        try "[serve]\nlisten = \"\(listen)\"\n".write(toFile: directory + "/safe-watch.toml", atomically: true, encoding: .utf8)
        return directory
    }

    func doctor(_ project: String, procSys: String) async throws -> (ExitStatus, String) {
        var environment = ProcessInfo.processInfo.environment
        environment["SAFE_WATCH_PROC_SYS"] = procSys
        return try await run(Paths.safeWatch, ["doctor", "--project", project], in: "/", environment: environment)
    }

    @Test func aWatchLimitBelowTheProjectIsAProblemWithTheSysctlFix() async throws {
        let project = try self.project(directories: 50, listen: "127.0.0.1:0")
        let (status, output) = try await self.doctor(project, procSys: try self.procSys(watches: 10))
        #expect(status == .exited(1), "\(output)")
        let line = output.split(separator: "\n").first { $0.hasPrefix("✗ inotify watches:") }
        #expect(line?.contains("limit 10,") == true, "\(output)")
        #expect(line?.contains("this project needs 50 (one per directory)") == true, "the ignored trees count: \(output)")
        #expect(output.contains("    fix: sudo sysctl fs.inotify.max_user_watches=524288\n"), "\(output)")
        #expect(output.contains("/etc/sysctl.d/"), "\(output)")
        #expect(output.contains("✓ configuration: \(project)/safe-watch.toml loads"), "\(output)")
    }

    @Test func aLargeLimitAndAFreePortPass() async throws {
        let port = try freeLoopbackPort()
        let project = try self.project(directories: 50, listen: "127.0.0.1:\(port)")
        let (status, output) = try await self.doctor(project, procSys: try self.procSys(watches: 100_000_000))
        #expect(status == .exited(0), "\(output)")
        #expect(output.contains("✓ inotify watches: limit 100000000,"), "\(output)")
        #expect(output.contains("✓ serve.listen 127.0.0.1:\(port): free"), "\(output)")
        #expect(output.contains("✓ toolchain: Swift version"), "\(output)")
        #expect(output.contains("✓ watch .: "), "\(output)")
        #expect(!output.contains("✗"), "\(output)")
    }

    @Test func aTakenPortNamesTheAddressAndHowToFindItsOwner() async throws {
        let listener = try ListeningSockets.bind(host: "127.0.0.1", port: 0)
        defer { _ = close(listener) }
        let port = try #require(ListeningSockets.localAddress(listener)?.port)
        let project = try self.project(directories: 3, listen: "127.0.0.1:\(port)")
        let (status, output) = try await self.doctor(project, procSys: try self.procSys(watches: 100_000_000))
        #expect(status == .exited(1), "\(output)")
        #expect(output.contains("✗ serve.listen 127.0.0.1:\(port): in use"), "\(output)")
        #expect(output.contains("ss -ltnp 'sport = :\(port)'"), "\(output)")
    }

    @Test func aBrokenConfigurationIsAProblemWithItsError() async throws {
        let project = try self.project(directories: 2, listen: "127.0.0.1:0")
        try "[serve]\nmode = \"teleport\"\n".write(toFile: project + "/safe-watch.toml", atomically: true, encoding: .utf8)
        let (status, output) = try await self.doctor(project, procSys: try self.procSys(watches: 100_000_000))
        #expect(status == .exited(1), "\(output)")
        #expect(output.contains("✗ configuration: \(project)/safe-watch.toml:2: serve.mode: unknown mode \"teleport\""), "\(output)")
    }
}
