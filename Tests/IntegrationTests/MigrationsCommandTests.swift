import Crypto
import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// `safe-watch migrations …` as people and CI run it, against real SQLite databases.
@Suite(.timeLimit(.minutes(5))) struct MigrationsCommandTests {

    /// A project with two applied-to-be migrations.
    struct Project {
        let directory = makeTemporaryDirectory("migrations")
        /// Another database than the project's SQLite file.
        var databaseOverride: String?
        var database: String { self.databaseOverride ?? "sqlite:\(self.directory)/dev.db" }

        init() throws {
            try createAccountDirectory(self.directory + "/migrations")
            try self.write("0001_create_users.up.sql", "CREATE TABLE users (id integer PRIMARY KEY);\n")
            try self.write("0001_create_users.down.sql", "DROP TABLE users;\n")
            try self.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\n")
        }

        func write(_ name: String, _ text: String) throws {
            try text.save(to: self.directory + "/migrations/" + name)
        }

        /// Commits everything, so the validator can find previous versions in git.
        func commit() async throws {
            let script = "git init -q && git add -A && git -c user.name=t -c user.email=t@example.invalid commit -qm migrations"
            let (status, output) = try await runAsAccount("/bin/sh", ["-c", script], in: self.directory)
            #expect(status == .exited(0), "\(output)")
        }

        func remove(_ name: String) throws {
            try FileManager.default.removeItem(atPath: self.directory + "/migrations/" + name)
        }

        /// Runs `safe-watch migrations ARGS` in the project; exit code and output.
        func migrations(_ arguments: [String], database: Bool = true) async throws -> (Int32?, String) {
            let safeWatch = try await SafeWatchProcess(
                ["migrations"] + arguments + ["--project", self.directory] + (database ? ["--database-url", self.database] : []))
            guard case .exited(let code) = await safeWatch.waitForExit() else { return (nil, safeWatch.output) }
            return (code, safeWatch.output)
        }
    }

    @Test func runThenEditsOfAppliedFilesAreCaughtAndClassified() async throws {
        let project = try Project()
        var (code, output) = try await project.migrations(["run"])
        #expect(code == 0, "\(output)")
        #expect(output.contains("applied 0001_create_users.up.sql") && output.contains("applied 0002_add_email.sql"))
        #expect(output.contains("recorded 3 file(s) in safe-watch.sum"))
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 0 && output.contains("verdict: SAFE"), "\(output)")

        // CR line endings only.
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\r\n")
        (code, output) = try await project.migrations(["validate", "--json"])
        #expect(code == 1)
        #expect(output.contains("\"rule\":\"SW101\"") && output.contains("\"modification\":\"line-endings-or-bom\""), "\(output)")

        // The previous bytes come from git: comments only, and statements appended.
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\n")
        try await project.commit()
        try project.write("0002_add_email.sql", "-- the users' address\nALTER TABLE users\n  ADD COLUMN email text;\n")
        (code, output) = try await project.migrations(["validate", "--json"])
        #expect(code == 1 && output.contains("\"modification\":\"whitespace-or-comments\""), "\(output)")
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\nCREATE INDEX users_email ON users (email);\n")
        (code, output) = try await project.migrations(["validate", "--json"])
        #expect(code == 1 && output.contains("\"modification\":\"statements-appended\""), "\(output)")
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN mail text;\n")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("BLOCK SW101 0002_add_email.sql") && output.contains("its statements changed"), "\(output)")

        // Deleted.
        try project.remove("0002_add_email.sql")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW102"), "\(output)")

        // Renamed: a new version for the same bytes.
        try project.write("0003_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\n")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW103") && output.contains("0003_add_email.sql"), "\(output)")
    }

    @Test func fixChecksumOnlyForProvenEquivalentEdits() async throws {
        let project = try Project()
        _ = try await project.migrations(["run"])
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\r\n")
        var (code, output) = try await project.migrations(["fix-checksum", "2"])
        #expect(code == 0 && output.contains("(line-endings-or-bom)"), "\(output)")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 0, "\(output)")
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN mail text;\n")
        (code, output) = try await project.migrations(["fix-checksum", "2"])
        #expect(code == 1 && output.contains("refusing"), "\(output)")
    }

    @Test func duplicateVersionsAndDatabaseAheadBlock() async throws {
        let project = try Project()
        _ = try await project.migrations(["run"])
        try project.write("2_other_branch.sql", "SELECT 1;\n")
        var (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW003"), "\(output)")
        try project.remove("2_other_branch.sql")
        // The database has a version this checkout does not know.
        try project.write("0003_from_branch.sql", "CREATE TABLE other (id integer);\n")
        _ = try await project.migrations(["run"])
        try project.remove("0003_from_branch.sql")
        let sum = project.directory + "/migrations/safe-watch.sum"
        try FileManager.default.removeItem(atPath: sum)
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW106") && output.contains("ahead"), "\(output)")
    }

    @Test func revertRunsTheDownFile() async throws {
        let project = try Project()
        try project.write("0003_tags.up.sql", "CREATE TABLE tags (id integer);\n")
        try project.write("0003_tags.down.sql", "DROP TABLE tags;\n")
        _ = try await project.migrations(["run"])
        var (code, output) = try await project.migrations(["revert"])
        #expect(code == 0 && output.contains("reverted 0003_tags.down.sql"), "\(output)")
        (code, output) = try await project.migrations(["info"])
        #expect(output.contains("3\tpending\t0003_tags.up.sql") && output.contains("1\tapplied\t0001_create_users.up.sql"), "\(output)")
    }

    /// `sqlx migrate revert` reverts the newest applied migration that has a down file: newer simple
    /// ones are skipped and stay applied.
    @Test func revertSkipsSimpleMigrationsAsSqlxDoes() async throws {
        let project = try Project()
        try project.write("0003_tags.up.sql", "CREATE TABLE tags (id integer);\n")
        try project.write("0003_tags.down.sql", "DROP TABLE tags;\n")
        try project.write("0004_seed.sql", "INSERT INTO users (id) VALUES (1);\n")
        var (code, output) = try await project.migrations(["run"])
        #expect(code == 0, "\(output)")
        (code, output) = try await project.migrations(["revert"])
        #expect(code == 0 && output.contains("skipping 4") && output.contains("reverted 0003_tags.down.sql"), "\(output)")
        (code, output) = try await project.migrations(["info"])
        #expect(output.contains("3\tpending") && output.contains("4\tapplied") && output.contains("2\tapplied"), "\(output)")
        (code, output) = try await project.migrations(["revert"])
        #expect(code == 0 && output.contains("skipping 2, 4") && output.contains("reverted 0001_create_users.down.sql"), "\(output)")
        (code, output) = try await project.migrations(["revert"])
        #expect(code == 0 && output.contains("nothing to revert"), "\(output)")
        (code, output) = try await project.migrations(["info"])
        #expect(output.contains("1\tpending") && output.contains("2\tapplied") && output.contains("4\tapplied"), "\(output)")
    }

    /// What sqlx accepts is not blocked: an unpaired .up.sql (a warning, blocking only with
    /// --strict), a `+5_` version; a version the database has from another branch passes with
    /// --ignore-missing, and one whose .down.sql is still here counts as known, as in sqlx.
    @Test func unpairedFilesSignedVersionsAndIgnoreMissing() async throws {
        let project = try Project()
        try project.write("0003_only_up.up.sql", "CREATE TABLE only_up (id integer);\n")
        try project.write("+5_signed.sql", "CREATE TABLE signed (id integer);\n")
        var (code, output) = try await project.migrations(["validate"])
        #expect(code == 0 && output.contains("warn  SW005 0003_only_up.up.sql") && output.contains("warn  SW004 +5_signed.sql"), "\(output)")
        #expect(output.contains("pending: 1, 2, 3, 5"), "\(output)")
        (code, output) = try await project.migrations(["validate", "--strict"])
        #expect(code == 1 && output.contains("BLOCK SW005"), "\(output)")
        (code, output) = try await project.migrations(["run"])
        #expect(code == 0 && output.contains("applied +5_signed.sql"), "\(output)")
        (code, output) = try await project.migrations(["info"])
        #expect(output.contains("5\tapplied\t+5_signed.sql"), "\(output)")

        // Another branch applied 0009 (a pair) and 0010; this checkout has neither up file, and the
        // sum file (the branch's record) is gone too: only the database knows them.
        try project.write("0009_branch.up.sql", "CREATE TABLE branch (id integer);\n")
        try project.write("0009_branch.down.sql", "DROP TABLE branch;\n")
        try project.write("0010_branch_more.sql", "CREATE TABLE branch_more (id integer);\n")
        (code, output) = try await project.migrations(["run"])
        #expect(code == 0, "\(output)")
        try project.remove("0009_branch.up.sql")
        try project.remove("0010_branch_more.sql")
        try project.remove("safe-watch.sum")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW106") && output.contains("migration 10"), "\(output)")
        // Version 9 still has its .down.sql: sqlx's missing check counts it, so only 10 blocks.
        #expect(!output.contains("BLOCK SW106 - (version 9"), "\(output)")
        (code, output) = try await project.migrations(["validate", "--ignore-missing"])
        #expect(code == 0, "\(output)")
        try project.write("0011_after.sql", "CREATE TABLE after_branch (id integer);\n")
        (code, output) = try await project.migrations(["run"])
        #expect(code == 1 && output.contains("nothing applied"), "\(output)")
        (code, output) = try await project.migrations(["run", "--ignore-missing"])
        #expect(code == 0 && output.contains("applied 0011_after.sql"), "\(output)")
    }

    /// sqlx 0.9's sqlx.toml: another table name and characters left out of the checksum. A table
    /// written with sqlx's DDL and values under that name is what safe-watch reads and appends to.
    @Test func sqlxTomlTableNameAndIgnoredCharsAreHonoured() async throws {
        let project = try Project()
        try "[migrate]\ntable-name = \"schema_history\"\nignored-chars = [\"\\r\", \"\\uFEFF\"]\n"
            .save(to: project.directory + "/sqlx.toml")
        // Checked out with CRLF and a BOM; sqlx hashed it without them.
        let up = "CREATE TABLE users (id integer PRIMARY KEY);\n"
        try project.write("0001_create_users.up.sql", "\u{FEFF}" + up.replacing("\n", with: "\r\n"))
        let checksum = Array(SHA384.hash(data: Array(up.utf8))).map { String(format: "%02x", $0) }.joined()
        let database = project.directory + "/dev.db"
        let sql = """
            CREATE TABLE schema_history (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                success BOOLEAN NOT NULL,
                checksum BLOB NOT NULL,
                execution_time BIGINT NOT NULL
            );
            INSERT INTO schema_history (version, description, success, checksum, execution_time)
                VALUES (1, 'create users', TRUE, X'\(checksum)', 1234567);
            \(up)
            """
        let (status, created) = try await runAsAccount("/usr/bin/sqlite3", [database, sql], in: project.directory)
        try #require(status == .exited(0), "\(created)")
        var (code, output) = try await project.migrations(["validate"])
        #expect(code == 0 && output.contains("pending: 2") && !output.contains("SW101") && !output.contains("SW006"), "\(output)")
        (code, output) = try await project.migrations(["run"])
        #expect(code == 0 && output.contains("applied 0002_add_email.sql") && !output.contains("0001"), "\(output)")
        let (_, tables) = try await runAsAccount(
            "/usr/bin/sqlite3", [database, "SELECT group_concat(version) FROM schema_history; SELECT count(*) FROM sqlite_master WHERE name = '_sqlx_migrations';"],
            in: project.directory)
        #expect(tables.split(separator: "\n") == ["1,2", "0"], "\(tables)")

        // A key sqlx would not read is named, with the fix.
        try "[migrate]\ntable_name = \"schema_history\"\n".save(to: project.directory + "/sqlx.toml")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 78 && output.contains("sqlx.toml:2: migrate.table_name: sqlx reads `table-name`"), "\(output)")
    }

    @Test func backupIsMadeAndRestorable() async throws {
        let project = try Project()
        _ = try await project.migrations(["run"])
        try project.write("0003_tags.sql", "CREATE TABLE tags (id integer);\n")
        let (code, output) = try await project.migrations(["run", "--backup", project.directory + "/backups"])
        #expect(code == 0, "\(output)")
        let restore = try #require(output.split(separator: "\n").first { $0.hasPrefix("restore with: ") }).dropFirst("restore with: ".count)
        // Restoring brings back the database as it was before 0003.
        let (status, restored) = try await runAsAccount("/bin/sh", ["-c", String(restore)], in: project.directory)
        #expect(status == .exited(0), "\(restored)")
        let (_, info) = try await project.migrations(["info"])
        #expect(info.contains("3\tpending"), "\(info)")
    }

    @Test func addNamesLikeSqlxAndHashRefusesToRewriteHistory() async throws {
        let project = try Project()
        var (code, output) = try await project.migrations(["add", "-r", "create posts"], database: false)
        // 0001 and 0002 differ by one: sequential.
        #expect(code == 0 && output.contains("0003_create_posts.up.sql") && output.contains("0003_create_posts.down.sql"), "\(output)")
        (code, output) = try await project.migrations(["validate"], database: false)
        #expect(code == 1 && output.contains("SW008"), "\(output)")
        try project.write("0003_create_posts.up.sql", "CREATE TABLE posts (id integer);\n")
        try project.write("0003_create_posts.down.sql", "DROP TABLE posts;\n")
        (code, output) = try await project.migrations(["hash"], database: false)
        #expect(code == 0, "\(output)")
        try project.write("0001_create_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY);\n")
        (code, output) = try await project.migrations(["hash"], database: false)
        #expect(code == 1 && output.contains("refusing: 0001_create_users.up.sql is recorded and changed"), "\(output)")
        (code, output) = try await project.migrations(["validate", "--strict"], database: false)
        #expect(code == 1 && output.contains("SW101"), "\(output)")
    }

    /// `migrations add` names files as sqlx-cli does (fixtures named as `sqlx migrate add` names
    /// them): 4-digit sequential versions, spaces → `_` and nothing else, the newest migration's
    /// shape, and sqlx-cli's templates, which SW008 recognises.
    @Test func addNamesAndShapesAsSqlxCli() async throws {
        let directory = makeTemporaryDirectory("sqlx-add")
        try createAccountDirectory(directory + "/migrations")
        try "CREATE TABLE a (id integer);\n".save(to: directory + "/migrations/1_a.sql")
        func add(_ arguments: [String]) async throws -> String {
            let safeWatch = try await SafeWatchProcess(["migrations", "add"] + arguments + ["--project", directory])
            #expect(await safeWatch.waitForExit() == .exited(0), "\(safeWatch.output)")
            return safeWatch.output
        }
        func body(_ name: String) -> String? {
            FileManager.default.contents(atPath: directory + "/migrations/" + name).map { String(decoding: $0, as: UTF8.self) }
        }
        // Only version 1: sequential, 4 digits; `-` is kept.
        var output = try await add(["add posts-table"])
        #expect(output.contains("created \(directory)/migrations/0002_add_posts-table.sql"), "\(output)")
        #expect(body("0002_add_posts-table.sql") == "-- Add migration script here\n")
        output = try await add(["--reversible", "pair"])
        #expect(body("0003_pair.up.sql") == "-- Add up migration script here\n", "\(output)")
        #expect(body("0003_pair.down.sql") == "-- Add down migration script here\n", "\(output)")
        // The newest is a pair: so is the next; --simple overrides.
        output = try await add(["next"])
        #expect(body("0004_next.up.sql") != nil && body("0004_next.down.sql") != nil, "\(output)")
        output = try await add(["--simple", "plain"])
        #expect(body("0005_plain.sql") != nil && body("0005_plain.up.sql") == nil, "\(output)")
        // The newest is simple now: a simple file, timestamped on request.
        output = try await add(["-t", "later"])
        let later = try #require(FileManager.default.contentsOfDirectory(atPath: directory + "/migrations").first { $0.hasSuffix("_later.sql") })
        #expect(later.count == "YYYYMMDDHHMMSS_later.sql".count, "\(later)")

        // The untouched templates, as sqlx-cli writes them, are caught.
        let safeWatch = try await SafeWatchProcess(["migrations", "validate", "--project", directory])
        #expect(await safeWatch.waitForExit() == .exited(1))
        for file in ["0002_add_posts-table.sql", "0003_pair.up.sql", "0004_next.up.sql"] {
            #expect(safeWatch.output.contains("BLOCK SW008 \(file)"), "\(file): \(safeWatch.output)")
        }
        #expect(safeWatch.output.contains("warn  SW008 0003_pair.down.sql"), "\(safeWatch.output)")
    }

    @Test func validateBuildAlsoRunsTheBuildCommand() async throws {
        let project = try Project()
        try "[build]\ncommand = \"echo 'main.swift:3:1: error: nope' && exit 1\"\nbinary = \"app\"\n"
            .save(to: project.directory + "/safe-watch.toml")
        var (code, output) = try await project.migrations(["validate", "--build"], database: false)
        #expect(code == 1 && output.contains("build failed") && output.contains("main.swift:3: nope"), "\(output)")
        try "[build]\ncommand = \"true\"\nbinary = \"app\"\n".save(to: project.directory + "/safe-watch.toml")
        (code, output) = try await project.migrations(["validate", "--build"], database: false)
        #expect(code == 0 && output.contains("build succeeded"), "\(output)")
    }

    /// The commands check what `safe-watch run` gates on: `[migrations] dir` and `database_url`
    /// from safe-watch.toml (or `--config`) when no flag says otherwise.
    @Test func theCommandsUseTheDirectoryAndDatabaseOfTheConfiguration() async throws {
        let project = try Project()
        let elsewhere = project.directory + "/db/migrations"
        try createAccountDirectory(project.directory + "/db")
        try FileManager.default.moveItem(atPath: project.directory + "/migrations", toPath: elsewhere)
        try "[migrations]\ndir = \"db/migrations\"\ndatabase_url = \"\(project.database)\"\n".save(to: project.directory + "/safe-watch.toml")

        var (code, output) = try await project.migrations(["run"], database: false)
        #expect(code == 0 && output.contains("applied 0002_add_email.sql"), "\(output)")
        #expect(FileManager.default.fileExists(atPath: elsewhere + "/safe-watch.sum"))
        #expect(!FileManager.default.fileExists(atPath: project.directory + "/migrations"), "nothing is made where the configuration does not point")
        (code, output) = try await project.migrations(["info"], database: false)
        #expect(code == 0 && output.contains("2\tapplied\t0002_add_email.sql"), "\(output)")
        // The flags still win.
        (code, output) = try await project.migrations(["validate", "--dir", "nowhere"], database: false)
        #expect(code == 66 && output.contains("\(project.directory)/nowhere does not exist"), "\(output)")

        // Another file by --config; a configuration that does not load stops the command with its line.
        try "[migrations]\ndir = 3\n".save(to: project.directory + "/broken.toml")
        (code, output) = try await project.migrations(["validate", "--config", project.directory + "/broken.toml"], database: false)
        #expect(code == 78 && output.contains("broken.toml:2") && output.contains("migrations.dir"), "\(output)")
        (code, output) = try await project.migrations(["validate", "--config", project.directory + "/none.toml"], database: false)
        #expect(code == 66 && output.contains("none.toml does not exist"), "\(output)")
    }

    @Test func missingDirectoryAndUnreachableDatabaseAreClear() async throws {
        let directory = makeTemporaryDirectory("nomig")
        let safeWatch = try await SafeWatchProcess(["migrations", "validate", "--project", directory])
        #expect(await safeWatch.waitForExit() == .exited(66))
        #expect(safeWatch.output.contains("the migrations directory \(directory)/migrations does not exist"))

        let project = try Project()
        let started = ContinuousClock.now
        let (code, output) = try await project.migrations(["validate", "--database-url", "postgres://nobody@127.0.0.1:1/db"], database: false)
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(code == 0 && output.contains("the database was not checked") && output.contains("verdict: SAFE_AFTER_APPLY"), "\(output)")
    }
}

/// The same commands against a real PostgreSQL (a throwaway cluster from script/postgres-test-cluster).
@Suite(.serialized, .timeLimit(.minutes(5))) struct MigrationsPostgresCommandTests {
    @Test func runEditDirtyRowAndRevertOnPostgres() async throws {
        try await Self.withCluster { url in try await self.exercise(url: url) }
    }

    /// Starts a throwaway cluster for `body` and stops it afterwards; `body` gets its superuser URL
    /// (database `postgres`).
    static func withCluster(_ body: (String) async throws -> Void) async throws {
        // Directly under /tmp: the cluster runs as the postgres user, who must reach it.
        let cluster = NSTemporaryDirectory() + "safe-watch-pg-\(UUID().uuidString)"
        let script = Paths.packageRoot + "/script/postgres-test-cluster"
        let (started, urlText) = try await run("/bin/bash", [script, "start", cluster], in: Paths.packageRoot)
        try #require(started == .exited(0), "the PostgreSQL test cluster did not start (apt-get install postgresql; script/bootstrap does): \(urlText)")
        let url = try #require(urlText.split(separator: "\n").last { $0.hasPrefix("postgres") }.map(String.init))
        do {
            try await body(url)
        } catch {
            Issue.record(error)
        }
        _ = try await run("/bin/bash", [script, "stop", cluster], in: Paths.packageRoot)
    }

    /// sqlx's lock id for the database named `postgres` (pinned in the MigrationsDatabaseTests).
    static let postgresLockID: Int64 = 368_907_709_894_077_238

    /// One psql answer, as text.
    static func psql(_ url: String, _ sql: String) async throws -> String {
        let (status, output) = try await run("/usr/bin/psql", [url, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], in: "/")
        #expect(status == .exited(0), "\(sql): \(output)")
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Polls `sql` until it answers `expected`: pg_locks is the only place a session's wait shows.
    static func waitForAnswer(_ url: String, _ sql: String, _ expected: String) async -> Bool {
        await waitUntil(limit: .seconds(20)) { (try? await psql(url, sql)) == expected }
    }

    /// Another runner (a sqlx server starting) holds sqlx's migration lock and applies a
    /// `-- no-transaction` migration while safe-watch's `run` waits: safe-watch must read the table
    /// only once it holds the lock, so it sees that migration applied and does not run it again.
    @Test func aConcurrentRunnerHoldingTheLockIsNeverInterleaved() async throws {
        try await Self.withCluster { url in
            var project = try MigrationsCommandTests.Project()
            project.databaseOverride = url
            try project.remove("0001_create_users.up.sql")
            try project.remove("0001_create_users.down.sql")
            try project.remove("0002_add_email.sql")
            try project.write("0001_events.sql", "CREATE TABLE events (what text);\n")
            var (code, output) = try await project.migrations(["run"])
            #expect(code == 0, "\(output)")
            let second = "-- no-transaction\nINSERT INTO events VALUES ('second');\n"
            try project.write("0002_second.sql", second)
            let checksum = Array(SHA384.hash(data: Array(second.utf8))).map { String(format: "%02x", $0) }.joined()

            // The other runner: a psql session fed through a FIFO, so it holds the lock until told.
            let fifo = project.directory + "/runner.fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            let runner = Task { try await run("/bin/sh", ["-c", "exec /usr/bin/psql '\(url)' -X -q -v ON_ERROR_STOP=1 < '\(fifo)'"], in: "/") }
            // Read-write: opening does not wait for psql, and closing it is psql's end of input.
            let descriptor = open(fifo, O_RDWR | O_CLOEXEC)
            try #require(descriptor >= 0)
            let pipe = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            pipe.write(Data("SELECT pg_advisory_lock(\(Self.postgresLockID));\n".utf8))
            let granted = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            #expect(await Self.waitForAnswer(url, granted, "1"))

            let safeWatch = try await SafeWatchProcess(
                ["migrations", "run", "--project", project.directory, "--database-url", url])
            // safe-watch is blocked on the lock: its request shows as not granted.
            let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            #expect(await Self.waitForAnswer(url, waiting, "1"), "\(safeWatch.output)")

            // Meanwhile the other runner applies 0002 as sqlx does, then lets go.
            pipe.write(Data("""
                INSERT INTO events VALUES ('second');
                INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                    VALUES (2, 'second', TRUE, decode('\(checksum)', 'hex'), 1000);
                SELECT pg_advisory_unlock(\(Self.postgresLockID));

                """.utf8))
            try pipe.close()
            let (runnerStatus, runnerOutput) = try await runner.value
            #expect(runnerStatus == .exited(0), "\(runnerOutput)")

            #expect(await safeWatch.waitForExit() == .exited(0), "\(safeWatch.output)")
            #expect(safeWatch.output.contains("waiting for sqlx's migration lock"), "\(safeWatch.output)")
            #expect(safeWatch.output.contains("nothing to apply"), "\(safeWatch.output)")
            // The migration ran once, and was recorded once.
            #expect(try await Self.psql(url, "SELECT count(*) FROM events") == "1")
            #expect(try await Self.psql(url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM _sqlx_migrations") == "1,2")
            (code, output) = try await project.migrations(["info"])
            #expect(output.contains("2\tapplied\t0002_second.sql"), "\(output)")
        }
    }

    func exercise(url: String) async throws {

        var project = try MigrationsCommandTests.Project()
        project.databaseOverride = url
        try project.write("0003_tags.up.sql", "CREATE TABLE tags (id integer);\n")
        try project.write("0003_tags.down.sql", "DROP TABLE tags;\n")
        var (code, output) = try await project.migrations(["run"])
        #expect(code == 0 && output.contains("applied 0003_tags.up.sql"), "\(output)")
        (code, output) = try await project.migrations(["info"])
        #expect(output.contains("3\tapplied\t0003_tags.up.sql"), "\(output)")

        // A CRLF-only edit of an applied file: SW101, classified from the checksum alone.
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\r\n")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW101 0002_add_email.sql (version 2, database)") && output.contains("only line endings"), "\(output)")
        try project.write("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\n")

        // A dirty row: what sqlx reports first.
        let (psqlStatus, psqlOutput) = try await run(
            "/usr/bin/psql", [url, "-c", "UPDATE _sqlx_migrations SET success = false WHERE version = 3"], in: project.directory)
        #expect(psqlStatus == .exited(0), "\(psqlOutput)")
        (code, output) = try await project.migrations(["validate"])
        #expect(code == 1 && output.contains("SW105") && output.contains("partially applied"), "\(output)")
        _ = try await run("/usr/bin/psql", [url, "-c", "UPDATE _sqlx_migrations SET success = true WHERE version = 3"], in: project.directory)

        (code, output) = try await project.migrations(["revert"])
        #expect(code == 0 && output.contains("reverted 0003_tags.down.sql"), "\(output)")
        (code, output) = try await project.migrations(["run", "--backup", project.directory + "/backups"])
        #expect(code == 0 && output.contains("backed up to") && output.contains("restore with: pg_restore"), "\(output)")
    }
}
