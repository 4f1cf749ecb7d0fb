import Foundation
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Synchronization

/// Turns `--project`, `--config` and the CLI overrides into a `Project`, or a clear startup error.
public struct ProjectLoader: Sendable {
    public var directory: String?
    public var configurationFile: String?
    public var overrides: @Sendable (inout Configuration) -> Void
    public var launcher: ChildLauncher

    public init(
        directory: String?, configurationFile: String?, launcher: ChildLauncher,
        overrides: @escaping @Sendable (inout Configuration) -> Void
    ) {
        self.directory = directory
        self.configurationFile = configurationFile
        self.launcher = launcher
        self.overrides = overrides
    }

    /// The configuration in `file`, nil when there is none; `given` is `--config` as typed, when it
    /// named the file (then a missing one is an error, as `run` and the migrations commands say).
    public static func configuration(in file: String, given: String?) throws(StartupError) -> Configuration? {
        guard FileManager.default.fileExists(atPath: file) else {
            if let given { throw StartupError("configuration file \(given) does not exist (--config)", exitCode: StartupError.noInput) }
            return nil
        }
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw StartupError("cannot read \(file): \(error.localizedDescription)", exitCode: StartupError.noInput)
        }
        do {
            return try ConfigurationLoader(fileName: file).load(text)
        } catch {
            throw StartupError("\(error)", exitCode: StartupError.config)
        }
    }

    public func load() async throws(StartupError) -> Project {
        let files = FileManager.default
        let given = self.directory ?? files.currentDirectoryPath
        let directory = Self.absolute(given, relativeTo: files.currentDirectoryPath)
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StartupError("project directory \(given) does not exist (--project)", exitCode: StartupError.noInput)
        }
        let configurationFile = self.configurationFile.map { Self.absolute($0, relativeTo: files.currentDirectoryPath) }
            ?? directory + "/safe-watch.toml"
        let loaded = try Self.configuration(in: configurationFile, given: self.configurationFile)
        let hasFile = loaded != nil
        var configuration = loaded ?? Configuration()
        self.overrides(&configuration)
        configuration.settleModeDefaults()
        let builtBySwiftPM = configuration.build.command == nil || configuration.build.binary == nil
        var framework: ServerFramework?
        if builtBySwiftPM, configuration.product == nil {
            let products = try await Self.executableProducts(in: directory, launcher: self.launcher)
            let product = try Self.product(of: products, in: directory)
            configuration.product = product
            framework = products.framework(of: product)
        } else if builtBySwiftPM, !hasFile, let product = configuration.product {
            // --product with no file: the framework still decides how it runs. The product was
            // named, so a package describe cannot read only costs the framework's defaults.
            framework = (try? await Self.executableProducts(in: directory, launcher: self.launcher))?.framework(of: product)
        }
        // Only with no safe-watch.toml: a file says how the server runs, even by leaving keys out.
        if hasFile { framework = nil }
        framework?.apply(to: &configuration)
        var project = Project(
            directory: directory, configurationFile: configurationFile, configuration: configuration,
            overrides: self.overrides)
        project.framework = framework
        return project
    }

    /// The package's one executable product.
    static func product(of products: ExecutableProducts, in directory: String) throws(StartupError) -> String {
        switch products.choice {
        case .one(let name):
            return name
        case .none:
            throw StartupError(
                "the package in \(directory) has no executable product: add one, or set build.command and build.binary in safe-watch.toml",
                exitCode: StartupError.config)
        case .several(let first, let others):
            throw StartupError(
                "the package has several executable products (\(([first] + others).joined(separator: ", "))): choose one with --product NAME or `product = \"NAME\"` in safe-watch.toml",
                exitCode: StartupError.usage)
        }
    }

    /// The executable products of the package in `directory`, from `swift package describe --type
    /// json` (`run` picks the one to build, `init` writes it into safe-watch.toml).
    public static func executableProducts(in directory: String, launcher: ChildLauncher) async throws(StartupError) -> ExecutableProducts {
        guard FileManager.default.fileExists(atPath: directory + "/Package.swift") else {
            throw StartupError(
                "\(directory) has no Package.swift: set build.command and build.binary in safe-watch.toml for a non-SwiftPM server",
                exitCode: StartupError.config)
        }
        guard let swift = Self.findExecutable("swift") else {
            throw StartupError("`swift` is not on PATH: install the Swift toolchain or set build.command", exitCode: StartupError.unavailable)
        }
        let (status, output) = await runCapturing(
            launcher: launcher, executable: swift, arguments: ["package", "describe", "--type", "json"],
            directory: directory)
        guard status == .exited(0) else {
            throw StartupError(
                "`swift package describe` failed in \(directory) (\(status)):\n\(output.suffix(2000))",
                exitCode: StartupError.config)
        }
        do {
            return try ExecutableProducts(describeOutput: output)
        } catch {
            throw StartupError("\(error) in \(directory):\n\(output.suffix(2000))", exitCode: StartupError.config)
        }
    }

    /// `swift --version`'s version line, or why there is none (for `doctor`).
    public static func swiftToolchain(launcher: ChildLauncher) async -> Doctor.ToolchainProbe {
        guard let swift = Self.findExecutable("swift") else { return .notFound }
        let (status, output) = await runCapturing(launcher: launcher, executable: swift, arguments: ["--version"], directory: "/")
        // Newer toolchains print a "swift-driver version: …" line first.
        guard status == .exited(0), let line = output.split(whereSeparator: \.isNewline).first(where: { $0.contains("Swift version") })
        else { return .failed(path: swift, output: output) }
        return .found(path: swift, version: String(line))
    }

    public static func absolute(_ path: String, relativeTo base: String) -> String {
        let joined = path.hasPrefix("/") ? path : base + "/" + path
        return (joined as NSString).standardizingPath
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Runs a program to completion and returns its status and combined output as text.
func runCapturing(
    launcher: ChildLauncher, executable: String, arguments: [String], directory: String
) async -> (ExitStatus, String) {
    let (status, bytes) = await runCapturingBytes(launcher: launcher, executable: executable, arguments: arguments, directory: directory)
    return (status, String(decoding: bytes, as: UTF8.self))
}

/// Runs a program to completion and returns its status and exact combined output.
func runCapturingBytes(
    launcher: ChildLauncher, executable: String, arguments: [String], directory: String
) async -> (ExitStatus, [UInt8]) {
    let collected = Mutex<[UInt8]>([])
    let output: OutputPipe
    do {
        output = try OutputPipe()
    } catch {
        return (.exited(127), Array("\(error)".utf8))
    }
    let (done, finished) = AsyncStream<Void>.makeStream()
    output.start(onData: { bytes in collected.withLock { $0 += bytes } }, onClose: { finished.finish() })
    let pid: pid_t
    do {
        pid = try await launcher.spawn(
            executable: executable, arguments: arguments, environment: inheritedEnvironment(),
            workingDirectory: directory, output: output, deathSignal: SIGKILL)
    } catch {
        return (.exited(127), Array("\(error)".utf8))
    }
    let status = await Reaper.shared.wait(for: pid)
    for await _ in done {}
    return (status, collected.withLock { $0 })
}
