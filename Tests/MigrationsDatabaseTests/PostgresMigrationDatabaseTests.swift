import Glibc
import SafeWatchMigrations
import TestSupport
import Testing

@testable import SafeWatchMigrationsDatabase

/// PostgreSQL in a throwaway cluster (script/postgres-test-cluster), one fresh database per test.
/// Serialized: the tests share the cluster.
@Suite("PostgreSQL _sqlx_migrations", .serialized, .postgresCluster)
struct PostgresMigrationDatabaseTests {
    private let cluster = PostgresCluster.shared

    private func withDatabase(_ name: String, _ body: (PostgresMigrationDatabase, String) async throws -> Void) async throws {
        let url = try await cluster.freshDatabase(name)
        let database = try await PostgresMigrationDatabase.connect(url: url)
        do {
            try await body(database, url)
        } catch {
            await database.close()
            throw error
        }
        await database.close()
    }

    @Test func applyWritesSQLxsSchemaAndRow() async throws {
        try await withDatabase("apply_schema") { database, _ in
            let elapsed = try await database.apply(pending("1_create_t.sql", referenceSQL))

            let columns = try await database.queryText(
                """
                SELECT column_name::text, data_type::text, is_nullable::text, column_default::text
                FROM information_schema.columns WHERE table_name = '_sqlx_migrations' ORDER BY ordinal_position
                """)
            #expect(
                columns == [
                    ["version", "bigint", "NO", nil],
                    ["description", "text", "NO", nil],
                    ["installed_on", "timestamp with time zone", "NO", "now()"],
                    ["success", "boolean", "NO", nil],
                    ["checksum", "bytea", "NO", nil],
                    ["execution_time", "bigint", "NO", nil],
                ])
            let primaryKey = try await database.queryText(
                """
                SELECT a.attname::text FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                WHERE i.indrelid = '_sqlx_migrations'::regclass AND i.indisprimary
                """)
            #expect(primaryKey == [["version"]])

            let rows = try await database.appliedMigrations()
            let row = try #require(rows.first)
            #expect(rows.count == 1)
            #expect(row.version == 1)
            #expect(row.description == "create t")
            #expect(row.success)
            #expect(row.checksum == sqlxChecksum(Array(referenceSQL.utf8)))
            #expect(hex(row.checksum).hasPrefix("e1cc0b49"))
            #expect(row.executionTime >= 0)
            #expect(row.executionTime == nanoseconds(elapsed))
            let raw = try await database.queryText(
                "SELECT encode(checksum, 'hex'), (installed_on <= now())::text FROM _sqlx_migrations")
            #expect(raw == [[hex(row.checksum), "true"]])
            #expect(try await database.queryText("SELECT count(*)::text FROM t") == [["0"]])
        }
    }

    @Test func multiStatementFilesRunEveryStatement() async throws {
        try await withDatabase("multi_statement") { database, _ in
            let sql = """
                CREATE TABLE a (x int); -- a comment; with a semicolon
                CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
                BEGIN
                    RETURN 1; -- inside the body
                END
                $body$;
                CREATE FUNCTION g() RETURNS int LANGUAGE sql
                BEGIN ATOMIC
                    SELECT 2;
                END;
                /* a block comment; /* nested; */ still a comment */
                INSERT INTO a VALUES (f()), (g()), (length(E'it\\'s;'));
                INSERT INTO a SELECT count(*) FROM (SELECT 1 UNION SELECT 2) AS "odd;name";
                """
            _ = try await database.apply(pending("1_setup.sql", sql))
            #expect(try await database.queryText("SELECT x::text FROM a ORDER BY x") == [["1"], ["2"], ["2"], ["5"]])
        }
    }

    @Test func failingMigrationRecordsNothingAndLeavesNoPartialTable() async throws {
        try await withDatabase("failing") { database, _ in
            _ = try await database.apply(pending("1_first.sql", "CREATE TABLE first (id int);\n"))
            let error = await migrationError {
                _ = try await database.apply(
                    pending("2_broken.sql", "CREATE TABLE partial (id int);\nINSERT INTO missing VALUES (1);\n"))
            }
            #expect(error?.kind == .migrationFailed)
            #expect(error?.message.contains("migration 2 (broken) failed at statement 2 of 2") == true)
            #expect(error?.message.contains(#"relation "missing" does not exist"#) == true)
            #expect(error?.message.contains("rolled back") == true)
            #expect(try await database.appliedMigrations().map(\.version) == [1])
            #expect(try await database.queryText("SELECT to_regclass('partial')::text") == [[nil]])
            // The connection is usable afterwards (no transaction left open, lock released).
            #expect(try await database.queryText("SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory'") == [["0"]])
            _ = try await database.apply(pending("3_later.sql", "CREATE TABLE later (id int);"))
            #expect(try await database.appliedMigrations().map(\.version) == [1, 3])
        }
    }

    @Test func noTransactionIsHonoured() async throws {
        try await withDatabase("no_transaction") { database, _ in
            _ = try await database.apply(pending("1_t.sql", "CREATE TABLE t (id int);\n"))

            // In a transaction, CONCURRENTLY is refused and nothing is recorded…
            let refused = await migrationError {
                _ = try await database.apply(pending("2_index.sql", "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"))
            }
            #expect(refused?.message.contains("cannot run inside a transaction block") == true)

            // …with the marker it runs.
            _ = try await database.apply(pending("3_index.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n"))
            #expect(try await database.queryText("SELECT indexname::text FROM pg_indexes WHERE tablename = 't'") == [["t_id"]])
            #expect(try await database.appliedMigrations().map(\.version) == [1, 3])

            // Like sqlx's single Query, several statements form one implicit transaction, where
            // CONCURRENTLY is refused too: the message says what to do.
            let implicit = await migrationError {
                _ = try await database.apply(
                    pending(
                        "4_two.sql",
                        "-- no-transaction\nCREATE TABLE u (id int);\nCREATE INDEX CONCURRENTLY u_id ON u (id);\n"))
            }
            #expect(implicit?.message.contains("cannot run inside a transaction block") == true)
            #expect(implicit?.message.contains("migration file of its own") == true)
            #expect(try await database.queryText("SELECT to_regclass('u')::text") == [[nil]])

            // A failure outside a transaction says what may be left behind.
            let failed = await migrationError {
                _ = try await database.apply(pending("5_bad.sql", "-- no-transaction\nDROP INDEX CONCURRENTLY missing_index;\n"))
            }
            #expect(failed?.kind == .migrationFailed)
            #expect(failed?.message.contains("statements before the failure may have been applied") == true)
            #expect(try await database.appliedMigrations().map(\.version) == [1, 3])

            // Reverting honours the marker too.
            try await database.revert(revertible(3, "-- no-transaction\nDROP INDEX CONCURRENTLY t_id;\n"))
            #expect(try await database.queryText("SELECT indexname::text FROM pg_indexes WHERE tablename = 't'") == [])
            #expect(try await database.appliedMigrations().map(\.version) == [1])
        }
    }

    @Test func revertRunsTheDownSQLAndDeletesTheRow() async throws {
        try await withDatabase("revert") { database, _ in
            _ = try await database.apply(pending("1_users.up.sql", "CREATE TABLE users (id int);\n"))
            _ = try await database.apply(pending("2_posts.up.sql", "CREATE TABLE posts (id int);\n"))

            let failed = await migrationError {
                try await database.revert(revertible(2, "DROP TABLE posts;\nDROP TABLE nothing_here;\n"))
            }
            #expect(failed?.kind == .migrationFailed)
            #expect(try await database.appliedMigrations().map(\.version) == [1, 2])
            #expect(try await database.queryText("SELECT to_regclass('posts')::text") == [["posts"]])

            try await database.revert(revertible(2, "DROP TABLE posts;\n"))
            #expect(try await database.appliedMigrations().map(\.version) == [1])
            #expect(try await database.queryText("SELECT to_regclass('posts')::text") == [[nil]])

            let missing = await migrationError { try await database.revert(revertible(7, "SELECT 1;")) }
            #expect(missing?.kind == .notApplied)
        }
    }

    @Test func replaceChecksumIsACompareAndSwap() async throws {
        try await withDatabase("checksum_swap") { database, _ in
            let migration = pending("1_t.sql", referenceSQL)
            _ = try await database.apply(migration)
            let crlf = sqlxChecksum(Array("CREATE TABLE t (id int);\r\n".utf8))
            #expect(try await database.replaceChecksum(version: 1, old: migration.checksum, new: crlf))
            #expect(try await database.appliedMigrations().first?.checksum == crlf)
            #expect(try await !database.replaceChecksum(version: 1, old: migration.checksum, new: [9, 9]))
            #expect(try await database.appliedMigrations().first?.checksum == crlf)
            #expect(try await !database.replaceChecksum(version: 5, old: crlf, new: migration.checksum))
        }
    }

    @Test func freshDatabaseReadsNothingAndCreatesNoTable() async throws {
        try await withDatabase("fresh") { database, _ async throws in
            #expect(try await database.appliedMigrations() == [])
            #expect(try await database.queryText("SELECT to_regclass('_sqlx_migrations')::text") == [[nil]])
            #expect(try await !database.replaceChecksum(version: 1, old: [1], new: [2]))
            #expect(try await database.queryText("SELECT to_regclass('_sqlx_migrations')::text") == [[nil]])
        }
    }

    @Test func unsuccessfulRowIsReadBackAsSuch() async throws {
        try await withDatabase("dirty_row") { database, _ in
            _ = try await database.apply(pending("1_ok.sql", "SELECT 1;\n"))
            _ = try await database.queryText(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (2, 'half done', false, '\\x00ff', -1)"
            )
            let rows = try await database.appliedMigrations()
            #expect(rows.map(\.success) == [true, false])
            #expect(rows.last == AppliedMigration(version: 2, description: "half done", success: false, checksum: [0, 255], executionTime: -1))
        }
    }

    /// sqlx.toml's `[migrate] table-name` may be schema-qualified and quoted: it is used verbatim,
    /// as sqlx does, and `_sqlx_migrations` is neither created nor read.
    @Test func anotherTableNameFromSqlxToml() async throws {
        try await withDatabase("table_name") { admin, url in
            _ = try await admin.queryText("CREATE SCHEMA audit")
            let database = try await PostgresMigrationDatabase.connect(url: url, tableName: "audit.\"Migrations\"")
            _ = try await database.apply(pending("1_create_t.sql", referenceSQL))
            #expect(try await database.appliedMigrations().map(\.version) == [1])
            #expect(try await admin.queryText("SELECT (to_regclass('audit.\"Migrations\"') IS NOT NULL)::text, (to_regclass('_sqlx_migrations') IS NULL)::text")
                == [["true", "true"]])
            #expect(try await admin.queryText("SELECT version::text, description FROM audit.\"Migrations\"") == [["1", "create t"]])
            try await database.revert(revertible(1, "DROP TABLE t;"))
            #expect(try await database.appliedMigrations().isEmpty)
            await database.close()
            // The default table does not exist: nothing read, nothing created.
            #expect(try await admin.appliedMigrations().isEmpty)
        }
    }

    /// `lock()` holds sqlx's lock across operations (the whole check-and-apply), and applies under
    /// it do not take it again.
    @Test func lockIsHeldAcrossOperationsUntilUnlock() async throws {
        try await withDatabase("held_lock") { database, url in
            let other = try await PostgresMigrationDatabase.connect(url: url)
            let held = "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND granted"
            try await database.lock(whileWaiting: {})
            _ = try await database.appliedMigrations()
            #expect(try await other.queryText(held) == [["1"]])
            _ = try await database.apply(pending("1_create_t.sql", referenceSQL))
            #expect(try await other.queryText(held) == [["1"]], "the lock must outlive the apply")
            try await database.unlock()
            #expect(try await other.queryText(held) == [["0"]])

            // Held by another session: `waiting` is told, once, before the wait.
            _ = try await other.queryText("SELECT pg_advisory_lock(\(database.lockID))::text")
            let told = Recorder<String>()
            let locking = Task { try await database.lock(whileWaiting: { told.append("waiting") }) }
            #expect(await told.wait(limit: .seconds(20), until: { !$0.isEmpty }))
            _ = try await other.queryText("SELECT pg_advisory_unlock(\(database.lockID))::text")
            try await locking.value
            #expect(told.all == ["waiting"])
            try await database.unlock()
            await other.close()
        }
    }

    @Test func advisoryLockIsSQLxs() async throws {
        try await withDatabase("advisory_lock") { database, url in
            #expect(database.databaseName == "advisory_lock")
            #expect(database.lockID == SQLxAdvisoryLock.id(forDatabase: "advisory_lock"))
            // The migration sees the lock its own session holds while it runs.
            _ = try await database.apply(
                pending(
                    "1_seen.sql",
                    """
                    CREATE TABLE seen AS
                    SELECT ((classid::bigint << 32) | objid::bigint)::text AS id FROM pg_locks
                    WHERE locktype = 'advisory' AND pid = pg_backend_pid();
                    """))
            #expect(try await database.queryText("SELECT id FROM seen") == [[String(database.lockID)]])
            #expect(try await database.queryText("SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory'") == [["0"]])

            // While another session (a sqlx server migrating) holds it, apply waits.
            let other = try await PostgresMigrationDatabase.connect(url: url)
            _ = try await other.queryText("SELECT pg_advisory_lock(\(database.lockID))::text")
            let applying = Task { try await database.apply(pending("2_after.sql", "CREATE TABLE after_lock (id int);")) }
            var waited = false
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let waiting = try await other.queryText(
                    "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                if waiting == [["1"]] {
                    waited = true
                    break
                }
                await Task.yield()
            }
            #expect(waited, "apply should wait for sqlx's lock")
            #expect(try await other.queryText("SELECT to_regclass('after_lock')::text") == [[nil]])
            _ = try await other.queryText("SELECT pg_advisory_unlock(\(database.lockID))::text")
            _ = try await applying.value
            #expect(try await other.queryText("SELECT to_regclass('after_lock')::text") == [["after_lock"]])
            await other.close()
        }
    }

    @Test func backupIsVerifiedAndRestores() async throws {
        try await withTemporaryDirectory { directory in
            let backupPath = directory + "/app.dump"
            try await withDatabase("backup_source") { database, _ in
                _ = try await database.apply(
                    pending("1_items.sql", "CREATE TABLE items (name text);\nINSERT INTO items VALUES ('a'), ('b');\n"))
                let restore = try await database.backup(to: backupPath)
                #expect(exists(backupPath))
                #expect(restore.hasPrefix("pg_restore --clean --if-exists --dbname '"))
                #expect(restore.hasSuffix(" \(backupPath)"))
                #expect(restore.contains("/backup_source?"))

                // Into a second database…
                let targetURL = try await cluster.freshDatabase("backup_target")
                try await shell(restore.replacing("/backup_source?", with: "/backup_target?"))
                let target = try await PostgresMigrationDatabase.connect(url: targetURL)
                #expect(try await target.queryText("SELECT name FROM items ORDER BY name") == [["a"], ["b"]])
                #expect(try await target.appliedMigrations().map(\.version) == [1])
                await target.close()

                // …and, as printed, over the original.
                _ = try await database.queryText("DELETE FROM items")
                try await shell(restore)
                #expect(try await database.queryText("SELECT name FROM items ORDER BY name") == [["a"], ["b"]])

                let again = await migrationError { _ = try await database.backup(to: backupPath) }
                #expect(again?.kind == .backupFailed)
            }
        }
    }

    @Test func aBackupBlockedByALockIsStoppedAtItsTimeoutAndSaysWhy() async throws {
        try await withTemporaryDirectory { directory in
            let backupPath = directory + "/app.dump"
            try await withDatabase("backup_blocked") { database, url in
                _ = try await database.queryText("CREATE TABLE items (name text)")
                // Another session holds the table: pg_dump waits for its lock, by default forever.
                let other = try await PostgresMigrationDatabase.connect(url: url)
                _ = try await other.queryText("BEGIN")
                _ = try await other.queryText("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
                let error = await migrationError {
                    _ = try await PostgresBackup.write(url: database.url, to: backupPath, timeout: .seconds(2))
                }
                #expect(error?.kind == .backupFailed)
                #expect(error?.message.contains("did not finish within 2 s and was stopped") == true, "\(String(describing: error))")
                #expect(!exists(backupPath))
                // pg_dump is gone: its session no longer waits for the lock.
                #expect(try await other.queryText("SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pg_dump'") == [["0"]])
                await other.close()
            }
        }
    }

    @Test func openReportsAMissingDatabase() async throws {
        let url = try await cluster.url(database: "no_such_database")
        let error = await migrationError { _ = try await MigrationDatabases.open(url: url) }
        #expect(error?.kind == .databaseMissing)
        #expect(error?.message.contains("has no database 'no_such_database'") == true)
    }

    @Test func openReportsARejectedUser() async throws {
        let url = try await cluster.url().replacing("postgres://postgres@", with: "postgres://nobody:secret@")
        let error = await migrationError { _ = try await MigrationDatabases.open(url: url) }
        #expect(error?.kind == .authentication)
        #expect(error?.message.contains("rejected user 'nobody'") == true)
        #expect(error?.message.contains("secret") == false)
    }

    /// The cluster's pg_hba.conf makes `safe_watch_password` authenticate with SCRAM over TCP.
    @Test func passwordAuthenticationAndBackupWithAPassword() async throws {
        let ownerURL = try await cluster.freshDatabase("password_auth")
        let admin = try await PostgresMigrationDatabase.connect(url: try await cluster.url())
        _ = try await admin.queryText("DROP ROLE IF EXISTS safe_watch_password")
        _ = try await admin.queryText("SET password_encryption = 'scram-sha-256'")
        _ = try await admin.queryText("CREATE ROLE safe_watch_password LOGIN PASSWORD 'right pass'")
        _ = try await admin.queryText("ALTER DATABASE password_auth OWNER TO safe_watch_password")
        await admin.close()
        let base = ownerURL.replacing("postgres://postgres@", with: "postgres://safe_watch_password@")

        let wrong = await migrationError {
            _ = try await MigrationDatabases.open(url: base.replacing("safe_watch_password@", with: "safe_watch_password:wrong@"))
        }
        #expect(wrong?.kind == .authentication)
        #expect(wrong?.message.contains("password authentication failed") == true, "\(wrong?.message ?? "")")
        #expect(wrong?.message.contains("wrong") == false)

        let none = await migrationError { _ = try await MigrationDatabases.open(url: base) }
        #expect(none?.kind == .authentication)
        #expect(none?.message.contains("the URL has none") == true, "\(none?.message ?? "")")

        let database = try await MigrationDatabases.open(
            url: base.replacing("safe_watch_password@", with: "safe_watch_password:right%20pass@"))
        _ = try await database.apply(pending("1_items.sql", "CREATE TABLE items (name text);\nINSERT INTO items VALUES ('x');\n"))
        try await withTemporaryDirectory { directory in
            let restore = try await database.backup(to: directory + "/with-password.dump")
            #expect(!restore.contains("right"), "the password stays out of the restore command")
            _ = try await (database as? PostgresMigrationDatabase)?.queryText("DROP TABLE items")
            let restored = try await ExternalCommand.run("/bin/sh", ["-c", restore], environment: ["PGPASSWORD": "right pass"])
            #expect(restored.succeeded, "\(restored.diagnostic)")
            #expect(try await (database as? PostgresMigrationDatabase)?.queryText("SELECT name FROM items") == [["x"]])
        }
        await database.close()
    }

    @Test func openAcceptsBothSchemesAndTheSocket() async throws {
        let url = try await cluster.url()
        for variant in [url, url.replacing("postgres://", with: "postgresql://")] {
            let database = try await MigrationDatabases.open(url: variant)
            #expect(try await database.appliedMigrations() == [])
            await database.close()
        }
        // The cluster's unix socket, as a percent-encoded host (sqlx's form) and as ?host=.
        let port = String(url.split(separator: ":")[2].prefix(while: \.isNumber))
        let directory = try await cluster.directory()
        for socketURL in [
            "postgres://postgres@\(percentEncode(directory)):\(port)/postgres",
            "postgres:///postgres?host=\(directory)&port=\(port)&user=postgres",
        ] {
            let database = try await MigrationDatabases.open(url: socketURL)
            #expect(try await database.appliedMigrations() == [])
            await database.close()
        }
    }
}
