import Foundation
import SafeWatchCore
import SafeWatchMigrations
import SafeWatchMigrationsDatabase

/// The swap gate: before a new generation starts, its migrations are validated (live
/// against the database when one is configured). BLOCK keeps the old server serving and says why
/// and how to recover; pending migrations are backed up and applied first when safe-watch applies
/// them.
struct MigrationsGate: Sendable {
    var workspace: MigrationsWorkspace
    var databaseURL: String?
    var settings: Configuration.Migrations
    var reporter: Reporter

    /// nil when the generation may start; otherwise why not.
    func check() async -> String? {
        // safe-watch creates a missing SQLite database when it is the one applying migrations, and
        // then holds sqlx's migration lock from reading the table to the last apply.
        let checked: Checked
        do {
            checked = try await self.validate(createDatabase: self.settings.apply == .safeWatch, lock: self.settings.apply == .safeWatch)
        } catch {
            return "could not be checked: \(error)"
        }
        let verdict = await self.applyIfSafe(checked)
        // Awaited, not left to a task: sqlx's lock must be released before the server starts.
        await checked.close()
        return verdict
    }

    /// The gate's verdict on a validation, applying pending migrations when safe-watch applies them.
    private func applyIfSafe(_ checked: Checked) async -> String? {
        let (directory, report) = (checked.directory, checked.report)
        self.workspace.snapshot(directory)
        if report.verdict == .block {
            let rules = Set(report.findings.filter { $0.severity == .block }.map(\.rule.rawValue)).sorted()
            return "BLOCK (\(rules.joined(separator: ", "))) — fix the migrations; `safe-watch migrations validate` lists each finding and its fix"
        }
        // Without a database the server applies pending migrations at its start.
        guard report.verdict == .safeAfterApply, let database = checked.database else { return nil }
        let tool = MigrationsTool(workspace: self.workspace, databaseURL: self.databaseURL, print: { self.reporter.info($0) })
        if self.settings.backup {
            let backupDirectory = self.settings.backupDir.hasPrefix("/") ? self.settings.backupDir : self.workspace.projectDirectory + "/" + self.settings.backupDir
            guard let restore = await tool.backup(database, into: backupDirectory) else {
                return "not applied: the backup failed (see above); the database is unchanged"
            }
            self.reporter.info("  restore with: \(restore)")
        }
        guard self.settings.apply == .safeWatch else { return nil }
        if let failure = await tool.applyPending(report.pending, of: directory, to: database) {
            return failure
        }
        tool.recordInSumFile(directory)
        return nil
    }

    /// Prints the verdict right after a migration file changed (before any build).
    func reportVerdict() async {
        do {
            try await self.validate(createDatabase: false, lock: false).close()
        } catch {
            self.reporter.warning("migrations could not be checked: \(error)")
        }
    }

    /// A validation and the database it consulted (still open, for applying).
    private struct Checked {
        var directory: MigrationDirectory
        var report: ValidationReport
        var database: (any MigrationDatabase)?

        func close() async {
            guard let database else { return }
            try? await database.unlock()
            await database.close()
        }
    }

    /// Validates (live when a database is configured and reachable) and announces the verdict.
    private func validate(createDatabase: Bool, lock: Bool) async throws -> Checked {
        let started = ContinuousClock.now
        let (database, databaseProblem) = await self.openDatabase(create: createDatabase)
        do {
            if lock, let database {
                let reporter = self.reporter
                try await database.lock(whileWaiting: {
                    reporter.info("migrations: waiting for sqlx's migration lock (another process is migrating the database)")
                })
            }
            let applied = try await database?.appliedMigrations()
            let (directory, report) = try await self.workspace.validate(
                strict: false, ignoreMissing: self.settings.ignoreMissing, applied: applied)
            self.announce(report, databaseProblem: databaseProblem, took: ContinuousClock.now - started)
            return Checked(directory: directory, report: report, database: database)
        } catch {
            if let database { await database.close() }
            throw error
        }
    }

    private func openDatabase(create: Bool) async -> ((any MigrationDatabase)?, String?) {
        guard let url = self.databaseURL else { return (nil, nil) }
        do {
            let table = try self.workspace.sqlxConfiguration().tableName
            return (try await MigrationDatabases.open(url: url, connectTimeout: .seconds(3), createIfMissing: create, tableName: table), nil)
        } catch {
            return (nil, "\(error)")
        }
    }

    private func announce(_ report: ValidationReport, databaseProblem: String?, took: Duration) {
        if let databaseProblem {
            self.reporter.warning("migrations: the database was not checked (\(databaseProblem)); verdict from the files and the sum file")
        }
        let line = "migrations: \(report.verdict.rawValue) in \(took.humanReadable)"
            + (report.pending.isEmpty ? "" : " — pending: \(report.pending.map(String.init).joined(separator: ", "))")
        // Their own event names: the browser's overlay shows a blocking verdict with its fixes.
        switch report.verdict {
        case .block: self.reporter.log(.warning, "✗ " + line, event: "migrations_verdict")
        case .safe, .safeAfterApply: self.reporter.log(.info, "✓ " + line, event: "migrations_verdict")
        }
        for finding in report.findings {
            let text = "  \(finding.severity == .block ? "BLOCK" : "warn") \(finding.rule.rawValue) \(finding.file ?? "-"): \(finding.message)\n    fix: \(finding.recovery)"
            self.reporter.log(finding.severity == .block ? .warning : .info, text, event: "migrations_finding")
        }
    }
}
