/// The rules safe-watch enforces on a migrations directory; ids are stable (README, "Migrations").
public enum Rule: String, CaseIterable, Sendable, Codable {
    case versionNotInteger = "SW001"
    case ignoredBySqlx = "SW002"
    case duplicateVersion = "SW003"
    case versionNotCanonical = "SW004"
    case pairIncomplete = "SW005"
    case encoding = "SW006"
    case transactionMode = "SW007"
    case emptyTemplate = "SW008"
    case modified = "SW101"
    case deleted = "SW102"
    case renamed = "SW103"
    case outOfOrder = "SW104"
    case partiallyApplied = "SW105"
    case unknownApplied = "SW106"
    case downChanged = "SW107"
    case sumFileInvalid = "SW108"
    case dropsData = "SW201"
    case renamesObject = "SW202"
    case requiredColumn = "SW203"
    case changesType = "SW204"
    case blockingIndex = "SW205"
    case unvalidatedConstraint = "SW206"
}

public enum Severity: String, Comparable, Sendable, Codable {
    case warn
    case block

    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs == .warn && rhs == .block }
}

/// Where a finding's knowledge comes from.
public enum Evidence: String, Sendable, Codable {
    /// The files as they are.
    case files
    /// `migrations/safe-watch.sum`, the committed record.
    case sumFile = "sum-file"
    /// `_sqlx_migrations` in the live database.
    case database
}

/// How an applied file was modified: each has its own recovery.
public enum Modification: String, Sendable, Codable {
    /// Only CR/LF or a byte-order mark differ (a checkout with other line-ending settings).
    case lineEndingsOrBOM = "line-endings-or-bom"
    /// Only whitespace or SQL comments differ.
    case whitespaceOrComments = "whitespace-or-comments"
    /// The old file is intact and statements were added after it.
    case statementsAppended = "statements-appended"
    /// The statements themselves changed.
    case realChange = "real-change"
    /// The previous bytes are not available (not in git, not in safe-watch's snapshot).
    case unknown
}

/// One thing wrong (or worth knowing) about the migrations.
public struct Finding: Equatable, Sendable, Codable {
    public var rule: Rule
    public var severity: Severity
    /// The file it is about (relative to the migrations directory), if any.
    public var file: String?
    public var version: Int64?
    public var message: String
    public var evidence: Evidence
    /// What to run or do to recover.
    public var recovery: String
    /// For SW101: what kind of edit it was.
    public var modification: Modification?

    public init(
        _ rule: Rule, _ severity: Severity, file: String?, version: Int64?, message: String, evidence: Evidence,
        recovery: String, modification: Modification? = nil
    ) {
        self.rule = rule
        self.severity = severity
        self.file = file
        self.version = version
        self.message = message
        self.evidence = evidence
        self.recovery = recovery
        self.modification = modification
    }
}
