import ArgumentParser
import Foundation
import SafeWatch
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

extension SafeWatchCommand {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the files that run safe-watch for the project in the current directory.",
            discussion: """
                With no flag (or --toml) init writes safe-watch.toml into the project directory: the \
                package's executable product (from swift package describe) active, every other key \
                commented out at its default. With several executable products the first in name order \
                is active and the others are listed beside it. For a product that uses Vapor or \
                Hummingbird, [run] and [health] say how to run it: the port of each generation in its \
                arguments (or HTTP_PORT), and a tcp health check. --systemd and --docker write only their \
                own files; add --toml to write safe-watch.toml as well.

                --systemd writes safe-watch.service and safe-watch.socket as user units (default \
                directory: $XDG_CONFIG_HOME/systemd/user, else ~/.config/systemd/user) with this \
                safe-watch's path and the project directory, and prints the commands that enable them. \
                The socket unit listens on serve.listen from safe-watch.toml (default 127.0.0.1:8080).

                --docker writes Dockerfile.dev and compose.yaml into the project directory, and a .dockerignore \
                if it has none: a dev container with safe-watch as PID 1 (acting as the project's owner, not \
                root), the project bind-mounted at /app, its .build in a named volume, \
                and serve.listen's port published on the host's loopback. The image builds safe-watch from \
                the checkout SAFE_WATCH_SOURCE names. The product is safe-watch.toml's product, else the \
                directory's name.
                """)

        @Flag(name: .long, help: "Write safe-watch.toml into the project (the default when no other file is asked for).")
        var toml = false

        @Flag(name: .long, help: "Write the systemd user units safe-watch.service and safe-watch.socket.")
        var systemd = false

        @Flag(name: .long, help: "Write the dev-container files Dockerfile.dev, compose.yaml and .dockerignore into the project.")
        var docker = false

        @Option(name: .long, help: ArgumentHelp("Where to write the units.", valueName: "dir"))
        var unitDirectory: String?

        @OptionGroup var project: ProjectOptions

        @Flag(name: .long, help: "Overwrite files that exist.")
        var force = false

        /// Bare `init` writes safe-watch.toml; `--systemd`/`--docker` write only their own files, so
        /// adding units to a project never rewrites its configuration.
        var writesConfiguration: Bool { self.toml || !(self.systemd || self.docker) }

        func run() async throws {
            // _exit, not exit(), after async work: see Run.run (libdispatch's teardown race).
            do {
                try await self.write()
            } catch {
                writeToStandardError("Error: \(error)\n")
                _exit(1)
            }
            _exit(0)
        }

        private func write() async throws {
            let files = FileManager.default
            let directory = self.project.directory
            var isDirectory: ObjCBool = false
            guard files.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw InitError("project directory \(directory) does not exist (--project)")
            }
            let configurationPath = directory + "/" + StarterConfiguration.fileName
            if self.writesConfiguration, !self.force, files.fileExists(atPath: configurationPath) {
                throw InitError("\(configurationPath) exists; run again with --force to overwrite it")
            }
            let starter = self.writesConfiguration ? try await Self.starterConfiguration(for: directory) : nil
            let configurationFile = (path: configurationPath, text: starter?.text ?? "")
            // The units and the container files say what the configuration says: the one about to be
            // written, when it is.
            let configuration = try self.configuration(in: directory, replacedBy: starter)
            let listen = configuration.serve.listen
            let units = try self.systemd ? self.systemdUnits(for: directory, listen: listen) : nil
            let container = self.docker ? Self.dockerFiles(for: directory, configuration: configuration) : nil
            let containerFiles = container.map { container in
                [
                    (path: directory + "/" + DockerFiles.dockerfileName, text: container.dockerfile),
                    (path: directory + "/" + DockerFiles.composeName, text: container.compose),
                ]
            } ?? []
            // Every file is checked before any is written: a refusal leaves nothing half done.
            let targets = (starter == nil ? [] : [configurationFile]) + (units?.files ?? []) + containerFiles
            if !self.force, let existing = targets.first(where: { files.fileExists(atPath: $0.path) }) {
                throw InitError("\(existing.path) exists; run again with --force to overwrite it")
            }
            if let starter {
                try Self.write([configurationFile], creating: directory, what: StarterConfiguration.fileName)
                Self.printConfigurationSteps(starter, directory: directory)
            }
            if let units {
                try Self.write(units.files, creating: units.directory, what: "the units")
                writeToStandardOutput(
                    "\nsafe-watch will serve \(directory) on http://\(listen). Enable and start it with:\n\n"
                        + SystemdUnits.enableCommands.map { "    \($0)\n" }.joined()
                        + "\nThen: systemctl --user status safe-watch, journalctl --user -u safe-watch -f\n")
            }
            if let container {
                try Self.write(containerFiles, creating: directory, what: "the container files")
                Self.prepareForTheContainer(directory)
                Self.printContainerSteps(container, configuration: configuration, directory: directory)
            }
        }

        /// The units for `directory`, with this safe-watch's path and the PATH it runs with.
        private func systemdUnits(for directory: String, listen: ListenAddress) throws -> (directory: String, files: [(path: String, text: String)]) {
            let files = FileManager.default
            guard let executable = try? files.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
                throw InitError("cannot tell where this safe-watch is (/proc/self/exe)")
            }
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            let units = SystemdUnits(executable: executable, projectDirectory: directory, listen: listen, path: path)
            let unitDirectory = self.unitDirectory.map { ProjectLoader.absolute($0, relativeTo: files.currentDirectoryPath) }
                ?? Self.userUnitDirectory()
            return (
                unitDirectory,
                [
                    (path: unitDirectory + "/" + SystemdUnits.serviceName, text: units.service),
                    (path: unitDirectory + "/" + SystemdUnits.socketName, text: units.socket),
                ]
            )
        }

        /// The container files: the product from safe-watch.toml, else the directory's name (the usual
        /// single-product package); the port from serve.listen, which `:0` leaves to the default (a
        /// published port must be fixed); the health path when the check is http.
        static func dockerFiles(for directory: String, configuration: Configuration) -> DockerFiles {
            let name = URL(fileURLWithPath: directory).lastPathComponent
            let port = configuration.serve.listen.port
            var container = DockerFiles(
                product: configuration.product ?? name, port: port == 0 ? DockerFiles.defaultPort : port, directoryName: name)
            if case .http(let path) = configuration.health.kind { container.healthPath = path }
            return container
        }

        /// A `.dockerignore` when the project has none (one it has is left alone, with a word when it
        /// lets `.build` into the build context), and the `.build` directory the compose volume is
        /// mounted on: Docker would create a missing one as root, in the user's tree.
        private static func prepareForTheContainer(_ directory: String) {
            let files = FileManager.default
            let ignorePath = directory + "/" + DockerFiles.dockerignoreName
            if let existing = try? String(contentsOfFile: ignorePath, encoding: .utf8) {
                if !DockerFiles.dockerignoreKeepsBuildOut(existing) {
                    writeToStandardOutput(
                        "\(ignorePath) exists and does not ignore .build: add .build and .safe-watch to it, or every `docker compose up --build` sends your .build to the engine\n")
                }
            } else if !files.fileExists(atPath: ignorePath) {
                do {
                    try DockerFiles.dockerignore.write(toFile: ignorePath, atomically: true, encoding: .utf8)
                    writeToStandardOutput("wrote \(ignorePath)\n")
                } catch {
                    writeToStandardOutput("could not write \(ignorePath): \(error.localizedDescription)\n")
                }
            }
            let build = directory + "/.build"
            if !files.fileExists(atPath: build), (try? files.createDirectory(atPath: build, withIntermediateDirectories: false)) != nil,
                geteuid() == 0, let owner = Privileges.owner(of: directory)
            {
                // `sudo safe-watch init --docker`: the directory is the project owner's, like the rest.
                _ = lchown(build, owner.uid, owner.gid)
            }
        }

        private static func printContainerSteps(_ container: DockerFiles, configuration: Configuration, directory: String) {
            var text = "\nThe image builds safe-watch from a checkout of its sources: set SAFE_WATCH_SOURCE to one, e.g. in "
            text += "\(directory)/.env:\n\n    SAFE_WATCH_SOURCE=\(Self.safeWatchCheckout() ?? "/path/to/safe-watch")\n"
            if case .http = configuration.health.kind {} else {
                text += "\n[health] is not http here: edit the HEALTHCHECK in \(DockerFiles.dockerfileName) (it asks for GET \(container.healthPath)).\n"
            }
            text += "\nStart it (the first build takes minutes) and open http://127.0.0.1:\(container.port):\n\n"
            text += DockerFiles.upCommands.map { "    \($0)\n" }.joined()
            text += "\nStop it with Ctrl-C, or from another terminal:\n\n"
            text += DockerFiles.stopCommands.map { "    \($0)\n" }.joined()
            text += "\n(`docker compose down -v` also drops the .build volume.)\n"
            writeToStandardOutput(text)
        }

        /// The checkout this safe-watch was built in (`<checkout>/.build/…/safe-watch`), if it was.
        static func safeWatchCheckout() -> String? {
            let files = FileManager.default
            guard let executable = try? files.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
                let range = executable.range(of: "/.build/")
            else { return nil }
            let checkout = String(executable[..<range.lowerBound])
            guard files.fileExists(atPath: checkout + "/Package.swift"), files.fileExists(atPath: checkout + "/Sources/safe-watch")
            else { return nil }
            return checkout
        }

        private static func write(_ targets: [(path: String, text: String)], creating directory: String, what: String) throws {
            let files = FileManager.default
            do {
                try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
                for (path, text) in targets {
                    try text.write(toFile: path, atomically: true, encoding: .utf8)
                    writeToStandardOutput("wrote \(path)\n")
                }
            } catch {
                throw InitError("cannot write \(what) in \(directory): \(error.localizedDescription)")
            }
        }

        /// The project's safe-watch.toml, when it has one; the defaults otherwise. When init writes
        /// the file, the text about to be written (if it exists and there is no --force, init refuses
        /// before anything is used).
        private func configuration(in directory: String, replacedBy starter: StarterConfiguration?) throws -> Configuration {
            let file = directory + "/" + StarterConfiguration.fileName
            guard let text = starter?.text ?? (try? String(contentsOfFile: file, encoding: .utf8)) else { return Configuration() }
            do {
                return try ConfigurationLoader(fileName: file).load(text)
            } catch {
                throw InitError("\(error)")
            }
        }

        /// The starter for the package in `directory`: `swift package describe` names its
        /// executable products. No package, or no executable product, is an error with the fix.
        static func starterConfiguration(for directory: String) async throws -> StarterConfiguration {
            let launcher = ChildLauncher()
            Reaper.shared.start()
            let products: ExecutableProducts
            do {
                products = try await ProjectLoader.executableProducts(in: directory, launcher: launcher)
            } catch {
                throw InitError("\(error)")
            }
            guard let starter = StarterConfiguration(products: products) else {
                throw InitError(
                    "the package in \(directory) has no executable product, so there is no server to run: add an "
                        + ".executableTarget(name: \"NAME\") to Package.swift (SwiftPM makes it a product), then run "
                        + "`safe-watch init` again; for a server built another way, write safe-watch.toml with [build] command and binary")
            }
            return starter
        }

        private static func printConfigurationSteps(_ starter: StarterConfiguration, directory: String) {
            var text = "\nsafe-watch will build and run the product \"\(starter.product)\""
            if !starter.otherProducts.isEmpty {
                text += " (the package also has \(starter.otherProducts.joined(separator: ", ")): change `product` to run another)"
            }
            let here = directory == FileManager.default.currentDirectoryPath
            text += ".\n\(starter.howItRuns)\n"
            text += "Check the machine, then start it:\n\n"
            text += here ? "    safe-watch doctor\n    safe-watch\n" : "    safe-watch doctor --project \(shellQuoted(directory))\n    safe-watch --project \(shellQuoted(directory))\n"
            writeToStandardOutput(text)
        }

        static func userUnitDirectory() -> String {
            let environment = ProcessInfo.processInfo.environment
            let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.config")
            return base + "/systemd/user"
        }
    }
}

/// An `init` problem: printed as "Error: …", exit status 1.
struct InitError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
