/// Statements that break the old server while old and new overlap during a swap (squawk's rules
/// that matter here), found in pending migrations.
enum OverlapLint {
    static func findings(for file: MigrationFile) -> [Finding] {
        guard let text = String(validating: file.bytes, as: UTF8.self) else { return [] }
        var findings: [Finding] = []
        func add(_ rule: Rule, _ what: String, _ fix: String) {
            guard !findings.contains(where: { $0.rule == rule }) else { return }
            findings.append(Finding(rule, .warn, file: file.name, version: file.version,
                message: "\(file.name) \(what): the old server still runs against this schema until the swap",
                evidence: .files, recovery: fix))
        }
        for statement in SQLText.statements(text) {
            let sql = statement.uppercased()
            if sql.hasPrefix("DROP TABLE") || (sql.hasPrefix("ALTER TABLE") && sql.contains(" DROP COLUMN")) {
                add(.dropsData, "drops a table or column", "stop using it in code first, deploy, then drop it in a later migration")
            }
            if sql.hasPrefix("ALTER TABLE") && (sql.contains(" RENAME ")) {
                add(.renamesObject, "renames a table or column", "add the new name, write both, switch readers, then drop the old one")
            }
            if sql.hasPrefix("ALTER TABLE") && sql.contains(" ADD ") && sql.contains(" NOT NULL") && !sql.contains(" DEFAULT ") {
                add(.requiredColumn, "adds a NOT NULL column without a default", "add it nullable (or with a DEFAULT), backfill, then set NOT NULL")
            }
            if sql.hasPrefix("ALTER TABLE") && (sql.contains(" TYPE ") || sql.contains(" SET DATA TYPE ")) {
                add(.changesType, "changes a column's type", "add a new column of the new type and migrate to it")
            }
            if sql.hasPrefix("CREATE INDEX") || sql.hasPrefix("CREATE UNIQUE INDEX"), !sql.contains("CONCURRENTLY") {
                add(.blockingIndex, "creates an index without CONCURRENTLY (writes block while it builds)",
                    "use CREATE INDEX CONCURRENTLY in its own file that starts with `-- no-transaction`")
            }
            if sql.hasPrefix("ALTER TABLE") && sql.contains(" ADD CONSTRAINT ")
                && (sql.contains(" FOREIGN KEY") || sql.contains(" CHECK")) && !sql.contains("NOT VALID")
            {
                add(.unvalidatedConstraint, "adds a constraint that is validated at once (the table is locked while it scans)",
                    "add it NOT VALID, then VALIDATE CONSTRAINT in a later migration")
            }
        }
        return findings
    }
}
