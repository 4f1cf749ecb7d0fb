import ArgumentParser
import Foundation
import SafeWatch
import SafeWatchCore

/// `--project`, declared once for every subcommand that works on a project.
struct ProjectOptions: ParsableArguments {
    @Option(name: .customLong("project"), help: ArgumentHelp("The project directory (default: the current directory).", valueName: "dir"))
    var given: String?

    /// The project directory as an absolute path, without a trailing slash (the control socket's
    /// path is derived from it, so `dir/` and `dir` must name the same safe-watch).
    var directory: String {
        let current = FileManager.default.currentDirectoryPath
        let directory = ProjectLoader.absolute(self.given ?? current, relativeTo: current)
        return directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
    }
}

/// `--project` and `--config`, for the subcommands that read the project's configuration.
struct ConfiguredProjectOptions: ParsableArguments {
    @OptionGroup var project: ProjectOptions

    @Option(name: .long, help: ArgumentHelp("The configuration file (default: <project>/safe-watch.toml).", valueName: "file"))
    var config: String?

    /// `--project` as given (messages about a missing directory quote it).
    var given: String? { self.project.given }

    var directory: String { self.project.directory }

    /// The configuration file `--config` names, else the project's safe-watch.toml.
    var configurationFile: String {
        self.config.map { ProjectLoader.absolute($0, relativeTo: FileManager.default.currentDirectoryPath) }
            ?? self.directory + "/" + StarterConfiguration.fileName
    }
}
