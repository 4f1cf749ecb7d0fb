/// What may happen to the server if it starts with these migrations.
public enum Verdict: String, Sendable, Codable {
    /// Nothing to apply, nothing wrong.
    case safe = "SAFE"
    /// Pending migrations will be applied at startup; nothing blocks them.
    case safeAfterApply = "SAFE_AFTER_APPLY"
    /// A server starting now would refuse to (sqlx) or corrupt the history: keep the old one.
    case block = "BLOCK"
}

/// The validator's answer: every finding, the pending migrations, and the verdict.
public struct ValidationReport: Equatable, Sendable, Codable {
    public var verdict: Verdict
    public var findings: [Finding]
    /// Versions a sqlx-style startup would apply, in order.
    public var pending: [Int64]
    /// Whether a database was consulted (the live check) or only the files and the sum file.
    public var checkedDatabase: Bool
}

/// Checks the migrations against the sum file and, when given, the database's `_sqlx_migrations`,
/// predicting what a sqlx-style startup would do: dirty row → applied but missing → modified →
/// pending.
public struct Validator: Sendable {
    /// Warnings count as blocking (for CI).
    public var strict: Bool
    /// sqlx's `ignore_missing`: applied versions with no file here (another branch's) are not
    /// findings.
    public var ignoreMissing: Bool
    /// Looks up the bytes a file had when its checksum was `checksum` (git history, snapshot).
    public var previousBytes: @Sendable (_ file: String, _ checksum: [UInt8]) -> [UInt8]?

    public init(
        strict: Bool = false, ignoreMissing: Bool = false,
        previousBytes: @escaping @Sendable (String, [UInt8]) -> [UInt8]? = { _, _ in nil }
    ) {
        self.strict = strict
        self.ignoreMissing = ignoreMissing
        self.previousBytes = previousBytes
    }

    /// - Parameters:
    ///   - sumFile: the parsed sum file; `.failure` when it exists but is invalid; nil when absent.
    ///   - applied: the database's rows; nil when there is no database to ask.
    public func validate(
        _ directory: MigrationDirectory, sumFile: Result<SumFile, SumFile.ParseError>?, applied: [AppliedMigration]?
    ) -> ValidationReport {
        var findings = directory.findings
        let forward = directory.appliable
        let byVersion = Dictionary(grouping: forward, by: \.version)

        // The sum file: what this checkout recorded.
        var recorded: SumFile?
        switch sumFile {
        case .success(let sum): recorded = sum
        case .failure(let error):
            findings.append(Finding(.sumFileInvalid, .block, file: MigrationDirectory.sumFileName, version: nil,
                message: error.description, evidence: .sumFile,
                recovery: "resolve it from the migrations themselves: fix any migration conflict first, then `safe-watch migrations hash --force` and review the diff"))
        case nil: break
        }
        if let recorded {
            findings += self.compare(directory, with: recorded)
        }

        // The database: what really ran.
        var pending: [Int64] = []
        if let applied {
            findings += self.compare(directory, with: applied, recorded: recorded)
            let appliedVersions = Set(applied.map(\.version))
            let newest = applied.map(\.version).max()
            for file in forward.sorted(by: { $0.version < $1.version }) where !appliedVersions.contains(file.version) {
                if !pending.contains(file.version) { pending.append(file.version) }
                if let newest, file.version < newest {
                    findings.append(Finding(.outOfOrder, self.strict ? .block : .warn, file: file.name, version: file.version,
                        message: "\(file.name) is older than the newest applied version \(newest): sqlx applies it out of order, silently",
                        evidence: .database, recovery: "give it a version after \(newest) (`git mv`) unless running it out of order is intended"))
                }
            }
        } else {
            // Offline: what the sum file has not recorded is new, and will be applied at startup.
            let known = Set(recorded?.entries.map(\.name) ?? [])
            let newestRecorded = forward.filter { known.contains($0.name) }.map(\.version).max()
            for file in forward.sorted(by: { $0.version < $1.version }) where recorded == nil || !known.contains(file.name) {
                if !pending.contains(file.version) { pending.append(file.version) }
                if let newestRecorded, file.version < newestRecorded {
                    findings.append(Finding(.outOfOrder, self.strict ? .block : .warn, file: file.name, version: file.version,
                        message: "\(file.name) is older than the newest recorded migration (\(newestRecorded)): databases that ran that one will apply this out of order",
                        evidence: .sumFile, recovery: "give it a version after \(newestRecorded) (`git mv`)"))
                }
            }
        }
        for version in pending {
            for file in byVersion[version] ?? [] {
                findings += OverlapLint.findings(for: file).map { finding in
                    var finding = finding
                    if self.strict { finding.severity = .block }
                    return finding
                }
                // A file not yet applied with a BOM or CR gets a different checksum on another checkout
                // (unless sqlx.toml's ignored-chars leaves them out of the checksum).
                let bom = file.bytes.starts(with: [0xEF, 0xBB, 0xBF]) && !directory.ignoredCharacters.contains("\u{FEFF}")
                let cr = file.bytes.contains(13) && !directory.ignoredCharacters.contains("\r")
                if bom || cr {
                    findings.append(Finding(.encoding, self.strict ? .block : .warn, file: file.name, version: file.version,
                        message: "\(file.name) has a byte-order mark or CR line endings: its checksum depends on each checkout's settings",
                        evidence: .files, recovery: "save it with LF endings and no BOM before it is applied"))
                }
            }
        }
        // One finding per modified file: the database's, when both records saw the edit.
        let modifiedInDatabase = Set(findings.filter { $0.rule == .modified && $0.evidence == .database }.compactMap(\.file))
        findings.removeAll { $0.rule == .modified && $0.evidence == .sumFile && modifiedInDatabase.contains($0.file ?? "") }
        if self.strict {
            findings = findings.map { finding in
                var finding = finding
                finding.severity = .block
                return finding
            }
        }
        let verdict: Verdict = findings.contains { $0.severity == .block } ? .block : (pending.isEmpty ? .safe : .safeAfterApply)
        return ValidationReport(verdict: verdict, findings: findings, pending: pending, checkedDatabase: applied != nil)
    }

    /// Edits, deletions and renames of recorded files, from the sum file alone.
    private func compare(_ directory: MigrationDirectory, with sum: SumFile) -> [Finding] {
        var findings: [Finding] = []
        let byName = Dictionary(directory.files.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for entry in sum.entries {
            if let file = byName[entry.name] {
                guard file.checksum != entry.checksum else { continue }
                if file.kind == .down {
                    findings.append(Finding(.downChanged, .warn, file: file.name, version: file.version,
                        message: "\(file.name) changed since it was recorded (sqlx never checks down files, so a rollback may not undo what its up file did)",
                        evidence: .sumFile, recovery: "make sure it still reverts \(file.name.replacing(".down.sql", with: ".up.sql")), then `safe-watch migrations hash --force`"))
                    continue
                }
                findings.append(self.modified(file, recorded: entry.checksum, evidence: .sumFile, ignoring: directory.ignoredCharacters))
            } else if let moved = directory.files.first(where: { $0.checksum == entry.checksum && sum.checksum(of: $0.name) == nil }) {
                let oldVersion = Int64(entry.name.prefix { $0 != "_" }) ?? -1
                let versionChanged = moved.version != oldVersion
                findings.append(Finding(.renamed, versionChanged ? .block : .warn, file: moved.name, version: moved.version,
                    message: versionChanged
                        ? "\(entry.name) was renamed to \(moved.name): its version changed from \(oldVersion) to \(moved.version), so databases that applied it will see it as missing and apply it again"
                        : "\(entry.name) was renamed to \(moved.name) (same version; sqlx does not mind)",
                    evidence: .sumFile,
                    recovery: versionChanged ? "rename it back: `git mv 'migrations/\(moved.name)' 'migrations/\(entry.name)'`" : "`safe-watch migrations hash --force` to record the new name"))
            } else {
                let version = Int64(entry.name.prefix { $0 != "_" })
                findings.append(Finding(.deleted, entry.name.hasSuffix(".down.sql") ? .warn : .block, file: entry.name, version: version,
                    message: "\(entry.name) was recorded but is gone: databases that applied it refuse to start (\"previously applied but is missing\")",
                    evidence: .sumFile, recovery: "restore it: `git checkout -- migrations/\(entry.name)` (or `git log --diff-filter=D -- migrations/\(entry.name)` to find it)"))
            }
        }
        return findings
    }

    /// What a sqlx startup against `applied` would refuse, in sqlx's order.
    private func compare(_ directory: MigrationDirectory, with applied: [AppliedMigration], recorded: SumFile?) -> [Finding] {
        var findings: [Finding] = []
        let forward = directory.appliable
        let byVersion = Dictionary(grouping: forward, by: \.version)
        let newestFile = forward.map(\.version).max()
        for row in applied where !row.success {
            findings.append(Finding(.partiallyApplied, .block, file: byVersion[row.version]?.first?.name, version: row.version,
                message: "migration \(row.version) (\(row.description)) is partially applied: its row has success = false",
                evidence: .database,
                recovery: "inspect the database by hand, finish or undo what ran, then `DELETE FROM _sqlx_migrations WHERE version = \(row.version)` and apply again"))
        }
        for row in applied where row.success {
            guard let file = byVersion[row.version]?.first else {
                if let down = directory.downFile(for: row.version) {
                    // sqlx's missing check counts every resolved version, a lone .down.sql too, and
                    // never hashes down files: it starts. The up file is gone all the same.
                    findings.append(Finding(.deleted, .warn, file: down.name, version: row.version,
                        message: "migration \(row.version) (\(row.description)) was applied and only its \(down.name) is left: sqlx accepts that, but this checkout cannot re-create the schema",
                        evidence: .database, recovery: "restore its .up.sql from git (`git log --diff-filter=D --name-only -- migrations/`)"))
                } else if let moved = forward.first(where: { $0.checksum == row.checksum }) {
                    findings.append(Finding(.renamed, .block, file: moved.name, version: moved.version,
                        message: "migration \(row.version) (\(row.description)) was applied, and its file is now \(moved.name) with version \(moved.version)",
                        evidence: .database, recovery: "rename it back to version \(row.version): `git mv 'migrations/\(moved.name)' 'migrations/\(row.version)_\(moved.name.drop { $0 != "_" }.dropFirst())'`"))
                } else if self.ignoreMissing {
                    // `--ignore-missing` / `ignore_missing = true`: what sqlx then skips silently.
                } else if !(recorded?.entries.contains(where: { Int64($0.name.prefix { $0 != "_" }) == row.version }) ?? false),
                    newestFile.map({ row.version > $0 }) ?? true
                {
                    findings.append(Finding(.unknownApplied, .block, file: nil, version: row.version,
                        message: "the database has migration \(row.version) (\(row.description)) that this checkout does not know: it is ahead (another branch applied it?)",
                        evidence: .database,
                        recovery: "switch to the branch that has it, or on a dev database revert it there first (`safe-watch migrations revert` on that branch)"))
                } else {
                    findings.append(Finding(.deleted, .block, file: nil, version: row.version,
                        message: "migration \(row.version) (\(row.description)) was applied but its file is missing",
                        evidence: .database, recovery: "restore the file from git (`git log --diff-filter=D --name-only -- migrations/`)"))
                }
                continue
            }
            if file.checksum != row.checksum {
                findings.append(self.modified(file, recorded: row.checksum, evidence: .database, ignoring: directory.ignoredCharacters))
            }
        }
        return findings
    }

    private func modified(_ file: MigrationFile, recorded: [UInt8], evidence: Evidence, ignoring: Set<Unicode.Scalar>) -> Finding {
        let kind = Modification.classify(
            current: file.bytes, recorded: recorded, previous: self.previousBytes(file.name, recorded), ignoring: ignoring)
        return Finding(.modified, .block, file: file.name, version: file.version,
            message: "\(file.name) was modified after it was \(evidence == .database ? "applied" : "recorded") (\(kind.explanation)): sqlx refuses to start (\"previously applied but has been modified\")",
            evidence: evidence,
            recovery: kind.recovery(file: file.name, version: file.version)
                + (evidence == .sumFile ? "; if no database has applied it yet, `safe-watch migrations hash --force` records the new bytes" : ""),
            modification: kind)
    }
}
