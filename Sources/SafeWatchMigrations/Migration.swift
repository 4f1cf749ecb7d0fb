import Crypto

/// One file of the migrations directory, in sqlx's layout: `<VERSION>_<description>.sql`, or an
/// `.up.sql` + `.down.sql` pair.
public struct MigrationFile: Equatable, Sendable {
    public enum Kind: String, Equatable, Sendable {
        /// `V_desc.sql`: applied, never reverted.
        case simple
        /// `V_desc.up.sql`
        case up
        /// `V_desc.down.sql`: only run by revert; sqlx never checks its checksum.
        case down
    }

    /// The file name (the directory's top level only counts).
    public var name: String
    public var version: Int64
    /// The name without version and suffix, `_` → space (what sqlx stores).
    public var description: String
    public var kind: Kind
    /// The file's exact bytes.
    public let bytes: [UInt8]
    /// sqlx's checksum: SHA-384 of the exact bytes (BOM, CRLF and comments all count), or of the
    /// text without sqlx.toml's `ignored-chars`. Computed once: the validator compares it many times.
    public let checksum: [UInt8]

    public init(
        name: String, version: Int64, description: String, kind: Kind, bytes: [UInt8], ignoredCharacters: Set<Unicode.Scalar> = []
    ) {
        self.name = name
        self.version = version
        self.description = description
        self.kind = kind
        self.bytes = bytes
        self.checksum = sqlxChecksum(bytes, ignoring: ignoredCharacters)
    }

    /// sqlx runs a migration outside a transaction only when these are its very first bytes.
    public var noTransaction: Bool { self.bytes.starts(with: Array("-- no-transaction".utf8)) }
}

/// SHA-384 of `bytes`, as sqlx stores it in `_sqlx_migrations.checksum`.
public func sqlxChecksum(_ bytes: [UInt8]) -> [UInt8] {
    Array(SHA384.hash(data: bytes))
}

/// sqlx's checksum when sqlx.toml's `[migrate] ignored-chars` is set: SHA-384 of the UTF-8 text with
/// those characters left out (sqlx hashes the pieces between them). Bytes that are not UTF-8 are
/// hashed as they are: sqlx refuses such a file before it hashes anything (SW006).
public func sqlxChecksum(_ bytes: [UInt8], ignoring ignored: Set<Unicode.Scalar>) -> [UInt8] {
    guard !ignored.isEmpty, let text = String(validating: bytes, as: UTF8.self) else { return sqlxChecksum(bytes) }
    var kept = String.UnicodeScalarView()
    for scalar in text.unicodeScalars where !ignored.contains(scalar) { kept.append(scalar) }
    return sqlxChecksum(Array(String(kept).utf8))
}

/// Lower-case hex, how checksums are shown and written to the sum file.
public func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var text = ""
    text.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return text
}

/// A row of `_sqlx_migrations`.
public struct AppliedMigration: Equatable, Sendable {
    public var version: Int64
    public var description: String
    public var success: Bool
    public var checksum: [UInt8]
    /// Nanoseconds; -1 while the apply transaction had not finished.
    public var executionTime: Int64

    public init(version: Int64, description: String, success: Bool, checksum: [UInt8], executionTime: Int64) {
        self.version = version
        self.description = description
        self.success = success
        self.checksum = checksum
        self.executionTime = executionTime
    }
}

/// A migration to run forward: a simple or up file.
public struct PendingMigration: Equatable, Sendable {
    public var version: Int64
    public var description: String
    public var sql: String
    public var checksum: [UInt8]
    public var noTransaction: Bool

    public init(version: Int64, description: String, sql: String, checksum: [UInt8], noTransaction: Bool) {
        self.version = version
        self.description = description
        self.sql = sql
        self.checksum = checksum
        self.noTransaction = noTransaction
    }
}

/// A migration to undo: the down file of an applied reversible migration.
public struct RevertibleMigration: Equatable, Sendable {
    public var version: Int64
    public var downSQL: String
    public var noTransaction: Bool

    public init(version: Int64, downSQL: String, noTransaction: Bool) {
        self.version = version
        self.downSQL = downSQL
        self.noTransaction = noTransaction
    }
}

/// sqlx's bookkeeping table, unless sqlx.toml's `[migrate] table-name` names another.
public let defaultMigrationsTable = "_sqlx_migrations"

/// A database that keeps sqlx's `_sqlx_migrations` table: PostgreSQL or SQLite.
public protocol MigrationDatabase: Sendable {
    /// The bookkeeping table's name as written in SQL.
    var tableName: String { get }
    /// Holds sqlx's migration lock until `unlock()`, across reading the table, checking and
    /// applying, as sqlx's Migrator does for a whole run, so a concurrent runner cannot slip in
    /// between. `waiting` is called once if another session holds it. (SQLite: no lock, as in sqlx;
    /// each apply is its own transaction.)
    func lock(whileWaiting waiting: @Sendable () -> Void) async throws
    func unlock() async throws
    /// The rows of `_sqlx_migrations` ordered by version; empty when the table does not exist.
    func appliedMigrations() async throws -> [AppliedMigration]
    /// Runs the SQL and records the row exactly as sqlx does (one transaction unless
    /// `noTransaction`; Postgres holds sqlx's advisory lock). Returns the execution time.
    func apply(_ migration: PendingMigration) async throws -> Duration
    /// Runs the down SQL and deletes the row (one transaction unless `noTransaction`).
    func revert(_ migration: RevertibleMigration) async throws
    /// Compare-and-swap of a recorded checksum: true if the row had `old` and now has `new`.
    func replaceChecksum(version: Int64, old: [UInt8], new: [UInt8]) async throws -> Bool
    /// Writes a verified backup to `path` (pg_dump custom format, or SQLite's backup) and returns
    /// the command that restores it.
    func backup(to path: String) async throws -> String
    func close() async
}
