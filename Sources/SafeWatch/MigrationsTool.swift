import Foundation
import SafeWatchCore
import SafeWatchMigrations
import SafeWatchMigrationsDatabase

/// `safe-watch migrations …`: the validator, the sum file and sqlx-compatible run/revert/info for
/// people and CI. Each function prints for people (or JSON) and returns the exit code.
public struct MigrationsTool: Sendable {
    public var workspace: MigrationsWorkspace
    /// From `--database-url`, DATABASE_URL or `[migrations] database_url`.
    public var databaseURL: String?
    public var connectTimeout: Duration = .seconds(3)
    public var print: @Sendable (String) -> Void

    public init(workspace: MigrationsWorkspace, databaseURL: String?, print: @escaping @Sendable (String) -> Void) {
        self.workspace = workspace
        self.databaseURL = databaseURL
        self.print = print
    }

    /// The project's sqlx.toml (defaults without one), or nil once what is wrong with it was said.
    private func sqlxConfiguration() -> SQLxConfiguration? {
        do {
            return try self.workspace.sqlxConfiguration()
        } catch {
            self.print("safe-watch: \(error)")
            return nil
        }
    }

    /// 0 for SAFE and SAFE_AFTER_APPLY, 1 for BLOCK. `ignoreMissing`: sqlx's `--ignore-missing`.
    public func validate(strict: Bool, json: Bool, ignoreMissing: Bool = false) async -> Int32 {
        guard let sqlx = self.sqlxConfiguration() else { return 78 }
        var applied: [AppliedMigration]?
        var databaseProblem: String?
        if let url = self.databaseURL {
            do {
                let database = try await MigrationDatabases.open(url: url, connectTimeout: self.connectTimeout, tableName: sqlx.tableName)
                applied = try await database.appliedMigrations()
                await database.close()
            } catch {
                databaseProblem = "\(error)"
            }
        }
        let report: ValidationReport
        do {
            (_, report) = try await self.workspace.validate(strict: strict, ignoreMissing: ignoreMissing, applied: applied)
        } catch {
            self.print("safe-watch: \(error)")
            return 66
        }
        if let sqlxDirectory = sqlx.migrationsDir, !json,
            ProjectLoader.absolute(sqlxDirectory, relativeTo: self.workspace.projectDirectory) != self.workspace.directory
        {
            self.print("warning: sqlx.toml's [migrate] migrations-dir is \(sqlxDirectory), but safe-watch checks \(self.workspace.directory) (set --dir or [migrations] dir to the same)")
        }
        if json {
            self.print(Self.json(report, databaseProblem: databaseProblem))
        } else {
            if let databaseProblem {
                self.print("warning: the database was not checked (\(databaseProblem)); this verdict comes from the files and the sum file only")
            }
            self.print(Self.text(report))
        }
        return report.verdict == .block ? 1 : 0
    }

    /// Rewrites the sum file from the files; refuses to change recorded entries unless `force`.
    public func hash(force: Bool) -> Int32 {
        let directory: MigrationDirectory
        do {
            directory = try self.workspace.read()
        } catch {
            self.print("safe-watch: \(error)")
            return 66
        }
        let new = SumFile(files: directory.files)
        if case .success(let old) = self.workspace.readSumFile(), !force {
            let changed = old.entries.filter { new.checksum(of: $0.name) != $0.checksum }
            if !changed.isEmpty {
                for entry in changed {
                    let what = new.checksum(of: entry.name) == nil ? "is gone" : "changed"
                    self.print("refusing: \(entry.name) is recorded and \(what); applied migrations must not change (run `safe-watch migrations validate` to see why and how to recover, or --force to record it anyway)")
                }
                return 1
            }
        }
        do {
            try self.workspace.writeSumFile(new)
        } catch {
            self.print("safe-watch: cannot write \(self.workspace.sumFilePath): \(error.localizedDescription)")
            return 73
        }
        self.print("wrote \(self.workspace.sumFilePath): \(new.entries.count) files, total \(hex(new.total).prefix(16))…")
        return 0
    }

    /// Creates the next migration the way `sqlx migrate add` (sqlx-cli main) does: the version
    /// and shape from the flags, else sqlx.toml's `[migrate.defaults]`, else inferred from the
    /// directory; sqlx-cli's templates as the bodies.
    public func add(
        name: String, shape: NewMigration.Shape, versioning: NewMigration.Versioning, now: Date = Date()
    ) -> Int32 {
        guard let sqlx = self.sqlxConfiguration() else { return 78 }
        let directory = (try? self.workspace.read()) ?? MigrationDirectory(entries: [])
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMddHHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.locale = Locale(identifier: "en_US_POSIX")
        let new: NewMigration
        do {
            new = try NewMigration(
                description: name, in: directory,
                versioning: versioning == .inferred ? NewMigration.Versioning(rawValue: sqlx.defaultVersioning.rawValue) ?? .inferred : versioning,
                shape: shape == .inferred ? NewMigration.Shape(rawValue: sqlx.defaultMigrationType.rawValue) ?? .inferred : shape,
                now: formatter.string(from: now))
        } catch {
            self.print("safe-watch: \(error)")
            return 64
        }
        do {
            try FileManager.default.createDirectory(atPath: self.workspace.directory, withIntermediateDirectories: true)
            for file in new.files {
                let path = self.workspace.directory + "/" + file.name
                guard !FileManager.default.fileExists(atPath: path) else {
                    self.print("safe-watch: \(path) already exists")
                    return 73
                }
            }
            for file in new.files {
                let path = self.workspace.directory + "/" + file.name
                try MigrationDirectory.template(for: file.kind).write(toFile: path, atomically: true, encoding: .utf8)
                self.print("created \(path)")
            }
        } catch {
            self.print("safe-watch: cannot create the migration: \(error.localizedDescription)")
            return 73
        }
        // The new file is not recorded yet: its first edit must not look like a modified migration.
        self.print("write the migration, then `safe-watch migrations hash` records it (run and the pre-commit hook do too)")
        return 0
    }

    /// `validate --build`: the project must also compile (what the old validate script checked).
    public func build(command: String) async -> Int32 {
        let (status, output) = await runCapturing(
            launcher: self.workspace.launcher, executable: "/bin/sh", arguments: ["-c", command],
            directory: self.workspace.projectDirectory)
        guard status == .exited(0) else {
            let failure = BuildFailure.from(output: output, status: status, parser: DiagnosticsParser(root: self.workspace.projectDirectory))
            self.print("build failed (\(command)): \(failure.summary)")
            for diagnostic in failure.diagnostics.prefix(5) { self.print("    \(diagnostic)") }
            return 1
        }
        self.print("build succeeded (\(command))")
        return 0
    }

    // MARK: Against the database

    private func openDatabase(create: Bool = false) async -> (any MigrationDatabase)? {
        guard let url = self.databaseURL else {
            self.print("safe-watch: no database: pass --database-url, set DATABASE_URL, or [migrations] database_url in safe-watch.toml")
            return nil
        }
        guard let sqlx = self.sqlxConfiguration() else { return nil }
        do {
            return try await MigrationDatabases.open(url: url, connectTimeout: self.connectTimeout, createIfMissing: create, tableName: sqlx.tableName)
        } catch {
            self.print("safe-watch: \(error)")
            return nil
        }
    }

    /// Applies the pending migrations like sqlx (after validating; optionally after a backup), and
    /// records the applied files in the sum file. sqlx's migration lock is held from reading the
    /// table to the last apply, as sqlx's Migrator holds it, so a server or another runner
    /// migrating at the same time cannot apply a migration between the check and the apply.
    public func run(backupDirectory: String?, ignoreMissing: Bool = false) async -> Int32 {
        await self.withDatabase(create: true) { database in
            guard await self.lock(database) else { return 69 }
            let code = await self.runLocked(database, backupDirectory: backupDirectory, ignoreMissing: ignoreMissing)
            try? await database.unlock()
            return code
        }
    }

    /// Takes sqlx's migration lock, saying so when another session holds it.
    func lock(_ database: any MigrationDatabase) async -> Bool {
        let print = self.print
        do {
            try await database.lock(whileWaiting: {
                print("waiting for sqlx's migration lock: another process (a server starting, or sqlx migrate run) is migrating this database")
            })
            return true
        } catch {
            self.print("safe-watch: \(error)")
            return false
        }
    }

    private func runLocked(_ database: any MigrationDatabase, backupDirectory: String?, ignoreMissing: Bool) async -> Int32 {
        let directory: MigrationDirectory
        let report: ValidationReport
        do {
            let applied = try await database.appliedMigrations()
            (directory, report) = try await self.workspace.validate(strict: false, ignoreMissing: ignoreMissing, applied: applied)
        } catch {
            self.print("safe-watch: \(error)")
            return 69
        }
        if report.verdict == .block {
            self.print(Self.text(report))
            self.print("nothing applied")
            return 1
        }
        if report.pending.isEmpty {
            self.print("nothing to apply: the database is up to date")
            return 0
        }
        if let backupDirectory {
            guard let restore = await self.backup(database, into: backupDirectory) else { return 1 }
            self.print("restore with: \(restore)")
        }
        if let failure = await self.applyPending(report.pending, of: directory, to: database) {
            self.print("failed: \(failure)")
            return 1
        }
        self.recordInSumFile(directory)
        return 0
    }

    /// Applies `versions` in order, printing each; on the first failure returns what failed and
    /// what state the database is in (nothing recorded for that migration).
    func applyPending(_ versions: [Int64], of directory: MigrationDirectory, to database: any MigrationDatabase) async -> String? {
        for version in versions {
            guard let file = directory.appliable.first(where: { $0.version == version }),
                let sql = String(validating: file.bytes, as: UTF8.self)
            else { continue }
            do {
                let took = try await database.apply(
                    PendingMigration(version: file.version, description: file.description, sql: sql, checksum: file.checksum,
                                     noTransaction: file.noTransaction))
                self.print("✓ applied \(file.name) in \(took.humanReadable)")
            } catch {
                let state = file.noTransaction
                    ? "it runs without a transaction: statements before the failure may have been applied; nothing was recorded"
                    : "the transaction rolled back; the database is as it was before \(file.name)"
                return "failed to apply \(file.name): \(error) (\(state))"
            }
        }
        return nil
    }

    /// Reverts the newest applied migration that has a down file, as `sqlx migrate revert` does:
    /// applied simple migrations newer than it are skipped (they cannot be reverted and stay). Like
    /// sqlx it refuses a partially applied row, and an applied version with no file unless
    /// `ignoreMissing`; the migration lock is held throughout.
    public func revert(ignoreMissing: Bool = false) async -> Int32 {
        await self.withDatabase { database in
            guard await self.lock(database) else { return 69 }
            let code = await self.revertLocked(database, ignoreMissing: ignoreMissing)
            try? await database.unlock()
            return code
        }
    }

    private func revertLocked(_ database: any MigrationDatabase, ignoreMissing: Bool) async -> Int32 {
        do {
            let directory = try self.workspace.read()
            let applied = try await database.appliedMigrations()
            if let dirty = applied.first(where: { !$0.success }) {
                self.print("safe-watch: migration \(dirty.version) (\(dirty.description)) is partially applied (success = false): clean it up by hand and delete its row first; nothing reverted")
                return 1
            }
            // sqlx counts every version a file names, a lone .down.sql too.
            if !ignoreMissing, let missing = applied.first(where: { !directory.versions.contains($0.version) }) {
                self.print("safe-watch: migration \(missing.version) (\(missing.description)) was applied but has no file in this checkout (another branch?); nothing reverted. --ignore-missing skips such versions, as sqlx's does")
                return 1
            }
            let appliedVersions = Set(applied.map(\.version))
            let downs = directory.files.filter { $0.kind == .down && appliedVersions.contains($0.version) }
            guard let down = downs.max(by: { $0.version < $1.version }) else {
                self.print("nothing to revert: no applied migration has a .down.sql")
                return 0
            }
            guard let sql = String(validating: down.bytes, as: UTF8.self) else {
                self.print("safe-watch: \(down.name) is not valid UTF-8; nothing reverted")
                return 1
            }
            let skipped = appliedVersions.filter { $0 > down.version }.sorted()
            if !skipped.isEmpty {
                self.print("skipping \(skipped.map(String.init).joined(separator: ", ")): applied without a .down.sql, so they stay (as with sqlx migrate revert)")
            }
            try await database.revert(RevertibleMigration(version: down.version, downSQL: sql, noTransaction: down.noTransaction))
            self.print("reverted \(down.name)")
            return 0
        } catch {
            self.print("safe-watch: \(error)")
            return 1
        }
    }

    /// One line per version: applied, pending, modified or missing.
    public func info() async -> Int32 {
        await self.withDatabase { database in await self.info(database) }
    }

    private func info(_ database: any MigrationDatabase) async -> Int32 {
        do {
            let directory = try self.workspace.read()
            let applied = try await database.appliedMigrations()
            let rows = Dictionary(applied.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
            let files = Dictionary(directory.appliable.map { ($0.version, $0) }, uniquingKeysWith: { first, _ in first })
            for version in Set(rows.keys).union(files.keys).sorted() {
                let file = files[version]
                let row = rows[version]
                let state: String
                switch (file, row) {
                case (_, let row?) where !row.success: state = "partially applied"
                case (let file?, let row?): state = file.checksum == row.checksum ? "applied" : "applied, file modified"
                case (.some, nil): state = "pending"
                case (nil, .some): state = "applied, file missing"
                case (nil, nil): continue
                }
                self.print("\(version)\t\(state)\t\(file?.name ?? row?.description ?? "")")
            }
            return 0
        } catch {
            self.print("safe-watch: \(error)")
            return 1
        }
    }

    /// The safe form of "update _sqlx_migrations by hand": replaces the recorded checksum with the
    /// file's, compare-and-swap on the old one, only when the edit is proven equivalent (line
    /// endings, whitespace or comments) unless `force`.
    public func fixChecksum(version: Int64, force: Bool) async -> Int32 {
        await self.withDatabase { database in await self.fixChecksum(version: version, force: force, database) }
    }

    private func fixChecksum(version: Int64, force: Bool, _ database: any MigrationDatabase) async -> Int32 {
        do {
            let applied = try await database.appliedMigrations()
            guard let row = applied.first(where: { $0.version == version }) else {
                self.print("safe-watch: version \(version) is not applied in this database")
                return 1
            }
            let (directory, report) = try await self.workspace.validate(strict: false, applied: applied)
            guard let file = directory.appliable.first(where: { $0.version == version }) else {
                self.print("safe-watch: no migration file has version \(version)")
                return 1
            }
            guard file.checksum != row.checksum else {
                self.print("version \(version): the recorded checksum already matches \(file.name)")
                return 0
            }
            let kind = report.findings.first { $0.rule == .modified && $0.version == version }?.modification ?? .unknown
            guard force || kind == .lineEndingsOrBOM || kind == .whitespaceOrComments else {
                self.print("refusing: \(file.name) changed beyond line endings, whitespace or comments (\(kind.rawValue)); the database ran the old statements. Use --force only if you made the database match the file by hand.")
                return 1
            }
            guard try await database.replaceChecksum(version: version, old: row.checksum, new: file.checksum) else {
                self.print("safe-watch: the row changed while we looked (its checksum is no longer \(hex(row.checksum).prefix(16))…); nothing changed")
                return 1
            }
            self.print("version \(version) (\(file.name)): checksum \(hex(row.checksum).prefix(16))… → \(hex(file.checksum).prefix(16))… (\(kind.rawValue))")
            if case .success(var sum) = self.workspace.readSumFile(), let index = sum.entries.firstIndex(where: { $0.name == file.name }) {
                sum.entries[index].checksum = file.checksum
                try? self.workspace.writeSumFile(sum)
            }
            return 0
        } catch {
            self.print("safe-watch: \(error)")
            return 1
        }
    }

    /// Runs `body` on the opened database and closes it before returning (exit 69 when it cannot be
    /// opened): the command's process may exit right after, so the close is awaited, not left to a task.
    private func withDatabase(
        create: Bool = false, _ body: (any MigrationDatabase) async -> Int32
    ) async -> Int32 {
        guard let database = await self.openDatabase(create: create) else { return 69 }
        let code = await body(database)
        await database.close()
        return code
    }

    /// Backs the database up into `directory`; returns the restore command, or nil (and says why).
    func backup(_ database: any MigrationDatabase, into directory: String) async -> String? {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let stamp = Int(Date().timeIntervalSince1970)
            let path = "\(directory)/backup-\(stamp)" + (self.databaseURL?.hasPrefix("sqlite") == true ? ".sqlite" : ".dump")
            let restore = try await database.backup(to: path)
            self.print("backed up to \(path)")
            return restore
        } catch {
            self.print("safe-watch: the backup failed, nothing applied: \(error)")
            return nil
        }
    }

    /// Adds the files applied to the sum file (never changing recorded entries).
    func recordInSumFile(_ directory: MigrationDirectory) {
        var sum = (try? self.workspace.readSumFile()?.get()) ?? SumFile(entries: [])
        let recorded = Set(sum.entries.map(\.name))
        let added = directory.files.filter { !recorded.contains($0.name) }
        guard !added.isEmpty else { return }
        sum = SumFile(entries: sum.entries + SumFile(files: added).entries)
        do {
            try self.workspace.writeSumFile(sum)
            self.print("recorded \(added.count) file(s) in \(MigrationDirectory.sumFileName)")
        } catch {
            self.print("warning: cannot update \(self.workspace.sumFilePath): \(error.localizedDescription)")
        }
    }

    // MARK: Output

    static func text(_ report: ValidationReport) -> String {
        var lines: [String] = []
        for finding in report.findings.sorted(by: { ($0.severity == .block ? 0 : 1, $0.rule.rawValue) < ($1.severity == .block ? 0 : 1, $1.rule.rawValue) }) {
            let severity = finding.severity == .block ? "BLOCK" : "warn "
            let version = finding.version.map { "version \($0), " } ?? ""
            lines.append("\(severity) \(finding.rule.rawValue) \(finding.file ?? "-") (\(version)\(finding.evidence.rawValue)): \(finding.message)")
            lines.append("      fix: \(finding.recovery)")
        }
        let pending = report.pending.isEmpty ? "" : " — pending: \(report.pending.map(String.init).joined(separator: ", "))"
        let meaning: String
        switch report.verdict {
        case .safe: meaning = "nothing to apply"
        case .safeAfterApply: meaning = "the pending migrations can be applied"
        case .block: meaning = "a server starting now would refuse to start or corrupt the migration history"
        }
        lines.append("verdict: \(report.verdict.rawValue) (\(meaning))\(pending)\(report.checkedDatabase ? "" : " [files and sum file only]")")
        return lines.joined(separator: "\n")
    }

    static func json(_ report: ValidationReport, databaseProblem: String?) -> String {
        struct Output: Encodable {
            var verdict: String
            var findings: [Finding]
            var pending: [Int64]
            var checkedDatabase: Bool
            var databaseProblem: String?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let output = Output(
            verdict: report.verdict.rawValue, findings: report.findings, pending: report.pending,
            checkedDatabase: report.checkedDatabase, databaseProblem: databaseProblem)
        return (try? encoder.encode(output)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
