/// The name(s) `migrations add` gives a new migration: sqlx-cli's rules (`sqlx migrate add`), so a
/// project gets the same files from either tool.
public struct NewMigration: Equatable, Sendable {
    /// How the version is chosen: `--timestamp`, `--sequential`, sqlx.toml's
    /// `[migrate.defaults] migration-versioning`, or inferred from the directory.
    public enum Versioning: String, Equatable, Sendable {
        case inferred, timestamp, sequential
    }

    /// Simple file or up/down pair: `--simple`, `--reversible`, sqlx.toml's
    /// `[migrate.defaults] migration-type`, or inferred from the directory.
    public enum Shape: String, Equatable, Sendable {
        case inferred, simple, reversible
    }

    /// The version prefix, e.g. `0003` or `20260301120000`.
    public var version: String
    /// The file names to create, each with the kind that decides its template.
    public var files: [(name: String, kind: MigrationFile.Kind)]

    public static func == (lhs: NewMigration, rhs: NewMigration) -> Bool {
        lhs.version == rhs.version && lhs.files.map(\.name) == rhs.files.map(\.name)
            && lhs.files.map(\.kind) == rhs.files.map(\.kind)
    }

    public struct InvalidDescription: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// - Parameters:
    ///   - description: what the user typed; spaces become `_` and nothing else changes (sqlx-cli
    ///     keeps `-`, so `add posts-table` → `…_add_posts-table.sql`).
    ///   - now: the current UTC time as `YYYYMMDDHHMMSS`, the timestamp version.
    public init(
        description: String, in directory: MigrationDirectory, versioning: Versioning, shape: Shape, now: String
    ) throws(InvalidDescription) {
        guard !description.trimmingWhitespace().isEmpty else {
            throw InvalidDescription(description: "the migration needs a description, e.g. `migrations add create_users`")
        }
        // sqlx-cli would write such a name into another directory, or fail to create it.
        guard !description.contains("/"), !description.contains("\0") else {
            throw InvalidDescription(description: "\"\(description)\" cannot be part of a file name (it contains / or a NUL)")
        }
        self.version = Self.version(in: directory, versioning: versioning, now: now)
        let stem = "\(self.version)_\(description.replacing(" ", with: "_"))"
        self.files = Self.reversible(directory, shape)
            ? [(stem + ".up.sql", .up), (stem + ".down.sql", .down)] : [(stem + ".sql", .simple)]
    }

    /// sqlx-cli: timestamp or sequential as asked; inferred, sequential when the two newest versions
    /// differ by one, or when the only one is 0 or 1 — else a timestamp. Sequential versions are the
    /// newest + 1 (1 in an empty directory), always written at least 4 digits wide (`0003`), whatever
    /// width the other files use.
    static func version(in directory: MigrationDirectory, versioning: Versioning, now: String) -> String {
        let versions = directory.versions.sorted()
        let next = (versions.last ?? 0) + 1
        switch versioning {
        case .timestamp:
            return now
        case .sequential:
            return fourDigits(next)
        case .inferred:
            // Each version once (a pair counts once): v0.8.6 looks at the simple and up files only.
            let forward = Set(directory.appliable.map(\.version)).sorted()
            if forward.count >= 2, forward[forward.count - 1] - forward[forward.count - 2] == 1 {
                return fourDigits(forward[forward.count - 1] + 1)
            }
            if forward.count == 1, forward[0] == 0 || forward[0] == 1 {
                return fourDigits(forward[0] + 1)
            }
            return now
        }
    }

    /// sqlx-cli main: the newest migration's shape (an up or down file means a pair). v0.8.6
    /// followed the *first* migration instead, and let `-r` count only in an empty directory.
    static func reversible(_ directory: MigrationDirectory, _ shape: Shape) -> Bool {
        switch shape {
        case .simple: return false
        case .reversible: return true
        case .inferred:
            guard let newest = directory.files.map(\.version).max() else { return false }
            return directory.files.contains { $0.version == newest && $0.kind != .simple }
        }
    }

    /// Rust's `format!("{:04}", n)`.
    static func fourDigits(_ number: Int64) -> String {
        let digits = String(number.magnitude)
        let sign = number < 0 ? "-" : ""
        return sign + String(repeating: "0", count: max(0, 4 - sign.count - digits.count)) + digits
    }
}
