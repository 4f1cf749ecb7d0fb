import Glibc
import SafeWatchMigrations
import Testing

@testable import SafeWatchMigrationsDatabase

/// A pending migration built from a file name and contents the way the directory reader does
/// (version and description from the name, sqlx's checksum of the exact bytes).
func pending(_ name: String, _ sql: String) -> PendingMigration {
    let stem = name.hasSuffix(".up.sql") ? String(name.dropLast(7)) : String(name.dropLast(4))
    let parts = stem.split(separator: "_", maxSplits: 1)
    let file = MigrationFile(
        name: name, version: Int64(parts[0])!, description: parts.count > 1 ? String(parts[1].replacing("_", with: " ")) : "",
        kind: name.hasSuffix(".up.sql") ? .up : .simple, bytes: Array(sql.utf8))
    return PendingMigration(
        version: file.version, description: file.description, sql: sql, checksum: file.checksum, noTransaction: file.noTransaction)
}

func revertible(_ version: Int64, _ sql: String) -> RevertibleMigration {
    RevertibleMigration(version: version, downSQL: sql, noTransaction: sql.hasPrefix("-- no-transaction"))
}

/// A new empty directory under /tmp.
func makeTemporaryDirectory(_ prefix: String = "safe-watch-db") throws -> String {
    var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
    guard let result = mkdtemp(&template) else {
        throw MigrationDatabaseError(.connection, "mkdtemp failed: \(String(cString: strerror(errno)))")
    }
    return String(cString: result)
}

/// Runs `body` with a new directory under /tmp, removed afterwards whatever happens.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = try makeTemporaryDirectory()
    do {
        let result = try await body(directory)
        await removeTree(directory)
        return result
    } catch {
        await removeTree(directory)
        throw error
    }
}

func removeTree(_ path: String) async {
    _ = try? await ExternalCommand.run("/bin/rm", ["-rf", path])
}

func exists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}

/// Runs `command` with /bin/sh -c; fails the test with its output when it does not succeed.
func shell(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let result = try await ExternalCommand.run("/bin/sh", ["-c", command])
    #expect(result.succeeded, "\(command) → \(result.outcome): \(result.diagnostic)", sourceLocation: sourceLocation)
}

/// The error `body` throws, as a MigrationDatabaseError (a test failure if it throws another or none).
func migrationError(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> MigrationDatabaseError? {
    do {
        try await body()
        Issue.record("expected a MigrationDatabaseError, nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as MigrationDatabaseError {
        return error
    } catch {
        Issue.record("expected a MigrationDatabaseError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The path of the repository's script/ directory.
func scriptPath(_ name: String, file: String = #filePath) -> String {
    var components = file.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(3)  // Tests/MigrationsDatabaseTests/Support.swift
    return components.joined(separator: "/") + "/script/" + name
}

/// `CREATE TABLE t (id int);\n`: the reference checksum example (SHA-384 starts e1cc0b49).
let referenceSQL = "CREATE TABLE t (id int);\n"
