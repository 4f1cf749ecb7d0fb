import SafeWatchMigrations
import Testing

@testable import SafeWatchMigrationsDatabase

/// SQLite in real temporary files.
@Suite("SQLite _sqlx_migrations")
struct SQLiteMigrationDatabaseTests {
    /// A new database file (created by opening with `mode=rwc`) in its own directory.
    private func withDatabase(_ body: (SQLiteMigrationDatabase, String, String) async throws -> Void) async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/app.db"
            let database = try await SQLiteMigrationDatabase.open(url: "sqlite://\(path)?mode=rwc")
            do {
                try await body(database, path, directory)
            } catch {
                await database.close()
                throw error
            }
            await database.close()
        }
    }

    /// sqlx.toml's `[migrate] table-name`, used verbatim (here quoted): a table with sqlx's columns
    /// under that name, `_sqlx_migrations` untouched.
    @Test func anotherTableNameFromSqlxToml() async throws {
        try await withDatabase { admin, path, _ in
            let database = try await SQLiteMigrationDatabase.open(url: "sqlite://\(path)", tableName: "\"Schema History\"")
            #expect(try await database.appliedMigrations().isEmpty)
            _ = try await database.apply(pending("1_create_t.sql", referenceSQL))
            #expect(try await database.appliedMigrations().map(\.description) == ["create t"])
            let columns = try await admin.queryText("SELECT name FROM pragma_table_info('Schema History')")
            #expect(columns.map { $0.first ?? nil } == ["version", "description", "installed_on", "success", "checksum", "execution_time"])
            #expect(try await admin.queryText("SELECT count(*) FROM sqlite_master WHERE name = '_sqlx_migrations'") == [["0"]])
            await database.close()
        }
    }

    @Test func applyWritesSQLxsSchemaAndRow() async throws {
        try await withDatabase { database, _, _ in
            let migration = pending("1_create_t.sql", referenceSQL)
            let elapsed = try await database.apply(migration)

            let columns = try await database.queryText("PRAGMA table_info(_sqlx_migrations)")
            // cid, name, type, notnull, dflt_value, pk — sqlx's CREATE TABLE, column for column.
            #expect(
                columns == [
                    ["0", "version", "BIGINT", "0", nil, "1"],
                    ["1", "description", "TEXT", "1", nil, "0"],
                    ["2", "installed_on", "TIMESTAMP", "1", "CURRENT_TIMESTAMP", "0"],
                    ["3", "success", "BOOLEAN", "1", nil, "0"],
                    ["4", "checksum", "BLOB", "1", nil, "0"],
                    ["5", "execution_time", "BIGINT", "1", nil, "0"],
                ])

            let rows = try await database.appliedMigrations()
            #expect(rows.count == 1)
            let row = try #require(rows.first)
            #expect(row.version == 1)
            #expect(row.description == "create t")
            #expect(row.success)
            #expect(row.checksum == sqlxChecksum(Array(referenceSQL.utf8)))
            #expect(row.checksum.count == 48)
            #expect(hex(row.checksum).hasPrefix("e1cc0b49"))
            #expect(row.executionTime >= 0)
            #expect(row.executionTime == nanoseconds(elapsed))

            // Raw values as sqlx stores them: TRUE as 1, a timestamp, the checksum as a BLOB.
            let raw = try await database.queryText(
                "SELECT success, typeof(checksum), installed_on IS NOT NULL, typeof(version) FROM _sqlx_migrations")
            #expect(raw == [["1", "blob", "1", "integer"]])
            #expect(try await database.queryText("SELECT count(*) FROM t") == [["0"]])
        }
    }

    @Test func multiStatementFilesRunEveryStatement() async throws {
        try await withDatabase { database, _, _ in
            let sql = """
                -- two tables, a trigger whose body has semicolons, and data
                CREATE TABLE a (x INTEGER); CREATE TABLE log (x INTEGER, note TEXT);
                CREATE TRIGGER a_log AFTER INSERT ON a BEGIN
                    INSERT INTO log VALUES (new.x, 'semi;colon');
                    INSERT INTO log VALUES (new.x * 10, 'it''s');
                END;
                INSERT INTO a VALUES (1); /* ; in a comment */ INSERT INTO a VALUES (2);
                """
            _ = try await database.apply(pending("1_setup.sql", sql))
            #expect(try await database.queryText("SELECT count(*) FROM a") == [["2"]])
            #expect(try await database.queryText("SELECT x, note FROM log ORDER BY x") == [
                ["1", "semi;colon"], ["2", "semi;colon"], ["10", "it's"], ["20", "it's"],
            ])
        }
    }

    @Test func failingMigrationRecordsNothingAndLeavesNoPartialTable() async throws {
        try await withDatabase { database, _, _ in
            _ = try await database.apply(pending("1_first.sql", "CREATE TABLE first (id INTEGER);\n"))
            let error = await migrationError {
                _ = try await database.apply(
                    pending("2_broken.sql", "CREATE TABLE partial (id INTEGER);\nINSERT INTO missing VALUES (1);\n"))
            }
            #expect(error?.kind == .migrationFailed)
            #expect(error?.message.contains("migration 2 (broken)") == true)
            #expect(error?.message.contains("no such table: missing") == true)
            #expect(error?.message.contains("rolled back") == true)
            #expect(try await database.appliedMigrations().map(\.version) == [1])
            #expect(
                try await database.queryText("SELECT name FROM sqlite_master WHERE name = 'partial'").isEmpty,
                "the transaction was rolled back")
        }
    }

    @Test func noTransactionIsHonoured() async throws {
        try await withDatabase { database, _, _ in
            // VACUUM cannot run inside a transaction: it only works when the marker is honoured.
            let error = await migrationError { _ = try await database.apply(pending("1_vacuum.sql", "VACUUM;\n")) }
            #expect(error?.message.contains("cannot VACUUM from within a transaction") == true)
            _ = try await database.apply(pending("2_vacuum.sql", "-- no-transaction\nVACUUM;\n"))
            #expect(try await database.appliedMigrations().map(\.version) == [2])

            // Without a transaction a failure keeps what ran before it, records nothing, and says so.
            let partial = await migrationError {
                _ = try await database.apply(
                    pending("3_partial.sql", "-- no-transaction\nCREATE TABLE kept (id INTEGER);\nINSERT INTO missing VALUES (1);\n"))
            }
            #expect(partial?.kind == .migrationFailed)
            #expect(partial?.message.contains("statements before the failure may have been applied") == true)
            #expect(partial?.message.contains("statement 2 of 2") == true)
            #expect(try await database.queryText("SELECT name FROM sqlite_master WHERE name = 'kept'") == [["kept"]])
            #expect(try await database.appliedMigrations().map(\.version) == [2])
        }
    }

    @Test func foreignKeysAreEnforcedAsUnderSQLx() async throws {
        try await withDatabase { database, _, _ in
            _ = try await database.apply(
                pending(
                    "1_tables.sql",
                    "CREATE TABLE parent (id INTEGER PRIMARY KEY);\nCREATE TABLE child (parent_id INTEGER REFERENCES parent (id));\n"))
            let error = await migrationError { _ = try await database.apply(pending("2_orphan.sql", "INSERT INTO child VALUES (42);\n")) }
            #expect(error?.message.contains("FOREIGN KEY constraint failed") == true)
            #expect(try await database.appliedMigrations().map(\.version) == [1])
        }
    }

    @Test func revertRunsTheDownSQLAndDeletesTheRow() async throws {
        try await withDatabase { database, _, _ in
            _ = try await database.apply(pending("1_users.up.sql", "CREATE TABLE users (id INTEGER);\n"))
            _ = try await database.apply(pending("2_posts.up.sql", "CREATE TABLE posts (id INTEGER);\n"))

            // A failing down file changes nothing.
            let failed = await migrationError {
                try await database.revert(revertible(2, "DROP TABLE posts;\nDROP TABLE nothing_here;\n"))
            }
            #expect(failed?.kind == .migrationFailed)
            #expect(try await database.appliedMigrations().map(\.version) == [1, 2])
            #expect(try await database.queryText("SELECT name FROM sqlite_master WHERE name = 'posts'") == [["posts"]])

            try await database.revert(revertible(2, "DROP TABLE posts;\n"))
            #expect(try await database.appliedMigrations().map(\.version) == [1])
            #expect(try await database.queryText("SELECT name FROM sqlite_master WHERE name = 'posts'").isEmpty)

            let missing = await migrationError { try await database.revert(revertible(7, "SELECT 1;")) }
            #expect(missing?.kind == .notApplied)
        }
    }

    @Test func replaceChecksumIsACompareAndSwap() async throws {
        try await withDatabase { database, _, _ in
            let migration = pending("1_t.sql", referenceSQL)
            _ = try await database.apply(migration)
            let crlf = sqlxChecksum(Array("CREATE TABLE t (id int);\r\n".utf8))
            #expect(hex(crlf).hasPrefix("13ec31b9"))

            #expect(try await database.replaceChecksum(version: 1, old: migration.checksum, new: crlf))
            #expect(try await database.appliedMigrations().first?.checksum == crlf)
            // The old value is stale now: nothing changes.
            #expect(try await !database.replaceChecksum(version: 1, old: migration.checksum, new: [1, 2, 3]))
            #expect(try await database.appliedMigrations().first?.checksum == crlf)
            #expect(try await !database.replaceChecksum(version: 9, old: crlf, new: migration.checksum))
        }
    }

    @Test func freshDatabaseReadsNothingAndCreatesNoTable() async throws {
        try await withDatabase { database, _, _ async throws in
            #expect(try await database.appliedMigrations() == [])
            #expect(try await database.queryText("SELECT name FROM sqlite_master").isEmpty)
        }
    }

    @Test func missingFileIsReportedAndNotCreated() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/missing.db"
            for url in ["sqlite://\(path)", "sqlite:\(path)"] {
                let error = await migrationError { _ = try await MigrationDatabases.open(url: url) }
                #expect(error?.kind == .fileMissing)
                #expect(error?.message == "no database at \(path) yet")
            }
            #expect(!exists(path))
            // Asked to, it is created.
            let created = try await MigrationDatabases.open(url: "sqlite:\(path)", createIfMissing: true)
            #expect(try await created.appliedMigrations() == [])
            await created.close()
            #expect(exists(path))
        }
    }

    @Test func unsuccessfulRowIsReadBackAsSuch() async throws {
        try await withDatabase { database, _, _ in
            _ = try await database.apply(pending("1_ok.sql", "SELECT 1;\n"))
            _ = try await database.queryText(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (2, 'half done', FALSE, x'00ff', -1)"
            )
            let rows = try await database.appliedMigrations()
            #expect(rows.map(\.success) == [true, false])
            #expect(rows.last == AppliedMigration(version: 2, description: "half done", success: false, checksum: [0, 255], executionTime: -1))
        }
    }

    @Test func backupIsVerifiedAndRestores() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/app.db"
            let backupPath = directory + "/backup it's.db"
            var database = try await SQLiteMigrationDatabase.open(url: "sqlite:\(path)?mode=rwc")
            _ = try await database.apply(
                pending("1_items.sql", "CREATE TABLE items (name TEXT);\nINSERT INTO items VALUES ('a'), ('b');\n"))
            let restore = try await database.backup(to: backupPath)
            #expect(exists(backupPath))
            #expect(restore.contains("cp "))

            // The backup opens on its own and holds the rows.
            let copy = try await SQLiteMigrationDatabase.open(url: "sqlite:\(backupPath)")
            #expect(try await copy.appliedMigrations().map(\.version) == [1])
            #expect(try await copy.queryText("SELECT name FROM items ORDER BY name") == [["a"], ["b"]])
            await copy.close()

            // Never overwrites a backup.
            let again = await migrationError { _ = try await database.backup(to: backupPath) }
            #expect(again?.kind == .backupFailed)

            // The returned command restores it over the (stopped) database.
            _ = try await database.queryText("DELETE FROM items")
            await database.close()
            try await shell(restore)
            database = try await SQLiteMigrationDatabase.open(url: "sqlite:\(path)")
            #expect(try await database.queryText("SELECT name FROM items ORDER BY name") == [["a"], ["b"]])
            await database.close()
        }
    }

    @Test func inMemoryDatabase() async throws {
        let database = try await MigrationDatabases.open(url: "sqlite::memory:")
        #expect(try await database.appliedMigrations() == [])
        _ = try await database.apply(pending("20240101000000_init.sql", referenceSQL))
        #expect(try await database.appliedMigrations().map(\.version) == [20_240_101_000_000])
        let backup = await migrationError { _ = try await database.backup(to: "/tmp/never-written.db") }
        #expect(backup?.kind == .backupFailed)
        await database.close()
    }

    @Test func readOnlyModeReadsButDoesNotWrite() async throws {
        try await withDatabase { database, path, _ in
            _ = try await database.apply(pending("1_t.sql", referenceSQL))
            let readOnly = try await MigrationDatabases.open(url: "sqlite://\(path)?mode=ro")
            #expect(try await readOnly.appliedMigrations().map(\.version) == [1])
            let error = await migrationError { _ = try await readOnly.apply(pending("2_u.sql", "CREATE TABLE u (id int);")) }
            #expect(error?.message.contains("readonly") == true)
            await readOnly.close()
        }
    }

    @Test func notADatabase() async throws {
        try await withTemporaryDirectory { directory in
            try await shell("printf 'this is not sqlite, just text that is long enough to be a header........' > '\(directory)/text.db'")
            let error = await migrationError { _ = try await MigrationDatabases.open(url: "sqlite:\(directory)/text.db") }
            #expect(error?.message.contains("not a usable SQLite database") == true)
        }
    }
}
