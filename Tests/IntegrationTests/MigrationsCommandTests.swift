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
        // The newest applied (2) has no down file: a clear refusal.
        (code, output) = try await project.migrations(["revert"])
        #expect(code == 1 && output.contains("has no .down.sql"), "\(output)")
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
        var (code, output) = try await project.migrations(["add", "create posts"], database: false)
        // 0001 and 0002 differ by one: sequential, same width; the directory has pairs: reversible.
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
        // Directly under /tmp: the cluster runs as the postgres user, who must reach it.
        let cluster = NSTemporaryDirectory() + "safe-watch-pg-\(UUID().uuidString)"
        let script = Paths.packageRoot + "/script/postgres-test-cluster"
        let (started, urlText) = try await run("/bin/bash", [script, "start", cluster], in: Paths.packageRoot)
        try #require(started == .exited(0), "the PostgreSQL test cluster did not start (apt-get install postgresql; script/bootstrap does): \(urlText)")
        let url = try #require(urlText.split(separator: "\n").last { $0.hasPrefix("postgres") }.map(String.init))
        do {
            try await self.exercise(url: url)
        } catch {
            Issue.record(error)
        }
        _ = try await run("/bin/bash", [script, "stop", cluster], in: Paths.packageRoot)
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
