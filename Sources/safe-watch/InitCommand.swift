import ArgumentParser
import Foundation
import SafeWatch
import SafeWatchCore
import SafeWatchSystem

extension SafeWatchCommand {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the files that run safe-watch for the project in the current directory.",
            discussion: """
                --systemd writes safe-watch.service and safe-watch.socket as user units (default \
                directory: $XDG_CONFIG_HOME/systemd/user, else ~/.config/systemd/user) with this \
                safe-watch's path and the project directory, and prints the commands that enable them. \
                The socket unit listens on serve.listen from safe-watch.toml (default 127.0.0.1:8080).
                """)

        @Flag(name: .long, help: "Write the systemd user units safe-watch.service and safe-watch.socket.")
        var systemd = false

        @Option(name: .long, help: ArgumentHelp("Where to write the units.", valueName: "dir"))
        var unitDirectory: String?

        @Option(name: .long, help: ArgumentHelp("The project directory (default: the current directory).", valueName: "dir"))
        var project: String?

        @Flag(name: .long, help: "Overwrite files that exist.")
        var force = false

        func validate() throws {
            guard self.systemd else {
                throw ValidationError("say what to write: --systemd (the systemd user units)")
            }
        }

        func run() throws {
            let files = FileManager.default
            let directory = ProjectLoader.absolute(self.project ?? files.currentDirectoryPath, relativeTo: files.currentDirectoryPath)
            let listen = try self.listenAddress(in: directory)
            guard let executable = try? files.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
                throw InitError("cannot tell where this safe-watch is (/proc/self/exe)")
            }
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            let units = SystemdUnits(executable: executable, projectDirectory: directory, listen: listen, path: path)
            let unitDirectory = self.unitDirectory.map { ProjectLoader.absolute($0, relativeTo: files.currentDirectoryPath) }
                ?? Self.userUnitDirectory()
            let targets = [
                (unitDirectory + "/" + SystemdUnits.serviceName, units.service),
                (unitDirectory + "/" + SystemdUnits.socketName, units.socket),
            ]
            if !self.force, let existing = targets.first(where: { files.fileExists(atPath: $0.0) }) {
                throw InitError("\(existing.0) exists; run again with --force to overwrite it")
            }
            do {
                try files.createDirectory(atPath: unitDirectory, withIntermediateDirectories: true)
                for (path, text) in targets {
                    try text.write(toFile: path, atomically: true, encoding: .utf8)
                    writeToStandardOutput("wrote \(path)\n")
                }
            } catch {
                throw InitError("cannot write the units in \(unitDirectory): \(error.localizedDescription)")
            }
            writeToStandardOutput(
                "\nsafe-watch will serve \(directory) on http://\(listen). Enable and start it with:\n\n"
                    + SystemdUnits.enableCommands.map { "    \($0)\n" }.joined()
                    + "\nThen: systemctl --user status safe-watch, journalctl --user -u safe-watch -f\n")
        }

        /// `serve.listen` from the project's safe-watch.toml, when it has one.
        private func listenAddress(in directory: String) throws -> ListenAddress {
            let file = directory + "/safe-watch.toml"
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return Configuration().serve.listen }
            do {
                return try ConfigurationLoader(fileName: file).load(text).serve.listen
            } catch {
                throw InitError("\(error)")
            }
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
