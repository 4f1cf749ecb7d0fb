import Foundation
import SafeWatchCore

/// What a `safe-watch run` needs to know about the project besides its configuration.
public struct Project: Sendable {
    /// Absolute project directory.
    public var directory: String
    /// Absolute path of the configuration file (it may not exist).
    public var configurationFile: String
    /// The configuration in force, CLI overrides applied.
    public var configuration: Configuration
    /// CLI overrides, applied again to every reloaded configuration.
    public var overrides: @Sendable (inout Configuration) -> Void
    /// The product's framework when there is no configuration file: its settings are the defaults
    /// (`ServerFramework.apply`), again after a reload that finds no file.
    public var framework: ServerFramework?

    public init(
        directory: String, configurationFile: String, configuration: Configuration,
        overrides: @escaping @Sendable (inout Configuration) -> Void
    ) {
        self.directory = directory
        self.configurationFile = configurationFile
        self.configuration = configuration
        self.overrides = overrides
    }

    public var stateDirectory: String { self.directory + "/.safe-watch" }

    /// Where `safe-watch status` and friends reach this safe-watch.
    public var controlSocketPath: String { ControlSocketLocation.path(forProject: self.directory) }

    var migrationsDirectory: String {
        let dir = self.configuration.migrations.dir
        return dir.hasPrefix("/") ? dir : self.directory + "/" + dir
    }

    /// `[migrations] database_url`, else $DATABASE_URL.
    var databaseURL: String? {
        self.configuration.migrations.databaseURL
            ?? ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The configuration file relative to the project, as the watcher reports it.
    var relativeConfigurationFile: String {
        self.configurationFile.hasPrefix(self.directory + "/")
            ? String(self.configurationFile.dropFirst(self.directory.count + 1)) : self.configurationFile
    }

    /// The browser side as configured, with the default asset directories that exist here.
    public func liveReloadSettings(listenAddresses: [ListenAddress]) -> (settings: LiveReloadSettings?, notice: String?) {
        let directory = self.directory
        return LiveReloadSettings.from(self.configuration, listenAddresses: listenAddresses) { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }
}
