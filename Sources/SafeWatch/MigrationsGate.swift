import Foundation
import SafeWatchCore
import SafeWatchMigrations
import SafeWatchMigrationsDatabase

/// The swap gate (DESIGN §6): before a new generation starts, its migrations are validated (live
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
        let started = ContinuousClock.now
        // safe-watch creates a missing SQLite database when it is the one applying migrations.
        let (database, databaseProblem) = await self.openDatabase(create: self.settings.apply == .safeWatch)
        defer { if let database { Task { await database.close() } } }
        let directory: MigrationDirectory
        let report: ValidationReport
        do {
            let applied = try await database?.appliedMigrations()
            (directory, report) = try await self.workspace.validate(strict: false, applied: applied)
        } catch {
            return "could not be checked: \(error)"
        }
        self.workspace.snapshot(directory)
        self.announce(report, databaseProblem: databaseProblem, took: ContinuousClock.now - started)
        if report.verdict == .block {
            let rules = Set(report.findings.filter { $0.severity == .block }.map(\.rule.rawValue)).sorted()
            return "BLOCK (\(rules.joined(separator: ", "))) — fix the migrations, see above"
        }
        guard report.verdict == .safeAfterApply else { return nil }
        guard let database else {
            // Nothing to apply them to: the server applies them at its start.
            return nil
        }
        if self.settings.backup {
            let tool = MigrationsTool(workspace: self.workspace, databaseURL: self.databaseURL, print: { self.reporter.info($0) })
            let backupDirectory = self.settings.backupDir.hasPrefix("/") ? self.settings.backupDir : self.workspace.projectDirectory + "/" + self.settings.backupDir
            guard let restore = await tool.backup(database, into: backupDirectory) else {
                return "not applied: the backup failed (see above); the database is unchanged"
            }
            self.reporter.info("  restore with: \(restore)")
        }
        guard self.settings.apply == .safeWatch else { return nil }
        let tool = MigrationsTool(workspace: self.workspace, databaseURL: self.databaseURL, print: { self.reporter.info($0) })
        if let failure = await tool.applyPending(report.pending, of: directory, to: database) {
            return failure
        }
        tool.recordInSumFile(directory)
        return nil
    }

    /// Prints the verdict right after a migration file changed (before any build).
    func reportVerdict() async {
        let started = ContinuousClock.now
        let (database, databaseProblem) = await self.openDatabase(create: false)
        defer { if let database { Task { await database.close() } } }
        do {
            let applied = try await database?.appliedMigrations()
            let (_, report) = try await self.workspace.validate(strict: false, applied: applied)
            self.announce(report, databaseProblem: databaseProblem, took: ContinuousClock.now - started)
        } catch {
            self.reporter.warning("migrations could not be checked: \(error)")
        }
    }

    private func openDatabase(create: Bool) async -> ((any MigrationDatabase)?, String?) {
        guard let url = self.databaseURL else { return (nil, nil) }
        do {
            return (try await MigrationDatabases.open(url: url, connectTimeout: .seconds(3), createIfMissing: create), nil)
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
        switch report.verdict {
        case .block: self.reporter.warning("✗ " + line)
        case .safe, .safeAfterApply: self.reporter.info("✓ " + line)
        }
        for finding in report.findings {
            let text = "  \(finding.severity == .block ? "BLOCK" : "warn") \(finding.rule.rawValue) \(finding.file ?? "-"): \(finding.message)\n    fix: \(finding.recovery)"
            if finding.severity == .block { self.reporter.warning(text) } else { self.reporter.info(text) }
        }
    }
}
