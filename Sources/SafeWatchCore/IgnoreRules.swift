#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decides which paths the watcher never looks at: built-in directories (`.build`, `.git`,
/// `.safe-watch`), editor droppings, `.gitignore` patterns and the configured `ignore` patterns.
///
/// Patterns follow gitignore: `#` comments, `!` negation (last match wins), a trailing `/` for
/// directories only, a `/` at the start or in the middle anchors the pattern at the project root,
/// `*`, `?`, `[…]` within a path segment and `**` across segments.
public struct IgnoreRules: Sendable {
    /// Directories never watched, at any depth.
    public static let builtinDirectories: Set<String> = [".build", ".git", ".safe-watch", ".swiftpm"]

    private struct Rule: Sendable {
        var segments: [String]
        var negated: Bool
        var directoryOnly: Bool
    }

    private var rules: [Rule] = []

    public init(patterns: [String] = []) {
        self.add(patterns: patterns)
    }

    /// Adds gitignore-syntax lines (a `.gitignore` file's contents split into lines).
    public mutating func add(patterns: [String]) {
        for raw in patterns {
            var line = raw
            if line.hasSuffix("\r") { line.removeLast() }
            while line.hasSuffix(" ") && !line.hasSuffix("\\ ") { line.removeLast() }
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            var negated = false
            if line.hasPrefix("!") {
                negated = true
                line.removeFirst()
            } else if line.hasPrefix("\\") {
                line.removeFirst()
            }
            var directoryOnly = false
            if line.hasSuffix("/") {
                directoryOnly = true
                line.removeLast()
            }
            guard !line.isEmpty else { continue }
            let anchored = line.contains("/")
            if line.hasPrefix("/") { line.removeFirst() }
            var segments = line.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
            if !anchored { segments.insert("**", at: 0) }
            self.rules.append(Rule(segments: segments, negated: negated, directoryOnly: directoryOnly))
        }
    }

    /// Whether `path` (relative to the project root, `/`-separated) is ignored. A path inside an
    /// ignored directory is ignored too.
    public func isIgnored(_ path: String, isDirectory: Bool) -> Bool {
        let components = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !components.isEmpty else { return false }
        for (index, name) in components.enumerated() {
            let isLast = index == components.count - 1
            let componentIsDirectory = isLast ? isDirectory : true
            if componentIsDirectory && Self.isBuiltinIgnoredDirectory(name) { return true }
            if isLast && !componentIsDirectory && Self.isEditorDropping(name) { return true }
            if self.matches(Array(components[...index]), isDirectory: componentIsDirectory) { return true }
        }
        return false
    }

    /// `.build`, `.git`, `.safe-watch`, `.swiftpm`, and SwiftPM scratch folders `.build-*`/`.build_*`.
    public static func isBuiltinIgnoredDirectory(_ name: String) -> Bool {
        builtinDirectories.contains(name) || name.hasPrefix(".build-") || name.hasPrefix(".build_")
    }

    /// Files editors write beside the real one while saving: vim's `.x.swp` and `4913` probe,
    /// backups `x~`, emacs locks `.#x` and autosaves `#x#`.
    public static func isEditorDropping(_ name: String) -> Bool {
        name == "4913" || name.hasSuffix("~") || name.hasPrefix(".#")
            || (name.hasPrefix("#") && name.hasSuffix("#"))
            || name.hasSuffix(".swp") || name.hasSuffix(".swo") || name.hasSuffix(".swx")
    }

    private func matches(_ components: [String], isDirectory: Bool) -> Bool {
        var ignored = false
        for rule in self.rules where !rule.directoryOnly || isDirectory {
            if Self.match(rule.segments[...], components[...]) {
                ignored = !rule.negated
            }
        }
        return ignored
    }

    private static func match(_ pattern: ArraySlice<String>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            if rest.isEmpty { return true }
            var tail = path
            while true {
                if match(rest, tail) { return true }
                guard !tail.isEmpty else { return false }
                tail = tail.dropFirst()
            }
        }
        guard let name = path.first, fnmatch(first, name, 0) == 0 else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }
}
