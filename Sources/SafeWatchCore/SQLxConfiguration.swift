import TOMLKit

/// The migration settings of sqlx 0.9's `sqlx.toml` (`[migrate]`), which change what sqlx stores and
/// compares, so safe-watch must read them the same way: the table's name and the characters left
/// out of checksums. Pure: the caller reads the file (the project's `sqlx.toml`, where sqlx-cli looks).
public struct SQLxConfiguration: Equatable, Sendable {
    public static let fileName = "sqlx.toml"
    public static let defaultTableName = "_sqlx_migrations"

    /// `[migrate.defaults] migration-type`.
    public enum MigrationType: String, Equatable, Sendable {
        case inferred, simple, reversible
    }

    /// `[migrate.defaults] migration-versioning`.
    public enum Versioning: String, Equatable, Sendable {
        case inferred, timestamp, sequential
    }

    /// `[migrate] table-name`: used verbatim in SQL, as sqlx does (it may be schema-qualified or quoted).
    public var tableName = Self.defaultTableName
    /// `[migrate] ignored-chars`: left out of every checksum.
    public var ignoredCharacters: Set<Unicode.Scalar> = []
    /// `[migrate] migrations-dir`, relative to the project (safe-watch reports a mismatch with its own).
    public var migrationsDir: String?
    public var defaultMigrationType = MigrationType.inferred
    public var defaultVersioning = Versioning.inferred

    public init() {}

    /// Parses `text`; errors name the file, line and key. Tables other than `[migrate]` are not
    /// safe-watch's business and are not read.
    public init(parsing text: String, fileName: String = Self.fileName) throws(ConfigurationError) {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(file: fileName, line: error.source.begin.line, message: "not valid TOML: \(error.description)")
        } catch {
            throw ConfigurationError(file: fileName, message: "not valid TOML: \(error)")
        }
        let reader = TableReader(loader: ConfigurationLoader(fileName: fileName), text: text)
        guard let value = root["migrate"] else { return }
        guard let migrate = value.table else { throw reader.error("", "migrate", "must be a table ([migrate])") }
        // sqlx 0.9 spells its keys in kebab-case; the snake_case spelling would be ignored by sqlx,
        // so honouring it here would make safe-watch and the server disagree.
        for key in migrate.keys where key.contains("_") {
            let kebab = key.replacing("_", with: "-")
            throw reader.error("migrate", key, "sqlx reads `\(kebab)`, not `\(key)`: rename the key (sqlx ignores it as written)")
        }
        if let name = try reader.string(migrate, "migrate", "table-name") {
            guard !name.trimmingWhitespace().isEmpty else { throw reader.error("migrate", "table-name", "must not be empty") }
            self.tableName = name
        }
        if let characters = try reader.strings(migrate, "migrate", "ignored-chars") {
            for character in characters {
                guard character.unicodeScalars.count == 1, let scalar = character.unicodeScalars.first else {
                    throw reader.error("migrate", "ignored-chars", "\"\(character)\" is not one character (write each as its own string, e.g. [\"\\r\", \" \"])")
                }
                self.ignoredCharacters.insert(scalar)
            }
        }
        self.migrationsDir = try reader.nonEmptyString(migrate, "migrate", "migrations-dir")
        if let defaults = migrate["defaults"] {
            guard let table = defaults.table else { throw reader.error("migrate", "defaults", "must be a table ([migrate.defaults])") }
            for key in table.keys where key.contains("_") {
                throw reader.error("migrate.defaults", key, "sqlx reads `\(key.replacing("_", with: "-"))`, not `\(key)`: rename the key (sqlx ignores it as written)")
            }
            if let text = try reader.string(table, "migrate.defaults", "migration-type") {
                guard let type = MigrationType(rawValue: text) else {
                    throw reader.error("migrate.defaults", "migration-type", "unknown value \"\(text)\" (use \"inferred\", \"simple\" or \"reversible\")")
                }
                self.defaultMigrationType = type
            }
            if let text = try reader.string(table, "migrate.defaults", "migration-versioning") {
                guard let versioning = Versioning(rawValue: text) else {
                    throw reader.error("migrate.defaults", "migration-versioning", "unknown value \"\(text)\" (use \"inferred\", \"timestamp\" or \"sequential\")")
                }
                self.defaultVersioning = versioning
            }
        }
    }
}
