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
    /// What `sqlx migrate add` (and `safe-watch migrations add`) writes into a new file.
    public static let template = "-- Add migration script here\n"

    public var files: [MigrationFile]
    public var findings: [Finding]

    /// Resolves `entries` the way sqlx does: top level only; `<VERSION>_<desc>.sql`,
    /// `.up.sql`/`.down.sql` pairs; files without `_` or a lower-case `.sql` suffix are ignored.
    /// - Parameter now: the current UTC time as `YYYYMMDDHHMMSS`, to flag timestamp versions in the
    ///   future (nil: not checked).
    public init(entries: [DirectoryEntry], now: Int64? = nil) {
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
            guard !prefix.isEmpty, prefix.allSatisfy({ $0.isASCII && $0.isNumber }), let version = Int64(prefix) else {
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
            files.append(MigrationFile(name: name, version: version, description: rest.replacing("_", with: " "), kind: kind, bytes: bytes))
        }
        self.files = files
        self.findings = findings + Self.structuralFindings(files) + Self.versionFindings(files, now: now)
    }

    /// SW004: versions that are not written the way the rest are (width), or timestamps that are not
    /// a real UTC time or lie in the future.
    private static func versionFindings(_ files: [MigrationFile], now: Int64?) -> [Finding] {
        var findings: [Finding] = []
        let forward = files.filter { $0.kind != .down }
        let prefixes = forward.map { ($0, String($0.name.prefix { $0.isNumber })) }
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
        let sequential = prefixes.filter { $0.1.count < 14 }
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
            if let up = ups.first, downs.isEmpty {
                findings.append(Finding(.pairIncomplete, .block, file: up.name, version: version,
                    message: "\(up.name) has no \(up.name.replacing(".up.sql", with: ".down.sql")): a reversible migration needs both",
                    evidence: .files, recovery: "add the down file, or rename it to a simple .sql migration"))
            }
            if let down = downs.first, ups.isEmpty {
                findings.append(Finding(.pairIncomplete, .block, file: down.name, version: version,
                    message: "\(down.name) has no matching .up.sql",
                    evidence: .files, recovery: "add the up file, or delete the orphaned down file"))
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
            if file.kind != .down, text.trimmingWhitespace() == template.trimmingWhitespace() {
                findings.append(Finding(.emptyTemplate, .block, file: file.name, version: file.version,
                    message: "\(file.name) is still the empty template: applied as is, it is recorded and can never be edited",
                    evidence: .files, recovery: "write the migration before saving, or delete the file"))
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
