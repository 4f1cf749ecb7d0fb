import Glibc
import SafeWatchMigrations
import TestSupport
import Testing

@testable import SafeWatchMigrationsDatabase

@Suite("sqlx's lock id")
struct AdvisoryLockTests {
    @Test func crcIsISOHDLC() {
        #expect(SQLxAdvisoryLock.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(SQLxAdvisoryLock.crc32([]) == 0)
    }

    @Test func lockIDMatchesSQLx() {
        // 0x3d32ad9e * zlib.crc32(name), computed independently (Python's zlib).
        #expect(SQLxAdvisoryLock.id(forDatabase: "postgres") == 368_907_709_894_077_238)
        #expect(SQLxAdvisoryLock.id(forDatabase: "app_dev") == 1_085_303_609_685_986_748)
        #expect(SQLxAdvisoryLock.id(forDatabase: "") == 0)
    }
}

@Suite("statement boundaries")
struct StatementSplitterTests {
    @Test func postgresQuotesCommentsAndBodies() {
        let sql = """
            -- no-transaction
            CREATE TABLE a (x text DEFAULT ';');
            INSERT INTO a VALUES ('it''s; fine'), (E'back\\'slash;'), ($$dollar;$$), ($t$tagged $$; $t$);
            /* outer /* inner; */ still; */ SELECT "semi;colon" FROM a;
            CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;
            SELECT $1, a$b FROM a;;
            -- trailing comment only
            """
        let statements = StatementSplitter.postgres(sql)
        #expect(statements.count == 5)
        #expect(statements[0] == "-- no-transaction\nCREATE TABLE a (x text DEFAULT ';');")
        #expect(statements[1].hasPrefix("\nINSERT INTO a VALUES") && statements[1].hasSuffix("$t$);"))
        #expect(statements[2].hasSuffix(#"SELECT "semi;colon" FROM a;"#))
        #expect(statements[3].hasSuffix("THEN 2 END; END;"))
        #expect(statements[4] == "\nSELECT $1, a$b FROM a;")
    }

    @Test func postgresKeepsTheLastStatementWithoutSemicolon() {
        #expect(StatementSplitter.postgres("SELECT 1;\nSELECT 2") == ["SELECT 1;", "\nSELECT 2"])
        #expect(StatementSplitter.postgres("  -- nothing\n/* here */ ;") == [])
        #expect(StatementSplitter.postgres("CREATE TABLE begin_end (begin_at int, \"end\" int);") .count == 1)
    }

    @Test func sqliteTriggersQuotesAndComments() {
        let sql = """
            CREATE TABLE a (x, "y;z", [w;v], `q;r`);
            CREATE TEMP TRIGGER t AFTER INSERT ON a BEGIN
                INSERT INTO a VALUES (1, 'x;', 2, 3);
                SELECT CASE WHEN 1 THEN 'a' END;
            END;
            -- a comment; with a semicolon
            INSERT INTO a VALUES ('it''s', 1, 2, 3); /* ; */ ;
            EXPLAIN SELECT 1
            """
        let statements = StatementSplitter.sqlite(sql)
        #expect(statements.count == 4)
        #expect(statements[0] == #"CREATE TABLE a (x, "y;z", [w;v], `q;r`);"#)
        #expect(statements[1].hasSuffix("END;"))
        #expect(statements[1].contains("SELECT CASE WHEN 1 THEN 'a' END;"))
        #expect(statements[2].hasSuffix("INSERT INTO a VALUES ('it''s', 1, 2, 3);"))
        #expect(statements[3].hasSuffix("EXPLAIN SELECT 1"))
    }
}

@Suite("database URLs")
struct DatabaseURLTests {
    private func postgres(_ text: String, environment: [String: String] = [:]) throws -> PostgresURL {
        guard case .postgres(let url) = try DatabaseURL.parse(text, environment: environment) else {
            throw MigrationDatabaseError(.badURL, "not postgres")
        }
        return url
    }

    @Test func postgresForms() throws {
        let url = try postgres("postgres://app:p%40ss@db.example:6543/app_dev?sslmode=disable&statement-cache-capacity=0")
        #expect(url.host == "db.example")
        #expect(url.port == 6543)
        #expect(url.username == "app")
        #expect(url.password == "p@ss")
        #expect(url.database == "app_dev")
        #expect(url.sslMode == "disable")
        #expect(url.libpqURL == "postgresql://app@db.example:6543/app_dev?sslmode=disable")
        #expect(!url.libpqURL.contains("p%40ss"))

        let sqlxQuirk = try postgres("postgresql://user@hostname:password@hostname:5432/database")
        #expect(sqlxQuirk.username == "user@hostname")
        #expect(sqlxQuirk.password == "password")

        let defaults = try postgres("postgres://localhost/x", environment: ["PGUSER": "envuser", "PGPASSWORD": "envpw", "PGPORT": "5433"])
        #expect(defaults.username == "envuser")
        #expect(defaults.password == "envpw")
        #expect(defaults.port == 5433)
        #expect(defaults.sslMode == "prefer")

        let socket = try postgres("postgres://me@%2Fvar%2Frun%2Fpostgresql/db")
        #expect(socket.socketDirectory == "/var/run/postgresql")
        #expect(socket.endpoint == "/var/run/postgresql/.s.PGSQL.5432")
        #expect(socket.libpqURL == "postgresql://me@/db?host=%2Fvar%2Frun%2Fpostgresql&port=5432&sslmode=prefer")

        let ipv6 = try postgres("postgres://u@[::1]:7000/d")
        #expect(ipv6.host == "::1")
        #expect(ipv6.endpoint == "[::1]:7000")
    }

    @Test func sqliteForms() throws {
        #expect(try DatabaseURL.parse("sqlite::memory:", environment: [:]) == .sqlite(SQLiteURL(path: nil, mode: .readWrite)))
        #expect(try DatabaseURL.parse("sqlite://data/app.db", environment: [:]) == .sqlite(SQLiteURL(path: "data/app.db", mode: .readWrite)))
        #expect(try DatabaseURL.parse("sqlite:app.db?mode=rwc", environment: [:]) == .sqlite(SQLiteURL(path: "app.db", mode: .readWriteCreate)))
        #expect(try DatabaseURL.parse("sqlite:///abs/a%3Fb.db?mode=ro", environment: [:]) == .sqlite(SQLiteURL(path: "/abs/a?b.db", mode: .readOnly)))
    }

    @Test func badURLsSayWhatIsAccepted() async {
        for url in ["mysql://root@localhost/db", "redis://localhost", "just-a-path.db"] {
            let error = await migrationError { _ = try await MigrationDatabases.open(url: url) }
            #expect(error?.kind == .badURL)
            #expect(error?.message.contains("postgres://") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("sqlite:") == true)
        }
        let badPort = await migrationError { _ = try await MigrationDatabases.open(url: "postgres://u:pw@h:99999/d") }
        #expect(badPort?.kind == .badURL)
        #expect(badPort?.message.contains("pw") == false, "the password never appears in messages")
        let badMode = await migrationError { _ = try await MigrationDatabases.open(url: "sqlite:x.db?mode=wat") }
        #expect(badMode?.kind == .badURL)
    }

    @Test func redaction() {
        #expect(MigrationDatabases.redacted("postgres://u:secret@h/d") == "postgres://u:***@h/d")
        #expect(MigrationDatabases.redacted("postgres://u@h/d") == "postgres://u@h/d")
    }
}

/// Unreachable servers fail fast, with one sentence; no PostgreSQL needed.
@Suite("unreachable PostgreSQL")
struct UnreachablePostgresTests {
    // No wall-clock bounds here: on a loaded machine they fail for the machine's sake. The message
    // says which way it failed — refused, not "no answer within 3 s" — and that is the point.
    @Test(.timeLimit(.minutes(1))) func closedPortIsRefusedAtOnce() async throws {
        let port = try freePort()
        let error = await migrationError {
            _ = try await MigrationDatabases.open(url: "postgres://u:pw@127.0.0.1:\(port)/db", connectTimeout: .seconds(3))
        }
        #expect(error?.kind == .unreachable)
        #expect(error?.message == "cannot reach PostgreSQL at 127.0.0.1:\(port): connection refused")
    }

    @Test(.timeLimit(.minutes(1))) func silentServerTimesOut() async throws {
        // Accepts TCP connections (the kernel's backlog) and never speaks.
        let (socket, port) = try listenLoopback(backlog: 16)
        defer { close(socket) }
        let clock = ContinuousClock()
        let start = clock.now
        let error = await migrationError {
            _ = try await MigrationDatabases.open(url: "postgres://u@127.0.0.1:\(port)/db", connectTimeout: .seconds(1))
        }
        #expect(start.duration(to: clock.now) >= .seconds(1))
        #expect(error?.kind == .unreachable)
        #expect(error?.message == "cannot reach PostgreSQL at 127.0.0.1:\(port): no answer within 1 s")
    }

    @Test(.timeLimit(.minutes(1))) func unknownHost() async throws {
        let error = await migrationError {
            _ = try await MigrationDatabases.open(url: "postgres://u@no-such-host.invalid/db", connectTimeout: .seconds(2))
        }
        #expect(error?.kind == .unreachable)
        #expect(error?.message.hasPrefix("cannot reach PostgreSQL at no-such-host.invalid:5432: ") == true)
        #expect(error?.message.contains("no answer within") == false, "\(error?.message ?? "")")
    }

    /// A port nothing listens on (bound, read, closed).
    private func freePort() throws -> Int {
        let (fd, port) = try listenLoopback(backlog: 16)
        close(fd)
        return port
    }
}
