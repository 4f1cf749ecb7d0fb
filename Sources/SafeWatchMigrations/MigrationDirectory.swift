/// A top-level entry of the migrations directory, as read from disk.
public struct DirectoryEntry: Equatable, Sendable {
    public var name: String
    public var isDirectory: Bool
    /// The file's bytes (nil for directories, or when unreadable).
    public var bytes: [UInt8]?

    public init(name: String, isDirectory: Bool = false, bytes: [UInt8]?) {
        self.name = name
        self.isDirectory = isDirectory
        self.bytes = bytes
    }
}

/// The migrations as sqlx resolves them, plus what is wrong with the files themselves.
public struct MigrationDirectory: Equatable, Sendable {
    /// The sum file's name inside the migrations directory.
    public static let sumFileName = "safe-watch.sum"
    /// What `sqlx migrate add` (and `safe-watch migrations add`) writes into a new simple file.
    public static let template = "-- Add migration script here\n"
    /// … into the `.up.sql` of a new reversible pair.
    public static let upTemplate = "-- Add up migration script here\n"
    /// … into the `.down.sql` of a new reversible pair.
    public static let downTemplate = "-- Add down migration script here\n"

    /// The body `migrations add` writes into a new file of this kind, as sqlx-cli does.
    public static func template(for kind: MigrationFile.Kind) -> String {
        switch kind {
        case .simple: return Self.template
        case .up: return Self.upTemplate
        case .down: return Self.downTemplate
        }
    }

    public var files: [MigrationFile]
    public var findings: [Finding]
    /// sqlx.toml's `[migrate] ignored-chars`: left out of every checksum.
    public var ignoredCharacters: Set<Unicode.Scalar>

    /// Resolves `entries` the way sqlx does: top level only; `<VERSION>_<desc>.sql`,
    /// `.up.sql`/`.down.sql` pairs; files without `_` or a lower-case `.sql` suffix are ignored.
    /// - Parameters:
    ///   - now: the current UTC time as `YYYYMMDDHHMMSS`, to flag timestamp versions in the future
    ///     (nil: not checked).
    ///   - ignoredCharacters: sqlx.toml's `ignored-chars`, left out when checksums are computed.
    public init(entries: [DirectoryEntry], now: Int64? = nil, ignoredCharacters: Set<Unicode.Scalar> = []) {
        var files: [MigrationFile] = []
        var findings: [Finding] = []
        for entry in entries.sorted(by: { $0.name < $1.name }) where entry.name != Self.sumFileName {
            let name = entry.name
            if entry.isDirectory {
                if name.first?.isNumber == true {
                    findings.append(Finding(.ignoredBySqlx, .warn, file: name + "/", version: nil,
                        message: "\(name)/ is a directory: sqlx only reads the top level of the migrations directory",
                        evidence: .files, recovery: "move its migrations up one level"))
                }
                continue
            }
            guard name.hasSuffix(".sql") else {
                if name.lowercased().hasSuffix(".sql") {
                    findings.append(Finding(.ignoredBySqlx, .warn, file: name, version: nil,
                        message: "\(name) looks like a migration but sqlx ignores it: the suffix must be lower-case .sql",
                        evidence: .files, recovery: "rename it to end in .sql"))
                }
                continue
            }
            guard let underscore = name.firstIndex(of: "_") else {
                findings.append(Finding(.ignoredBySqlx, .warn, file: name, version: nil,
                    message: "\(name) looks like a migration but sqlx ignores it: the name needs <VERSION>_<description>.sql",
                    evidence: .files, recovery: "rename it, e.g. to \(name.replacing("-", with: "_"))"))
                continue
            }
            let prefix = name[..<underscore]
            // sqlx parses the prefix as Rust's i64 does: ASCII digits after an optional + or -
            // (`+5_x.sql` is version 5, `-1_x.sql` version -1); so does Int64(_:).
            guard let version = Int64(prefix) else {
                let dropping = name.hasPrefix(".#") || name.hasPrefix("._") || name.hasPrefix("#")
                findings.append(Finding(.versionNotInteger, .block, file: name, version: nil,
                    message: "\(name): the version prefix \"\(prefix)\" is not an integer, which breaks sqlx's whole migrations directory",
                    evidence: .files,
                    recovery: dropping ? "delete it: it is an editor's lock or macOS metadata file (rm '\(name)')"
                        : "rename it to <VERSION>_<description>.sql with a numeric version"))
                continue
            }
            var rest = String(name[name.index(after: underscore)...])
            let kind: MigrationFile.Kind
            if rest.hasSuffix(".up.sql") {
                kind = .up
                rest.removeLast(".up.sql".count)
            } else if rest.hasSuffix(".down.sql") {
                kind = .down
                rest.removeLast(".down.sql".count)
            } else {
                kind = .simple
                rest.removeLast(".sql".count)
            }
            guard let bytes = entry.bytes else {
                findings.append(Finding(.encoding, .block, file: name, version: version,
                    message: "\(name) cannot be read", evidence: .files, recovery: "check its permissions (chmod u+r '\(name)')"))
                continue
            }
            files.append(MigrationFile(
                name: name, version: version, description: rest.replacing("_", with: " "), kind: kind, bytes: bytes,
                ignoredCharacters: ignoredCharacters))
        }
        self.files = files
        self.ignoredCharacters = ignoredCharacters
        self.findings = findings + Self.structuralFindings(files) + Self.versionFindings(files, now: now)
    }

    /// SW004: versions that are not written the way the rest are (width), or timestamps that are not
    /// a real UTC time or lie in the future.
    private static func versionFindings(_ files: [MigrationFile], now: Int64?) -> [Finding] {
        var findings: [Finding] = []
        let forward = files.filter { $0.kind != .down }
        let prefixes = forward.map { ($0, String($0.name.prefix { $0 != "_" })) }
        for (file, prefix) in prefixes where prefix.first == "+" || prefix.first == "-" {
            findings.append(Finding(.versionNotCanonical, .warn, file: file.name, version: file.version,
                message: "\(file.name): sqlx reads the version \(prefix) as \(file.version), but a sign in a version is surely a typo"
                    + (file.version < 0 ? " (a negative version sorts before every other migration)" : ""),
                evidence: .files, recovery: "rename it without the sign, before it is applied"))
        }
        for (file, prefix) in prefixes where prefix.count == 14 {
            let digits = prefix.compactMap { Int(String($0)) }
            func number(_ range: Range<Int>) -> Int { digits[range].reduce(0) { $0 * 10 + $1 } }
            let (month, day, hour, minute, second) = (number(4..<6), number(6..<8), number(8..<10), number(10..<12), number(12..<14))
            if !(1...12).contains(month) || !(1...31).contains(day) || hour > 23 || minute > 59 || second > 59 {
                findings.append(Finding(.versionNotCanonical, .warn, file: file.name, version: file.version,
                    message: "\(file.name): \(prefix) is not a valid YYYYMMDDHHMMSS time",
                    evidence: .files, recovery: "rename it with the current UTC time (`safe-watch migrations add` does)"))
            } else if let now, file.version > now {
                findings.append(Finding(.versionNotCanonical, .warn, file: file.name, version: file.version,
                    message: "\(file.name): the timestamp \(prefix) is in the future, so migrations added today would sort before it",
                    evidence: .files, recovery: "rename it with the current UTC time"))
            }
        }
        let sequential = prefixes.filter { $0.1.count < 14 && $0.1.allSatisfy(\.isNumber) }
        let widths = Dictionary(grouping: sequential, by: { $0.1.count })
        if widths.count > 1, let usual = widths.max(by: { $0.value.count < $1.value.count })?.key {
            for (file, prefix) in sequential where prefix.count != usual {
                findings.append(Finding(.versionNotCanonical, .warn, file: file.name, version: file.version,
                    message: "\(file.name): version \(prefix) is \(prefix.count) digits wide where the others use \(usual)",
                    evidence: .files, recovery: "rename it to \(String(repeating: "0", count: max(0, usual - String(file.version).count)))\(file.version)_…"))
            }
        }
        return findings
    }

    /// Simple and up files: what sqlx applies and checks.
    public var appliable: [MigrationFile] { self.files.filter { $0.kind != .down } }

    /// Every version a file names, down files included: what sqlx's missing-migration check counts.
    public var versions: Set<Int64> { Set(self.files.map(\.version)) }

    public func downFile(for version: Int64) -> MigrationFile? {
        self.files.first { $0.kind == .down && $0.version == version }
    }

    private static func structuralFindings(_ files: [MigrationFile]) -> [Finding] {
        var findings: [Finding] = []
        let byVersion = Dictionary(grouping: files, by: \.version)
        for (version, group) in byVersion.sorted(by: { $0.key < $1.key }) {
            let forward = group.filter { $0.kind != .down }
            if forward.count > 1 {
                let names = forward.map(\.name).sorted()
                findings.append(Finding(.duplicateVersion, .block, file: names.last, version: version,
                    message: "\(names.joined(separator: " and ")) share version \(version): sqlx applies one and fails on the other (two branches each added one?)",
                    evidence: .files,
                    recovery: "give the newer one the next free version: `git mv '\(names.last ?? "")' '<new version>_\(names.last.map { String($0.drop { $0 != "_" }.dropFirst()) } ?? "")'`"))
            }
            let ups = group.filter { $0.kind == .up }
            let downs = group.filter { $0.kind == .down }
            // sqlx has no pairing rule (an unpaired .up.sql is applied like a simple file, an unpaired
            // .down.sql is never applied), so a sqlx project with one still runs: a warning, which
            // `--strict` turns into a block.
            if let up = ups.first, downs.isEmpty {
                findings.append(Finding(.pairIncomplete, .warn, file: up.name, version: version,
                    message: "\(up.name) has no \(up.name.replacing(".up.sql", with: ".down.sql")): sqlx applies it, but `revert` skips it",
                    evidence: .files, recovery: "add the down file, or rename it to a simple .sql migration"))
            }
            if let down = downs.first, ups.isEmpty {
                findings.append(Finding(.pairIncomplete, .warn, file: down.name, version: version,
                    message: forward.isEmpty
                        ? "\(down.name) has no matching .up.sql: sqlx never applies it, yet counts version \(version) as known"
                        : "\(down.name) belongs to a simple migration (\(forward[0].name)): `revert` would run it",
                    evidence: .files, recovery: forward.isEmpty ? "add the up file, or delete the orphaned down file"
                        : "rename \(forward[0].name) to .up.sql, or delete the down file"))
            }
        }
        for file in files {
            guard let text = String(validating: file.bytes, as: UTF8.self) else {
                findings.append(Finding(.encoding, .block, file: file.name, version: file.version,
                    message: "\(file.name) is not valid UTF-8, which sqlx rejects",
                    evidence: .files, recovery: "re-save it as UTF-8 (iconv -t UTF-8)"))
                continue
            }
            let marker = "-- no-transaction"
            if !file.noTransaction, let range = text.firstRange(of: marker) {
                let before = text[..<range.lowerBound]
                if before.allSatisfy({ $0.isWhitespace || $0 == "\u{FEFF}" }) {
                    findings.append(Finding(.transactionMode, .block, file: file.name, version: file.version,
                        message: "\(file.name): `-- no-transaction` must be the very first bytes of the file to take effect",
                        evidence: .files, recovery: "remove what precedes it (a byte-order mark or blank lines)"))
                }
            }
            if file.kind != .down, !file.noTransaction, containsConcurrently(text) {
                findings.append(Finding(.transactionMode, .block, file: file.name, version: file.version,
                    message: "\(file.name) uses CONCURRENTLY inside a transaction, which PostgreSQL refuses",
                    evidence: .files, recovery: "put `-- no-transaction` on the first line, and only that statement in the file"))
            }
            let body = text.trimmingWhitespace()
            if file.kind != .down, body == template.trimmingWhitespace() || body == upTemplate.trimmingWhitespace() {
                findings.append(Finding(.emptyTemplate, .block, file: file.name, version: file.version,
                    message: "\(file.name) is still the empty template: applied as is, it is recorded and can never be edited",
                    evidence: .files, recovery: "write the migration before saving, or delete the file"))
            }
            if file.kind == .down, body == downTemplate.trimmingWhitespace() {
                findings.append(Finding(.emptyTemplate, .warn, file: file.name, version: file.version,
                    message: "\(file.name) is still the empty template: `revert` would delete the row of version \(file.version) and undo nothing",
                    evidence: .files, recovery: "write the statements that undo its .up.sql"))
            }
        }
        return findings
    }
}

/// `CONCURRENTLY` outside comments.
func containsConcurrently(_ text: String) -> Bool {
    SQLText.statements(text).contains { $0.uppercased().contains("CONCURRENTLY") }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        guard let start = self.firstIndex(where: { !$0.isWhitespace }),
            let end = self.lastIndex(where: { !$0.isWhitespace })
        else { return "" }
        return String(self[start...end])
    }
}
