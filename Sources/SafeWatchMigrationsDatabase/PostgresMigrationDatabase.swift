import Glibc
import PostgresNIO
import SafeWatchMigrations
import SafeWatchProcesses

/// `_sqlx_migrations` in PostgreSQL, kept exactly as sqlx keeps it (`sqlx-postgres/src/migrate.rs`).
///
/// One connection; operations run one at a time. `apply` and `revert` hold sqlx's advisory lock
/// (`SQLxAdvisoryLock.id(forDatabase: current_database())`), so they wait for — and block — a
/// sqlx-based server migrating the same database; `lock()` holds it across several operations, as
/// sqlx's Migrator does for a whole run (read the table, check, apply).
///
/// Statements: PostgresNIO has no simple-query protocol, so a file is cut into statements
/// (`StatementSplitter.postgres`) and each is sent on its own. In a transaction that is what sqlx's
/// single multi-statement Query does. For a `-- no-transaction` file with several statements, sqlx's
/// one Query runs as PostgreSQL's *implicit* transaction (all or nothing, and `CREATE INDEX
/// CONCURRENTLY`, `VACUUM`, … refuse to run); an explicit BEGIN/COMMIT around the statements
/// reproduces both. A single-statement `-- no-transaction` file runs on its own, outside any
/// transaction, as with sqlx.
public actor PostgresMigrationDatabase: MigrationDatabase {
    private let connection: PostgresConnection
    package nonisolated let url: PostgresURL
    private let logger: Logger
    /// `current_database()`: what sqlx derives the lock id from.
    public nonisolated let databaseName: String
    /// sqlx's advisory lock id for this database.
    public nonisolated let lockID: Int64
    /// The bookkeeping table: `_sqlx_migrations`, or sqlx.toml's `[migrate] table-name`, used in SQL
    /// verbatim as sqlx does (it may be schema-qualified or quoted).
    public nonisolated let tableName: String
    /// Whether `lock()` holds the advisory lock (then `apply` and `revert` do not take it again).
    private var lockHeld = false
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    private init(connection: PostgresConnection, url: PostgresURL, logger: Logger, databaseName: String, tableName: String) {
        self.connection = connection
        self.url = url
        self.logger = logger
        self.databaseName = databaseName
        self.lockID = SQLxAdvisoryLock.id(forDatabase: databaseName)
        self.tableName = tableName
    }

    deinit {
        // PostgresConnection asserts it was closed before it is freed: close it and keep it alive
        // until the channel is down, in case `close()` was never called.
        let connection = self.connection
        if !connection.isClosed {
            connection.close().whenComplete { _ in _ = connection }
        }
    }

    /// Connects to `url` (a sqlx `postgres://` URL), failing within `connectTimeout` with one
    /// sentence: unreachable, authentication, missing database.
    public static func connect(
        url: String, connectTimeout: Duration = .seconds(3), tableName: String = defaultMigrationsTable
    ) async throws -> PostgresMigrationDatabase {
        guard case .postgres(let parsed) = try DatabaseURL.parse(url, environment: ExternalCommand.currentEnvironment()) else {
            throw MigrationDatabaseError(.badURL, "'\(url)' is not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
        }
        return try await self.connect(parsed, connectTimeout: connectTimeout, tableName: tableName)
    }

    package static func connect(
        _ url: PostgresURL, connectTimeout: Duration, tableName: String = defaultMigrationsTable
    ) async throws -> PostgresMigrationDatabase {
        var logger = Logger(label: "safe-watch.migrations.postgres")
        logger.logLevel = .critical
        var configuration: PostgresConnection.Configuration
        if let directory = url.socketDirectory {
            configuration = .init(
                unixSocketPath: url.socketPath(directory), username: url.username, password: url.password,
                database: url.database)
        } else {
            configuration = .init(
                host: url.host, port: url.port, username: url.username, password: url.password, database: url.database,
                tls: try tls(for: url))
        }
        // PostgresNIO's own deadline comes half a second later: the race in connectWithin decides,
        // so a timeout always reads the same.
        configuration.options.connectTimeout = .nanoseconds(nanoseconds(connectTimeout) + 500_000_000)
        if let name = url.applicationName { configuration.options.additionalStartupParameters.append(("application_name", name)) }
        if let options = url.options { configuration.options.additionalStartupParameters.append(("options", options)) }

        let connection = try await connectWithin(connectTimeout, configuration: configuration, url: url, logger: logger)
        do {
            let rows = try await collect(connection.query("SELECT current_database()", logger: logger))
            let name = try rows.first?.decode(String.self) ?? url.databaseName
            return PostgresMigrationDatabase(connection: connection, url: url, logger: logger, databaseName: name, tableName: tableName)
        } catch {
            try? await connection.close()
            throw MigrationDatabaseError(.connection, "PostgreSQL at \(url.endpoint) did not answer a first query: \(describe(error))")
        }
    }

    // MARK: MigrationDatabase

    public func appliedMigrations() async throws -> [AppliedMigration] {
        try await self.exclusively {
            guard try await self.tableExists() else { return [] }
            let rows = try await self.rows(
                "SELECT version, description, success, checksum, execution_time FROM \(unescaped: self.tableName) ORDER BY version",
                what: "reading \(self.tableName)")
            return try rows.map { row in
                do {
                    let (version, description, success, checksum, executionTime) = try row.decode(
                        (Int64, String, Bool, ByteBuffer, Int64).self)
                    return AppliedMigration(
                        version: version, description: description, success: success,
                        checksum: Array(checksum.readableBytesView), executionTime: executionTime)
                } catch {
                    throw MigrationDatabaseError(
                        .bookkeeping,
                        "\(self.tableName) in \(self.databaseName) at \(self.url.endpoint) does not have sqlx's columns: \(describe(error))")
                }
            }
        }
    }

    public func apply(_ migration: PendingMigration) async throws -> Duration {
        try await self.exclusively {
            try await self.withAdvisoryLock {
                try await self.execute(
                    """
                    CREATE TABLE IF NOT EXISTS \(unescaped: self.tableName) (
                        version BIGINT PRIMARY KEY,
                        description TEXT NOT NULL,
                        installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
                        success BOOLEAN NOT NULL,
                        checksum BYTEA NOT NULL,
                        execution_time BIGINT NOT NULL
                    )
                    """, what: "creating \(self.tableName)")
                let statements = StatementSplitter.postgres(migration.sql)
                let label = "migration \(migration.version) (\(migration.description))"
                let record: PostgresQuery = """
                    INSERT INTO \(unescaped: self.tableName) ( version, description, success, checksum, execution_time )
                    VALUES ( \(migration.version), \(migration.description), TRUE, \(ByteBuffer(bytes: migration.checksum)), -1 )
                    """
                let clock = ContinuousClock()
                let start = clock.now
                if migration.noTransaction {
                    try await self.runScript(statements, label: label, noTransaction: true)
                    try await self.execute(record, what: "recording \(label) in \(self.tableName) (its SQL has already run)")
                } else {
                    try await self.inTransaction(label: label) {
                        try await self.runScript(statements, label: label, noTransaction: false)
                        try await self.execute(record, what: "recording \(label) in \(self.tableName)")
                    }
                }
                let elapsed = start.duration(to: clock.now)
                // sqlx updates the time after the commit: if this fails the row keeps -1.
                try await self.execute(
                    "UPDATE \(unescaped: self.tableName) SET execution_time = \(nanoseconds(elapsed)) WHERE version = \(migration.version)",
                    what: "recording the execution time of \(label)")
                return elapsed
            }
        }
    }

    public func revert(_ migration: RevertibleMigration) async throws {
        try await self.exclusively {
            try await self.withAdvisoryLock {
                let label = "reverting migration \(migration.version)"
                guard try await self.tableExists(),
                    try await !self.rows(
                        "SELECT 1 FROM \(unescaped: self.tableName) WHERE version = \(migration.version)", what: "reading \(self.tableName)"
                    ).isEmpty
                else {
                    throw MigrationDatabaseError(
                        .notApplied,
                        "migration \(migration.version) is not recorded in \(self.tableName) of \(self.databaseName): nothing reverted")
                }
                let statements = StatementSplitter.postgres(migration.downSQL)
                let delete: PostgresQuery = "DELETE FROM \(unescaped: self.tableName) WHERE version = \(migration.version)"
                if migration.noTransaction {
                    try await self.runScript(statements, label: label, noTransaction: true)
                    try await self.execute(delete, what: "deleting the row of migration \(migration.version) (its down SQL has already run)")
                } else {
                    try await self.inTransaction(label: label) {
                        try await self.runScript(statements, label: label, noTransaction: false)
                        try await self.execute(delete, what: "deleting the row of migration \(migration.version)")
                    }
                }
            }
        }
    }

    /// Takes sqlx's advisory lock until `unlock()`: it waits while a sqlx-based server (or another
    /// safe-watch) migrates this database, calling `waiting` once first so the wait is not silent.
    public func lock(whileWaiting waiting: @Sendable () -> Void) async throws {
        try await self.exclusively {
            guard !self.lockHeld else { return }
            let taken = try await self.rows(
                "SELECT pg_try_advisory_lock(\(self.lockID))", what: "taking sqlx's migration lock \(self.lockID)")
            if try taken.first?.decode(Bool.self) != true {
                waiting()
                try await self.execute("SELECT pg_advisory_lock(\(self.lockID))", what: "taking sqlx's migration lock \(self.lockID)")
            }
            self.lockHeld = true
        }
    }

    public func unlock() async throws {
        try await self.exclusively {
            guard self.lockHeld else { return }
            self.lockHeld = false
            try await self.execute("SELECT pg_advisory_unlock(\(self.lockID))", what: "releasing sqlx's migration lock \(self.lockID)")
        }
    }

    public func replaceChecksum(version: Int64, old: [UInt8], new: [UInt8]) async throws -> Bool {
        try await self.exclusively {
            guard try await self.tableExists() else { return false }
            let rows = try await self.rows(
                """
                UPDATE \(unescaped: self.tableName) SET checksum = \(ByteBuffer(bytes: new))
                WHERE version = \(version) AND checksum = \(ByteBuffer(bytes: old)) RETURNING version
                """, what: "replacing the checksum of migration \(version)")
            return rows.count == 1
        }
    }

    public func backup(to path: String) async throws -> String {
        try await self.exclusively {
            try await PostgresBackup.write(url: self.url, to: path)
        }
    }

    public func close() async {
        guard !self.closed else { return }
        self.closed = true
        try? await self.connection.close()
    }

    /// Runs `sql` and returns every column as text (cast non-text columns with `::text`). For tests
    /// and diagnostics.
    package func queryText(_ sql: String) async throws -> [[String?]] {
        try await self.exclusively {
            let rows = try await self.rows(PostgresQuery(unsafeSQL: sql), what: "running \(sql)")
            return try rows.map { row in try row.map { cell in try cell.decode(String?.self) } }
        }
    }

    // MARK: Internals

    /// One operation at a time: an actor interleaves at every `await`, and a transaction must not.
    private func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        while self.busy {
            await withCheckedContinuation { self.waiting.append($0) }
        }
        guard !self.closed else {
            throw MigrationDatabaseError(.connection, "the connection to \(self.databaseName) at \(self.url.endpoint) was closed")
        }
        self.busy = true
        defer {
            self.busy = false
            if !self.waiting.isEmpty { self.waiting.removeFirst().resume() }
        }
        return try await body()
    }

    private func withAdvisoryLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if self.lockHeld { return try await body() }
        try await self.execute("SELECT pg_advisory_lock(\(self.lockID))", what: "taking sqlx's migration lock \(self.lockID)")
        let result: T
        do {
            result = try await body()
        } catch {
            _ = try? await self.rows("SELECT pg_advisory_unlock(\(self.lockID))", what: "")
            throw error
        }
        try await self.execute("SELECT pg_advisory_unlock(\(self.lockID))", what: "releasing sqlx's migration lock \(self.lockID)")
        return result
    }

    private func inTransaction(label: String, _ body: () async throws -> Void) async throws {
        try await self.execute("BEGIN", what: "starting the transaction of \(label)")
        do {
            try await body()
        } catch let error as MigrationDatabaseError where error.kind == .bookkeeping {
            _ = try? await self.rows("ROLLBACK", what: "")
            throw MigrationDatabaseError(.bookkeeping, "\(error.message); \(label) was rolled back")
        } catch {
            _ = try? await self.rows("ROLLBACK", what: "")
            throw error
        }
        do {
            _ = try await collect(self.connection.query("COMMIT", logger: self.logger))
        } catch {
            throw MigrationDatabaseError(.migrationFailed, "\(label) failed at COMMIT and was rolled back, nothing recorded: \(describe(error))")
        }
    }

    /// Runs the statements of a migration file; failures name the statement.
    private func runScript(_ statements: [String], label: String, noTransaction: Bool) async throws {
        // sqlx sends a -- no-transaction file as one Query: several statements form one implicit
        // transaction.
        let implicitTransaction = noTransaction && statements.count > 1
        if implicitTransaction { try await self.execute("BEGIN", what: "starting \(label)") }
        for (index, statement) in statements.enumerated() {
            do {
                _ = try await collect(self.connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger))
            } catch {
                if implicitTransaction { _ = try? await self.rows("ROLLBACK", what: "") }
                let position = statements.count > 1 ? " at statement \(index + 1) of \(statements.count) (\(excerpt(statement)))" : ""
                let message: String
                if !noTransaction {
                    message = "\(label) failed\(position) and was rolled back, nothing recorded: \(describe(error))"
                } else if implicitTransaction {
                    var text = "\(label) failed\(position): \(describe(error)); it is marked -- no-transaction, but sqlx runs a multi-statement file as one implicit transaction"
                    if sqlState(error) == "25001" {
                        text += ", where this statement cannot run: put it in a migration file of its own"
                    } else {
                        text += " (rolled back unless the file commits itself, so statements before the failure may have been applied)"
                    }
                    message = text + "; nothing was recorded in \(self.tableName)"
                } else {
                    message = "\(label) failed\(position): \(describe(error)); it ran outside a transaction (-- no-transaction), so statements before the failure may have been applied, and nothing was recorded in \(self.tableName)"
                }
                throw MigrationDatabaseError(.migrationFailed, message)
            }
        }
        if implicitTransaction {
            do {
                _ = try await collect(self.connection.query("COMMIT", logger: self.logger))
            } catch {
                throw MigrationDatabaseError(.migrationFailed, "\(label) failed at its implicit COMMIT: \(describe(error)); nothing was recorded")
            }
        }
    }

    private func tableExists() async throws -> Bool {
        let rows = try await self.rows("SELECT to_regclass(\(self.tableName)) IS NOT NULL", what: "looking for \(self.tableName)")
        return try rows.first?.decode(Bool.self) ?? false
    }

    private func execute(_ query: PostgresQuery, what: String) async throws {
        _ = try await self.rows(query, what: what)
    }

    private func rows(_ query: PostgresQuery, what: String) async throws -> [PostgresRow] {
        do {
            return try await collect(self.connection.query(query, logger: self.logger))
        } catch {
            throw MigrationDatabaseError(
                .bookkeeping, "\(what) failed in \(self.databaseName) at \(self.url.endpoint): \(describe(error))")
        }
    }

    private static func tls(for url: PostgresURL) throws -> PostgresConnection.Configuration.TLS {
        guard url.sslMode != "disable" else { return .disable }
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch url.sslMode {
        case "verify-full": configuration.certificateVerification = .fullVerification
        case "verify-ca": configuration.certificateVerification = .noHostnameVerification
        default: configuration.certificateVerification = .none  // libpq's prefer/require do not verify
        }
        if let root = url.sslRootCertificate { configuration.trustRoots = .file(root) }
        do {
            let context = try NIOSSLContext(configuration: configuration)
            return url.sslMode == "prefer" || url.sslMode == "allow" ? .prefer(context) : .require(context)
        } catch {
            throw MigrationDatabaseError(.badURL, "cannot set up TLS for sslmode=\(url.sslMode): \(error)")
        }
    }

    /// Connects, giving up after `timeout` even when the TCP connection succeeded and the server
    /// never answers the startup.
    private static func connectWithin(
        _ timeout: Duration, configuration: PostgresConnection.Configuration, url: PostgresURL, logger: Logger
    ) async throws -> PostgresConnection {
        let outcome: PostgresConnection? = try await withThrowingTaskGroup(of: PostgresConnection?.self) { group in
            group.addTask {
                do {
                    return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                } catch {
                    throw classifyConnectError(error, url: url, timeout: timeout)
                }
            }
            group.addTask {
                await sleepForTimeout(timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            if first == nil {
                // Timed out: a connection that still completes must be closed, not leaked.
                while let late = try? await group.next() {
                    if let late { try? await late.close() }
                }
            }
            return first
        }
        guard let outcome else {
            throw MigrationDatabaseError(
                .unreachable, "cannot reach PostgreSQL at \(url.endpoint): no answer within \(seconds(timeout))")
        }
        return outcome
    }
}

/// One sentence for a failed connection attempt.
func classifyConnectError(_ error: any Error, url: PostgresURL, timeout: Duration) -> MigrationDatabaseError {
    guard let error = error as? PSQLError else {
        if error is CancellationError {
            return MigrationDatabaseError(.unreachable, "cannot reach PostgreSQL at \(url.endpoint): no answer within \(seconds(timeout))")
        }
        return MigrationDatabaseError(.unreachable, "cannot reach PostgreSQL at \(url.endpoint): \(networkReason(error, timeout: timeout))")
    }
    switch error.code {
    case .server:
        let state = error.serverInfo?[.sqlState] ?? ""
        let message = error.serverInfo?[.message] ?? "no message"
        switch state {
        case "28P01", "28000":
            return MigrationDatabaseError(
                .authentication, "PostgreSQL at \(url.endpoint) rejected user '\(url.username)': \(message)")
        case "3D000":
            return MigrationDatabaseError(
                .databaseMissing,
                "PostgreSQL at \(url.endpoint) has no database '\(url.databaseName)' (create it with createdb or sqlx database create): \(message)")
        case "57P03":
            return MigrationDatabaseError(.unreachable, "PostgreSQL at \(url.endpoint) is not accepting connections yet: \(message)")
        default:
            return MigrationDatabaseError(.connection, "PostgreSQL at \(url.endpoint) refused the connection: \(message) (SQLSTATE \(state))")
        }
    case .authMechanismRequiresPassword:
        return MigrationDatabaseError(
            .authentication, "PostgreSQL at \(url.endpoint) asks for a password for user '\(url.username)' and the URL has none")
    case .saslError:
        return MigrationDatabaseError(
            .authentication, "PostgreSQL at \(url.endpoint) rejected user '\(url.username)': password authentication (SCRAM) failed")
    case .unsupportedAuthMechanism:
        return MigrationDatabaseError(
            .authentication, "PostgreSQL at \(url.endpoint) asks user '\(url.username)' for an authentication method safe-watch does not support (use password or SCRAM authentication)")
    case .sslUnsupported:
        return MigrationDatabaseError(
            .connection, "PostgreSQL at \(url.endpoint) does not offer TLS, which sslmode=\(url.sslMode) requires: use sslmode=prefer or disable")
    case .connectionError:
        return MigrationDatabaseError(
            .unreachable, "cannot reach PostgreSQL at \(url.endpoint): \(networkReason(error.underlying, timeout: timeout))")
    case .serverClosedConnection, .uncleanShutdown:
        return MigrationDatabaseError(
            .unreachable, "cannot reach PostgreSQL at \(url.endpoint): the server closed the connection during startup (is it PostgreSQL?)")
    default:
        return MigrationDatabaseError(.connection, "cannot connect to PostgreSQL at \(url.endpoint): \(describe(error))")
    }
}

private func networkReason(_ error: (any Error)?, timeout: Duration) -> String {
    guard let error else { return "the connection failed" }
    if let error = error as? ChannelError, case .connectTimeout = error {
        return "no answer within \(seconds(timeout))"
    }
    if let error = error as? NIOConnectionError {
        if let first = error.connectionErrors.first { return networkReason(first.error, timeout: timeout) }
        return "the host name '\(error.host)' does not resolve"
    }
    if let error = error as? IOError {
        return Errno(rawValue: error.errnoCode).description.lowercased()
    }
    return "\(error)"
}

/// The server's message for a PSQLError (its description hides it), else the error's description.
func describe(_ error: any Error) -> String {
    if let error = error as? MigrationDatabaseError { return error.message }
    if let error = error as? PSQLError {
        if let info = error.serverInfo {
            var text = info[.message] ?? "error"
            if let detail = info[.detail] { text += " (\(detail))" }
            if let hint = info[.hint] { text += " hint: \(hint)" }
            if let state = info[.sqlState] { text += " [SQLSTATE \(state)]" }
            return text
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
    return "\(error)"
}

func sqlState(_ error: any Error) -> String? {
    (error as? PSQLError)?.serverInfo?[.sqlState]
}

/// The first line of a statement, shortened, for error messages.
func excerpt(_ statement: String) -> String {
    let lines = statement.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
        .map { String($0).trimmingSpaces() }
        .filter { !$0.isEmpty && !$0.hasPrefix("--") }
    let first = lines.first ?? statement.trimmingSpaces()
    if first.count > 60 { return "`" + first.prefix(57) + "…`" }
    return lines.count > 1 ? "`\(first) …`" : "`\(first)`"
}

func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}

func seconds(_ duration: Duration) -> String {
    let milliseconds = nanoseconds(duration) / 1_000_000
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000) s" }
    return "\(Double(milliseconds) / 1000) s"
}

private func collect(_ sequence: PostgresRowSequence) async throws -> [PostgresRow] {
    var rows: [PostgresRow] = []
    for try await row in sequence { rows.append(row) }
    return rows
}
