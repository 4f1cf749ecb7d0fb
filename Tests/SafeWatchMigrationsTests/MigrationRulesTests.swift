import SafeWatchMigrations
import Testing

/// One fixture per rule, and the clean directory that triggers none.
@Suite struct MigrationRulesTests {
    func entry(_ name: String, _ text: String) -> DirectoryEntry {
        DirectoryEntry(name: name, bytes: Array(text.utf8))
    }

    var clean: [DirectoryEntry] {
        [
            entry("0001_create_users.up.sql", "CREATE TABLE users (id bigint PRIMARY KEY);\n"),
            entry("0001_create_users.down.sql", "DROP TABLE users;\n"),
            entry("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\n"),
            entry("README.md", "not a migration"),
        ]
    }

    func rules(_ entries: [DirectoryEntry], sum: SumFile? = nil, applied: [AppliedMigration]? = nil, strict: Bool = false) -> [String] {
        let report = Validator(strict: strict).validate(MigrationDirectory(entries: entries), sumFile: sum.map { .success($0) }, applied: applied)
        return report.findings.map(\.rule.rawValue)
    }

    func applied(_ entries: [DirectoryEntry]) -> [AppliedMigration] {
        MigrationDirectory(entries: entries).appliable.map {
            AppliedMigration(version: $0.version, description: $0.description, success: true, checksum: $0.checksum, executionTime: 1000)
        }
    }

    @Test func checksumsAreSqlxs() {
        #expect(hex(sqlxChecksum(Array("CREATE TABLE t (id int);\n".utf8))).hasPrefix("e1cc0b49"))
        #expect(hex(sqlxChecksum(Array("CREATE TABLE t (id int);\r\n".utf8))).hasPrefix("13ec31b9"))
        #expect(sqlxChecksum([]).count == 48)
    }

    @Test func cleanDirectoryHasNoFindings() {
        let directory = MigrationDirectory(entries: clean)
        #expect(directory.files.map(\.name) == ["0001_create_users.down.sql", "0001_create_users.up.sql", "0002_add_email.sql"])
        #expect(directory.files.first { $0.kind == .up }?.description == "create users")
        let report = Validator().validate(directory, sumFile: .success(SumFile(files: directory.files)), applied: applied(clean))
        #expect(report.findings.isEmpty)
        #expect(report.verdict == .safe)
    }

    @Test func SW001VersionNotInteger() {
        #expect(rules(clean + [entry(".#0003_lock.sql", "x")]) == ["SW001"])
        #expect(rules(clean + [entry("abc_x.sql", "SELECT 1;")]) == ["SW001"])
    }

    @Test func SW002IgnoredBySqlx() {
        #expect(rules(clean + [entry("0003-add-index.sql", "SELECT 1;")]).contains("SW002"))
        #expect(rules(clean + [entry("0003_add_index.SQL", "SELECT 1;")]).contains("SW002"))
        #expect(rules(clean + [DirectoryEntry(name: "0004_sub", isDirectory: true, bytes: nil)]).contains("SW002"))
    }

    @Test func SW003DuplicateVersion() {
        let found = rules(clean + [entry("2_other_branch.sql", "SELECT 1;")])
        #expect(found.contains("SW003"))
        #expect(Validator().validate(MigrationDirectory(entries: clean + [entry("02_x.sql", "SELECT 1;")]), sumFile: nil, applied: nil).verdict == .block)
    }

    @Test func SW004VersionNotCanonical() {
        #expect(rules(clean + [entry("3_short.sql", "SELECT 1;\n")]) == ["SW004"])
        #expect(rules([entry("20261399120000_bad_month.sql", "SELECT 1;\n")]) == ["SW004"])
        let future = MigrationDirectory(entries: [entry("20301231120000_later.sql", "SELECT 1;\n")], now: 20261126080000)
        #expect(future.findings.map(\.rule) == [.versionNotCanonical])
        #expect(MigrationDirectory(entries: [entry("20261126070000_now.sql", "SELECT 1;\n")], now: 20261126080000).findings.isEmpty)
    }

    @Test func SW005PairIncomplete() {
        // sqlx runs such a project: a warning, which --strict makes blocking.
        let upOnly = [entry("0001_a.up.sql", "CREATE TABLE a (id int);")]
        #expect(rules(upOnly) == ["SW005"])
        #expect(Validator().validate(MigrationDirectory(entries: upOnly), sumFile: nil, applied: nil).verdict == .safeAfterApply)
        #expect(Validator(strict: true).validate(MigrationDirectory(entries: upOnly), sumFile: nil, applied: nil).verdict == .block)
        #expect(rules([entry("0001_a.down.sql", "DROP TABLE a;")]) == ["SW005"])
        #expect(rules([entry("0001_a.sql", "CREATE TABLE a (id int);"), entry("0001_a.down.sql", "DROP TABLE a;")]) == ["SW005"])
    }

    @Test func SW006Encoding() {
        let invalid = DirectoryEntry(name: "0003_bad.sql", bytes: [0x53, 0xFF, 0xFE, 0x3B])
        #expect(rules(clean + [invalid]).contains("SW006"))
        // A pending file with CR line endings: warn (its checksum depends on the checkout).
        #expect(rules(clean + [entry("0003_crlf.sql", "SELECT 1;\r\n")], sum: SumFile(files: MigrationDirectory(entries: clean).files)) == ["SW006"])
    }

    @Test func SW007TransactionMode() {
        #expect(rules(clean + [entry("0003_idx.sql", "\n-- no-transaction\nCREATE INDEX CONCURRENTLY i ON users (email);")]).contains("SW007"))
        #expect(rules(clean + [entry("0003_idx.sql", "CREATE INDEX CONCURRENTLY i ON users (email);")]).contains("SW007"))
        #expect(!rules(clean + [entry("0003_idx.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON users (email);")]).contains("SW007"))
    }

    @Test func SW008EmptyTemplate() {
        #expect(rules(clean + [entry("0003_todo.sql", "-- Add migration script here\n")]).contains("SW008"))
        // sqlx-cli's reversible templates: the up file blocks, the down file warns.
        let pair = [entry("0003_todo.up.sql", "-- Add up migration script here\n"), entry("0003_todo.down.sql", "-- Add down migration script here\n")]
        let report = Validator().validate(MigrationDirectory(entries: clean + pair), sumFile: nil, applied: nil)
        #expect(report.findings.filter { $0.rule == .emptyTemplate }.map { "\($0.file ?? "") \($0.severity)" }.sorted()
            == ["0003_todo.down.sql warn", "0003_todo.up.sql block"])
        #expect(report.verdict == .block)
    }

    @Test func signedVersionsParseAsInSqlx() {
        let directory = MigrationDirectory(entries: clean + [entry("+5_plus.sql", "SELECT 1;\n"), entry("-1_minus.sql", "SELECT 1;\n")])
        #expect(directory.files.filter { $0.kind == .simple }.map(\.version).sorted() == [-1, 2, 5])
        #expect(directory.findings.map(\.rule) == [.versionNotCanonical, .versionNotCanonical])
        #expect(directory.findings.allSatisfy { $0.severity == .warn })
    }

    @Test func ignoredCharactersLeaveTheChecksumAsSqlxComputesIt() {
        let lf = Array("CREATE TABLE t (id int);\n".utf8)
        let crlfBOM = [0xEF, 0xBB, 0xBF] + Array("CREATE TABLE t (id int);\r\n".utf8)
        #expect(sqlxChecksum(crlfBOM, ignoring: ["\r", "\u{FEFF}"]) == sqlxChecksum(lf))
        #expect(sqlxChecksum(crlfBOM, ignoring: ["\r"]) != sqlxChecksum(lf))
        // All whitespace, as sqlx's own test does it: the text without those characters.
        #expect(sqlxChecksum(lf, ignoring: [" ", "\n"]) == sqlxChecksum(Array("CREATETABLEt(idint);".utf8)))
        let directory = MigrationDirectory(entries: [entry("0001_t.sql", "CREATE TABLE t (id int);\r\n")], ignoredCharacters: ["\r"])
        #expect(directory.files[0].checksum == sqlxChecksum(lf))
        let rows = [AppliedMigration(version: 1, description: "t", success: true, checksum: sqlxChecksum(lf), executionTime: 1)]
        #expect(Validator().validate(directory, sumFile: nil, applied: rows).verdict == .safe)
    }

    @Test func ignoreMissingAndLoneDownFilesInTheMissingCheck() {
        var rows = applied(clean)
        rows.append(AppliedMigration(version: 9, description: "from another branch", success: true, checksum: sqlxChecksum([1]), executionTime: 1))
        #expect(Validator().validate(MigrationDirectory(entries: clean), sumFile: nil, applied: rows).verdict == .block)
        let ignoring = Validator(ignoreMissing: true).validate(MigrationDirectory(entries: clean), sumFile: nil, applied: rows)
        #expect(ignoring.verdict == .safe && ignoring.findings.isEmpty)
        // Only its .down.sql is left: sqlx counts the version as known.
        let withDown = MigrationDirectory(entries: clean + [entry("0009_branch.down.sql", "DROP TABLE b;\n")])
        let report = Validator().validate(withDown, sumFile: nil, applied: rows)
        #expect(report.verdict == .safe, "\(report.findings)")
        #expect(report.findings.map(\.rule).contains(.deleted))
    }

    /// `sqlx migrate add`'s rules (sqlx-cli main, and its tests): fixtures named as it names them.
    @Test func newMigrationsAreNamedAsSqlxCliNamesThem() throws {
        let now = "20260301120000"
        func named(_ names: [String], _ description: String = "add posts-table", versioning: NewMigration.Versioning = .inferred,
                   shape: NewMigration.Shape = .inferred) throws -> [String] {
            let directory = MigrationDirectory(entries: names.map { entry($0, "SELECT 1;\n") })
            return try NewMigration(description: description, in: directory, versioning: versioning, shape: shape, now: now).files.map(\.name)
        }
        #expect(try named([]) == ["20260301120000_add_posts-table.sql"])
        #expect(try named(["1_a.sql"]) == ["0002_add_posts-table.sql"])
        #expect(try named(["0_a.sql"]) == ["0001_add_posts-table.sql"])
        #expect(try named(["5_a.sql"]) == ["20260301120000_add_posts-table.sql"])
        #expect(try named(["1_a.sql", "2_b.sql"]) == ["0003_add_posts-table.sql"])
        #expect(try named(["1_a.sql", "3_b.sql"]) == ["20260301120000_add_posts-table.sql"])
        #expect(try named(["1_a.up.sql", "1_a.down.sql", "2_b.up.sql", "2_b.down.sql"]) == ["0003_add_posts-table.up.sql", "0003_add_posts-table.down.sql"])
        // The newest migration's shape (main); v0.8.6 followed the first.
        #expect(try named(["1_a.up.sql", "1_a.down.sql", "2_b.sql"]) == ["0003_add_posts-table.sql"])
        #expect(try named(["1_a.sql", "2_b.up.sql", "2_b.down.sql"]) == ["0003_add_posts-table.up.sql", "0003_add_posts-table.down.sql"])
        #expect(try named(["1_a.up.sql", "1_a.down.sql"], shape: .simple) == ["0002_add_posts-table.sql"])
        #expect(try named(["1_a.sql"], shape: .reversible) == ["0002_add_posts-table.up.sql", "0002_add_posts-table.down.sql"])
        // Explicit versioning: sequential continues from the newest (a timestamp + 1), or starts at 1.
        #expect(try named([], versioning: .sequential) == ["0001_add_posts-table.sql"])
        #expect(try named(["20240101000000_a.sql"], versioning: .sequential) == ["20240101000001_add_posts-table.sql"])
        #expect(try named(["1_a.sql", "2_b.sql"], versioning: .timestamp) == ["20260301120000_add_posts-table.sql"])
        #expect(throws: NewMigration.InvalidDescription.self) { try named([], "a/b") }
        #expect(MigrationDirectory.template(for: .up) == "-- Add up migration script here\n")
        #expect(MigrationDirectory.template(for: .down) == "-- Add down migration script here\n")
    }

    @Test func SW101ModifiedIsClassified() throws {
        let sum = SumFile(files: MigrationDirectory(entries: clean).files)
        let rows = applied(clean)
        func modification(_ newText: String) -> (Modification?, Verdict) {
            var edited = clean
            edited[2] = entry("0002_add_email.sql", newText)
            let validator = Validator(previousBytes: { name, _ in name == "0002_add_email.sql" ? Array("ALTER TABLE users ADD COLUMN email text;\n".utf8) : nil })
            let report = validator.validate(MigrationDirectory(entries: edited), sumFile: .success(sum), applied: rows)
            let finding = report.findings.first { $0.rule == .modified }
            return (finding?.modification, report.verdict)
        }
        #expect(modification("ALTER TABLE users ADD COLUMN email text;\r\n") == (.lineEndingsOrBOM, .block))
        #expect(modification("\u{FEFF}ALTER TABLE users ADD COLUMN email text;\n") == (.lineEndingsOrBOM, .block))
        #expect(modification("-- emails\nALTER TABLE  users\n  ADD COLUMN email text;\n") == (.whitespaceOrComments, .block))
        #expect(modification("ALTER TABLE users ADD COLUMN email text;\nCREATE INDEX e ON users (email);\n") == (.statementsAppended, .block))
        #expect(modification("ALTER TABLE users ADD COLUMN mail text;\n") == (.realChange, .block))
    }

    @Test func SW101WithoutPreviousBytesStillProvesLineEndings() {
        var edited = clean
        edited[2] = entry("0002_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\r\n")
        let report = Validator().validate(MigrationDirectory(entries: edited), sumFile: nil, applied: applied(clean))
        let finding = report.findings.first { $0.rule == .modified }
        #expect(finding?.modification == .lineEndingsOrBOM)
        #expect(finding?.evidence == .database)
        #expect(finding?.recovery.contains("fix-checksum 2") == true)
    }

    @Test func SW102DeletedAndSW103Renamed() {
        let sum = SumFile(files: MigrationDirectory(entries: clean).files)
        let deleted = Array(clean.prefix(2))
        #expect(rules(deleted, sum: sum) == ["SW102"])
        #expect(rules(deleted, applied: applied(clean)) == ["SW102"] || rules(deleted, applied: applied(clean)) == ["SW106"])
        var renamed = Array(clean.prefix(2))
        renamed.append(entry("0003_add_email.sql", "ALTER TABLE users ADD COLUMN email text;\n"))
        #expect(rules(renamed, sum: sum).first == "SW103")
        #expect(rules(renamed, applied: applied(clean)).contains("SW103"))
    }

    @Test func SW104OutOfOrder() {
        let rows = applied(clean)
        let older = clean + [entry("0000_early.sql", "SELECT 1;\n")]
        #expect(rules(older, applied: rows) == ["SW104"])
        #expect(Validator(strict: true).validate(MigrationDirectory(entries: older), sumFile: nil, applied: rows).verdict == .block)
        #expect(Validator().validate(MigrationDirectory(entries: older), sumFile: nil, applied: rows).verdict == .safeAfterApply)
    }

    @Test func SW105PartiallyApplied() {
        var rows = applied(clean)
        rows[1].success = false
        #expect(rules(clean, applied: rows) == ["SW105"])
    }

    @Test func SW106DatabaseAhead() {
        var rows = applied(clean)
        rows.append(AppliedMigration(version: 9, description: "from another branch", success: true, checksum: sqlxChecksum([1]), executionTime: 1))
        let report = Validator().validate(MigrationDirectory(entries: clean), sumFile: .success(SumFile(files: MigrationDirectory(entries: clean).files)), applied: rows)
        #expect(report.findings.map(\.rule) == [.unknownApplied])
        #expect(report.findings.first?.message.contains("ahead") == true)
    }

    @Test func SW107DownChanged() {
        let sum = SumFile(files: MigrationDirectory(entries: clean).files)
        var edited = clean
        edited[1] = entry("0001_create_users.down.sql", "DROP TABLE IF EXISTS users;\n")
        let report = Validator().validate(MigrationDirectory(entries: edited), sumFile: .success(sum), applied: nil)
        #expect(report.findings.map(\.rule) == [.downChanged])
        #expect(report.verdict == .safe)
    }

    @Test func SW108SumFileInvalid() throws {
        let good = SumFile(files: MigrationDirectory(entries: clean).files).rendered
        #expect(try SumFile(parsing: good) == SumFile(files: MigrationDirectory(entries: clean).files))
        let conflicted = good + "<<<<<<< HEAD\n0003_a.sql \(hex(sqlxChecksum([1])))\n=======\n0003_b.sql \(hex(sqlxChecksum([2])))\n>>>>>>> other\n"
        #expect(throws: SumFile.ParseError.self) { try SumFile(parsing: conflicted) }
        let tampered = good.replacing("0002_add_email.sql \(hex(sqlxChecksum(Array("ALTER TABLE users ADD COLUMN email text;\n".utf8))))", with: "0002_add_email.sql \(hex(sqlxChecksum([9])))")
        #expect(tampered != good)
        do {
            _ = try SumFile(parsing: tampered)
            Issue.record("a tampered sum file parsed")
        } catch {
            #expect(error.message.contains("total does not match"))
            #expect(error.line == 3)
        }
        let report = Validator().validate(MigrationDirectory(entries: clean), sumFile: .failure(SumFile.ParseError(line: 5, message: "x")), applied: nil)
        #expect(report.findings.map(\.rule) == [.sumFileInvalid])
    }

    @Test func sumFileTotalChangesWhenAMigrationIsAdded() {
        let before = SumFile(files: MigrationDirectory(entries: clean).files)
        let after = SumFile(files: MigrationDirectory(entries: clean + [entry("0003_x.sql", "SELECT 1;\n")]).files)
        #expect(before.total != after.total)
        // Both branches rewrite the same total line: git cannot merge them silently.
        #expect(before.rendered.split(separator: "\n")[2] != after.rendered.split(separator: "\n")[2])
    }

    @Test func SW201OverlapUnsafeStatementsInPendingMigrations() {
        let sum = SumFile(files: MigrationDirectory(entries: clean).files)
        let cases: [(String, String)] = [
            ("ALTER TABLE users DROP COLUMN email;", "SW201"),
            ("ALTER TABLE users RENAME COLUMN email TO mail;", "SW202"),
            ("ALTER TABLE users ADD COLUMN age int NOT NULL;", "SW203"),
            ("ALTER TABLE users ALTER COLUMN email TYPE varchar(10);", "SW204"),
            ("CREATE INDEX users_email ON users (email);", "SW205"),
            ("ALTER TABLE users ADD CONSTRAINT c CHECK (id > 0);", "SW206"),
        ]
        for (sql, rule) in cases {
            #expect(rules(clean + [entry("0003_change.sql", sql + "\n")], sum: sum) == [rule], "\(sql)")
        }
        // Comments do not count, and applied migrations are history.
        #expect(rules(clean + [entry("0003_ok.sql", "-- DROP TABLE users;\nSELECT 1;\n")], sum: sum).isEmpty)
        #expect(rules(clean, sum: sum, applied: applied(clean)).isEmpty)
    }

    @Test func pendingMigrationsGiveSafeAfterApply() {
        let rows = Array(applied(clean).prefix(1))
        let report = Validator().validate(MigrationDirectory(entries: clean), sumFile: nil, applied: rows)
        #expect(report.verdict == .safeAfterApply)
        #expect(report.pending == [2])
    }
}
