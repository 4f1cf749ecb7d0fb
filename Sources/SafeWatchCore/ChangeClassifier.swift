/// What a changed file means to the supervise loop.
public enum ChangeKind: Equatable, Sendable {
    /// Sources, manifests, resources: rebuild.
    case build
    /// A file of the migrations directory: check it at once, then rebuild (it may be embedded).
    case migration
    /// The configuration file: reload it.
    case configuration
    /// A file under `[browser] assets`: no build, the browser restyles (CSS) or reloads the page.
    case asset(AssetKind)
    /// Anything else: nothing to do.
    case irrelevant
}

/// What an asset change asks of the browser.
public enum AssetKind: String, Equatable, Sendable {
    /// A stylesheet: swap it in place, no page reload.
    case css
    /// A template, script, image…: reload the page.
    case page
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
    /// Directories (relative to the project root) whose files go to the browser without a build.
    public var assetDirectories: [String] = []

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
        if self.assetDirectories.contains(where: { path.hasPrefix($0 + "/") }) {
            // An editor's atomic save writes a temporary file first and renames it over the real
            // one: only the real one may reach the browser (once), not its temporary sibling.
            if Self.isEditorTemporary(name) { return .irrelevant }
            return .asset(name.lowercased().hasSuffix(".css") ? .css : .page)
        }
        if Self.manifests.contains(name) { return .build }
        if let dot = name.lastIndex(of: "."), self.extensions.contains(String(name[name.index(after: dot)...])) {
            return .build
        }
        // Resources of SwiftPM targets live beside the sources.
        if path.hasPrefix("Sources/") { return .build }
        return .irrelevant
    }

    /// Names editors write while saving and then rename or delete: vim's `.x.swp`, `.x.swx`,
    /// `x~` and its `4913` probe, emacs' `.#x` and `#x#`, `x.tmp`, JetBrains' `x___jb_tmp___`,
    /// GNOME's `.goutputstream-*`, Chrome DevTools' `x.crswap`, sed -i's `sedAbc123`.
    public static func isEditorTemporary(_ name: String) -> Bool {
        if name == "4913" || name.hasSuffix("~") || name.hasPrefix(".#") { return true }
        if name.hasPrefix("#") && name.hasSuffix("#") { return true }
        let lowered = name.lowercased()
        for suffix in [".swp", ".swx", ".swo", ".tmp", ".temp", ".crswap", "___jb_tmp___", "___jb_old___", ".part", ".bak"]
        where lowered.hasSuffix(suffix) {
            return true
        }
        if lowered.hasPrefix(".goutputstream-") { return true }
        // `sed -i` writes `sed` and six random letters and digits beside the file.
        if name.count == 9, name.hasPrefix("sed"), name.dropFirst(3).allSatisfy({ $0.isLetter || $0.isNumber }) { return true }
        return false
    }
}
