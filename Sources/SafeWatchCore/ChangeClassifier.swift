/// What a changed file means to the supervise loop.
public enum ChangeKind: Equatable, Sendable {
    /// Sources, manifests, resources: rebuild.
    case build
    /// A file of the migrations directory: check it at once, then rebuild (it may be embedded).
    case migration
    /// The configuration file: reload it.
    case configuration
    /// Anything else: nothing to do.
    case irrelevant
}

/// Classifies changed paths (relative to the project root).
public struct ChangeClassifier: Sendable {
    /// File extensions whose changes rebuild (`swift` by default; `rs`, `go`, … for other servers).
    public var extensions: Set<String>
    /// The configuration file, relative to the project root.
    public var configurationPath: String
    public var ignore: IgnoreRules
    /// The migrations directory, relative to the project root (nil: none).
    public var migrationsDirectory: String?

    /// Names that always rebuild, wherever they are.
    public static let manifests: Set<String> = ["Package.swift", "Package.resolved", "Cargo.toml", "Cargo.lock", "go.mod", "go.sum"]

    public init(extensions: Set<String>, configurationPath: String, ignore: IgnoreRules, migrationsDirectory: String? = nil) {
        self.extensions = extensions
        self.configurationPath = configurationPath
        self.ignore = ignore
        self.migrationsDirectory = migrationsDirectory
    }

    public func classify(_ path: String) -> ChangeKind {
        if path == self.configurationPath { return .configuration }
        if self.ignore.isIgnored(path, isDirectory: false) { return .irrelevant }
        if let migrations = self.migrationsDirectory, path.hasPrefix(migrations + "/"),
            !path.dropFirst(migrations.count + 1).contains("/")
        {
            return .migration
        }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if Self.manifests.contains(name) { return .build }
        if let dot = name.lastIndex(of: "."), self.extensions.contains(String(name[name.index(after: dot)...])) {
            return .build
        }
        // Resources of SwiftPM targets live beside the sources.
        if path.hasPrefix("Sources/") { return .build }
        return .irrelevant
    }
}
