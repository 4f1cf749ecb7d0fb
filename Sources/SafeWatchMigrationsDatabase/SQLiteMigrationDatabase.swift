import Glibc
import SQLiteNIO
import SafeWatchMigrations

/// `_sqlx_migrations` in SQLite, kept exactly as sqlx keeps it (`sqlx-sqlite/src/migrate.rs`).
///
/// SQLiteNIO prepares only the first statement of a string, so a file is cut into statements with
/// SQLite's own boundary rules (`StatementSplitter.sqlite`) and run one by one, which is what
/// sqlx's prepare-the-tail loop does. The connection has sqlx's defaults (`foreign_keys = ON`,
/// 5 s busy timeout). `-- no-transaction` is honoured as sqlx ≥ 0.9 does
/// (launchbadge/sqlx#4015); sqlx ≤ 0.8 ignored it on SQLite and always used a transaction.
public actor SQLiteMigrationDatabase: MigrationDatabase {
    private let connection: SQLiteConnection
    /// The database file (absolute); nil for `sqlite::memory:`.
    public nonisolated let path: String?
    /// `_sqlx_migrations`, or sqlx.toml's `[migrate] table-name`, used in SQL verbatim as sqlx does.
    public nonisolated let tableName: String
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    private init(connection: SQLiteConnection, path: String?, tableName: String) {
        self.connection = connection
        self.path = path
        self.tableName = tableName
    }

    deinit {
        if !self.closed { _ = self.connection.close() }
    }

    /// Opens `url` (`sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`). A missing file is an error
    /// ("no database at PATH yet") unless `createIfMissing` or `?mode=rwc`.
    public static func open(
        url: String, createIfMissing: Bool = false, tableName: String = defaultMigrationsTable
    ) async throws -> SQLiteMigrationDatabase {
        guard case .sqlite(let parsed) = try DatabaseURL.parse(url, environment: [:]) else {
            throw MigrationDatabaseError(.badURL, "'\(url)' is not a SQLite URL (sqlite://PATH, sqlite:PATH or sqlite::memory:)")
        }
        return try await self.open(parsed, createIfMissing: createIfMissing, tableName: tableName)
    }

    package static func open(
        _ url: SQLiteURL, createIfMissing: Bool, tableName: String = defaultMigrationsTable
    ) async throws -> SQLiteMigrationDatabase {
        guard let path = url.path else {
            let connection = try await openConnection(.memory, describing: ":memory:")
            return SQLiteMigrationDatabase(connection: connection, path: nil, tableName: tableName)
        }
        let file = absolutePath(path)
        let create = createIfMissing || url.mode == .readWriteCreate
        if isDirectory(file) {
            throw MigrationDatabaseError(.connection, "\(file) is a directory, not a SQLite database")
        }
        if !create && !fileExists(file) {
            throw MigrationDatabaseError(.fileMissing, "no database at \(file) yet")
        }
        let mode = url.mode == .readOnly ? "ro" : create ? "rwc" : "rw"
        let connection = try await openConnection(.file(path: sqliteURI(file, mode: mode)), describing: file)
        let database = SQLiteMigrationDatabase(connection: connection, path: file, tableName: tableName)
        do {
            // Reading the schema fails here, not later, when the file is not a database.
            _ = try await connection.query("SELECT count(*) FROM sqlite_master", [])
        } catch {
            await database.close()
            throw MigrationDatabaseError(.connection, "\(file) is not a usable SQLite database: \(describeSQLite(error))")
        }
        return database
    }

    // MARK: MigrationDatabase

    public func appliedMigrations() async throws -> [AppliedMigration] {
        try await self.exclusively {
            guard try await self.tableExists() else { return [] }
            let rows = try await self.rows(
                "SELECT version, description, success, checksum, execution_time FROM \(self.tableName) ORDER BY version",
                what: "reading \(self.tableName)")
            return try rows.map { row in
                guard let version = row.column("version")?.integer,
                    let description = row.column("description")?.string,
                    let success = row.column("success").flatMap(sqliteBool),
                    let executionTime = row.column("execution_time")?.integer
                else {
                    throw MigrationDatabaseError(
                        .bookkeeping, "a row of \(self.tableName) in \(self.name) does not have sqlx's columns: \(row)")
                }
                let checksum = row.column("checksum")?.blob.map { Array($0.readableBytesView) } ?? []
                return AppliedMigration(
                    version: Int64(version), description: description, success: success, checksum: checksum,
                    executionTime: Int64(executionTime))
            }
        }
    }

    public func apply(_ migration: PendingMigration) async throws -> Duration {
        try await self.exclusively {
            try await self.execute(
                """
                CREATE TABLE IF NOT EXISTS \(self.tableName) (
                    version BIGINT PRIMARY KEY,
                    description TEXT NOT NULL,
                    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    success BOOLEAN NOT NULL,
                    checksum BLOB NOT NULL,
                    execution_time BIGINT NOT NULL
                )
                """, what: "creating \(self.tableName)")
            let statements = StatementSplitter.sqlite(migration.sql)
            let label = "migration \(migration.version) (\(migration.description))"
            let insert = """
                INSERT INTO \(self.tableName) ( version, description, success, checksum, execution_time )
                VALUES ( ?1, ?2, TRUE, ?3, -1 )
                """
            let binds: [SQLiteData] = [
                .integer(SQLiteInt64(migration.version)), .text(migration.description),
                .blob(ByteBuffer(bytes: migration.checksum)),
            ]
            let clock = ContinuousClock()
            let start = clock.now
            if migration.noTransaction {
                try await self.runScript(statements, label: label, noTransaction: true)
                try await self.execute(insert, binds, what: "recording \(label) in \(self.tableName) (its SQL has already run)")
            } else {
                try await self.inTransaction(label: label) {
                    try await self.runScript(statements, label: label, noTransaction: false)
                    try await self.execute(insert, binds, what: "recording \(label) in \(self.tableName)")
                }
            }
            let elapsed = start.duration(to: clock.now)
            // sqlx updates the time after the commit: if this fails the row keeps -1.
            try await self.execute(
                "UPDATE \(self.tableName) SET execution_time = ?1 WHERE version = ?2",
                [.integer(SQLiteInt64(nanoseconds(elapsed))), .integer(SQLiteInt64(migration.version))],
                what: "recording the execution time of \(label)")
            return elapsed
        }
    }

    public func revert(_ migration: RevertibleMigration) async throws {
        try await self.exclusively {
            let label = "reverting migration \(migration.version)"
            guard try await self.tableExists(),
                try await !self.rows(
                    "SELECT 1 FROM \(self.tableName) WHERE version = ?1", [.integer(SQLiteInt64(migration.version))],
                    what: "reading \(self.tableName)"
                ).isEmpty
            else {
                throw MigrationDatabaseError(
                    .notApplied, "migration \(migration.version) is not recorded in \(self.tableName) of \(self.name): nothing reverted")
            }
            let statements = StatementSplitter.sqlite(migration.downSQL)
            let delete = "DELETE FROM \(self.tableName) WHERE version = ?1"
            let binds: [SQLiteData] = [.integer(SQLiteInt64(migration.version))]
            if migration.noTransaction {
                try await self.runScript(statements, label: label, noTransaction: true)
                try await self.execute(delete, binds, what: "deleting the row of migration \(migration.version) (its down SQL has already run)")
            } else {
                try await self.inTransaction(label: label) {
                    try await self.runScript(statements, label: label, noTransaction: false)
                    try await self.execute(delete, binds, what: "deleting the row of migration \(migration.version)")
                }
            }
        }
    }

    /// sqlx's SQLite migrator takes no lock either: each apply is one transaction, and the version's
    /// primary key stops a second one.
    public func lock(whileWaiting waiting: @Sendable () -> Void) async throws {}

    public func unlock() async throws {}

    public func replaceChecksum(version: Int64, old: [UInt8], new: [UInt8]) async throws -> Bool {
        try await self.exclusively {
            guard try await self.tableExists() else { return false }
            let rows = try await self.rows(
                "UPDATE \(self.tableName) SET checksum = ?1 WHERE version = ?2 AND checksum = ?3 RETURNING version",
                [.blob(ByteBuffer(bytes: new)), .integer(SQLiteInt64(version)), .blob(ByteBuffer(bytes: old))],
                what: "replacing the checksum of migration \(version)")
            return rows.count == 1
        }
    }

    /// `VACUUM INTO` a new file, then `PRAGMA quick_check` on it.
    public func backup(to target: String) async throws -> String {
        try await self.exclusively {
            guard let path = self.path else {
                throw MigrationDatabaseError(.backupFailed, "an in-memory SQLite database cannot be backed up and restored")
            }
            let file = absolutePath(target)
            if fileExists(file) {
                throw MigrationDatabaseError(.backupFailed, "the backup file \(file) already exists: choose another path (a backup is never overwritten)")
            }
            do {
                _ = try await self.connection.query("VACUUM INTO ?1", [.text(file)])
            } catch {
                throw MigrationDatabaseError(.backupFailed, "VACUUM INTO \(file) failed: \(describeSQLite(error))")
            }
            let check: [SQLiteRow]
            do {
                let copy = try await SQLiteConnection.open(storage: .file(path: sqliteURI(file, mode: "ro")))
                do {
                    check = try await copy.query("PRAGMA quick_check", [])
                    try? await copy.close()
                } catch {
                    try? await copy.close()
                    throw error
                }
            } catch {
                throw MigrationDatabaseError(.backupFailed, "the backup \(file) does not open: \(describeSQLite(error))")
            }
            let verdict = check.compactMap { $0.columns.first?.data.string }
            guard verdict == ["ok"] else {
                throw MigrationDatabaseError(
                    .backupFailed, "the backup \(file) fails PRAGMA quick_check: \(verdict.prefix(3).joined(separator: "; "))")
            }
            // A stale -wal/-journal next to the restored file would be replayed into it.
            let quotedPath = shellQuoted(path)
            return "rm -f \(shellQuoted(path + "-wal")) \(shellQuoted(path + "-shm")) \(shellQuoted(path + "-journal")) && cp \(shellQuoted(file)) \(quotedPath)"
        }
    }

    public func close() async {
        guard !self.closed else { return }
        self.closed = true
        try? await self.connection.close()
    }

    /// Runs `sql` (one statement) and returns every column as text (blobs in hex). For tests and
    /// diagnostics.
    package func queryText(_ sql: String) async throws -> [[String?]] {
        try await self.exclusively {
            let rows = try await self.rows(sql, what: "running \(sql)")
            return rows.map { row in
                row.columns.map { column -> String? in
                    switch column.data {
                    case .integer(let value): return String(value)
                    case .float(let value): return String(value)
                    case .text(let value): return value
                    case .blob(let value): return hex(Array(value.readableBytesView))
                    case .null: return nil
                    }
                }
            }
        }
    }

    // MARK: Internals

    private var name: String { self.path ?? ":memory:" }

    private func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        while self.busy {
            await withCheckedContinuation { self.waiting.append($0) }
        }
        guard !self.closed else {
            throw MigrationDatabaseError(.connection, "the SQLite database \(self.name) was closed")
        }
        self.busy = true
        defer {
            self.busy = false
            if !self.waiting.isEmpty { self.waiting.removeFirst().resume() }
        }
        return try await body()
    }

    private func inTransaction(label: String, _ body: () async throws -> Void) async throws {
        try await self.execute("BEGIN", what: "starting the transaction of \(label)")
        do {
            try await body()
        } catch let error as MigrationDatabaseError where error.kind == .bookkeeping {
            _ = try? await self.connection.query("ROLLBACK", [])
            throw MigrationDatabaseError(.bookkeeping, "\(error.message); \(label) was rolled back")
        } catch {
            // SQLite may already have rolled back (SQLITE_FULL, RAISE(ROLLBACK)): ignore that error.
            _ = try? await self.connection.query("ROLLBACK", [])
            throw error
        }
        do {
            _ = try await self.connection.query("COMMIT", [])
        } catch {
            _ = try? await self.connection.query("ROLLBACK", [])
            throw MigrationDatabaseError(.migrationFailed, "\(label) failed at COMMIT and was rolled back, nothing recorded: \(describeSQLite(error))")
        }
    }

    private func runScript(_ statements: [String], label: String, noTransaction: Bool) async throws {
        for (index, statement) in statements.enumerated() {
            do {
                _ = try await self.connection.query(statement, [])
            } catch {
                let position = statements.count > 1 ? " at statement \(index + 1) of \(statements.count) (\(excerpt(statement)))" : ""
                let message =
                    noTransaction
                    ? "\(label) failed\(position): \(describeSQLite(error)); it ran outside a transaction (-- no-transaction), so statements before the failure may have been applied, and nothing was recorded in \(self.tableName)"
                    : "\(label) failed\(position) and was rolled back, nothing recorded: \(describeSQLite(error))"
                throw MigrationDatabaseError(.migrationFailed, message)
            }
        }
    }

    /// Whether the table exists. The name may be quoted or name an attached schema
    /// (`"Migrations"`, `main.x`), so SQLite itself resolves it.
    private func tableExists() async throws -> Bool {
        do {
            _ = try await self.connection.query("SELECT 1 FROM \(self.tableName) LIMIT 0", [])
            return true
        } catch let error as SQLiteError where error.message.hasPrefix("no such table") {
            return false
        } catch {
            throw MigrationDatabaseError(.bookkeeping, "looking for \(self.tableName) failed in \(self.name): \(describeSQLite(error))")
        }
    }

    private func execute(_ sql: String, _ binds: [SQLiteData] = [], what: String) async throws {
        _ = try await self.rows(sql, binds, what: what)
    }

    private func rows(_ sql: String, _ binds: [SQLiteData] = [], what: String) async throws -> [SQLiteRow] {
        do {
            return try await self.connection.query(sql, binds)
        } catch {
            throw MigrationDatabaseError(.bookkeeping, "\(what) failed in \(self.name): \(describeSQLite(error))")
        }
    }

    /// Opens with sqlx's connection defaults: `foreign_keys = ON` (SQLite's own default is off, and
    /// a migration that breaks a reference must fail here as it fails under sqlx) and a 5 s busy
    /// timeout (SQLiteNIO's handler would wait forever for a lock another process holds).
    private static func openConnection(_ storage: SQLiteConnection.Storage, describing name: String) async throws -> SQLiteConnection {
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: storage)
        } catch {
            throw MigrationDatabaseError(.connection, "cannot open the SQLite database \(name): \(describeSQLite(error))")
        }
        do {
            _ = try await connection.query("PRAGMA foreign_keys = ON", [])
            _ = try await connection.query("PRAGMA busy_timeout = 5000", [])
        } catch {
            try? await connection.close()
            throw MigrationDatabaseError(.connection, "\(name) is not a usable SQLite database: \(describeSQLite(error))")
        }
        return connection
    }
}

/// A `file:` URI for `sqlite3_open_v2` (SQLiteNIO opens with SQLITE_OPEN_URI): `mode=rw` opens
/// without creating, which a plain path cannot express through SQLiteNIO.
private func sqliteURI(_ absolutePath: String, mode: String) -> String {
    let encoded = absolutePath.split(separator: "/", omittingEmptySubsequences: false).map { percentEncode(String($0)) }
        .joined(separator: "/")
    return "file://\(encoded)?mode=\(mode)"
}

private func sqliteBool(_ data: SQLiteData) -> Bool? {
    switch data {
    case .integer(let value): return value != 0
    case .float(let value): return value != 0
    case .text(let value): return ["1", "true", "t"].contains(value.lowercased())
    default: return nil
    }
}

func describeSQLite(_ error: any Error) -> String {
    if let error = error as? SQLiteError { return error.message }
    if let error = error as? MigrationDatabaseError { return error.message }
    return "\(error)"
}
