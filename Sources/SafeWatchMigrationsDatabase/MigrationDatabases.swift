import SafeWatchMigrations

/// Opens the database a sqlx URL names.
public enum MigrationDatabases {
    /// sqlx's URL forms: `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable` (or
    /// `postgresql://`; libpq's PG* environment variables fill what the URL leaves out, as with sqlx),
    /// `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:` (`?mode=ro|rw|rwc`).
    ///
    /// Fails with one sentence (`MigrationDatabaseError`): a scheme other than those, a server that
    /// does not answer within `connectTimeout`, rejected credentials, a database that does not
    /// exist, or a SQLite file that does not exist — which is never created unless
    /// `createIfMissing` (or `mode=rwc` in the URL): reading must not leave an empty database behind.
    /// `createIfMissing` does not create PostgreSQL databases.
    ///
    /// `tableName`: the bookkeeping table (sqlx.toml's `[migrate] table-name`).
    public static func open(
        url: String, connectTimeout: Duration = .seconds(3), createIfMissing: Bool = false,
        tableName: String = defaultMigrationsTable
    ) async throws -> any MigrationDatabase {
        switch try DatabaseURL.parse(url, environment: ExternalCommand.currentEnvironment()) {
        case .postgres(let postgres):
            return try await PostgresMigrationDatabase.connect(postgres, connectTimeout: connectTimeout, tableName: tableName)
        case .sqlite(let sqlite):
            return try await SQLiteMigrationDatabase.open(sqlite, createIfMissing: createIfMissing, tableName: tableName)
        }
    }

    /// `url` with its password replaced by `***`, for logs and messages.
    public static func redacted(_ url: String) -> String {
        redactPassword(url)
    }
}
