/// Why a database operation failed, as one sentence a user can act on (`description`).
public struct MigrationDatabaseError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Equatable, Sendable {
        /// The URL cannot be understood (scheme, syntax, parameter).
        case badURL
        /// Nothing answered at the host and port (refused, timed out, unknown host).
        case unreachable
        /// The server rejected the user or the password.
        case authentication
        /// The server is up but the database named in the URL does not exist.
        case databaseMissing
        /// The SQLite file does not exist (and was not created).
        case fileMissing
        /// Opening or talking to the database failed for another reason.
        case connection
        /// A migration's own SQL failed; nothing was recorded.
        case migrationFailed
        /// Reading or writing `_sqlx_migrations` failed.
        case bookkeeping
        /// `revert` of a version that has no row.
        case notApplied
        /// The backup could not be written or did not verify.
        case backupFailed
        /// A program the operation needs (pg_dump, pg_restore) is not installed.
        case toolMissing
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { self.message }
}
