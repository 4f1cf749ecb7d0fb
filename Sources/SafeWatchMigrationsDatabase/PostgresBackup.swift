import Glibc

/// `pg_dump --format=custom`, verified with `pg_restore --list`.
enum PostgresBackup {
    /// `timeout` bounds pg_dump and pg_restore each: a dump waits for every table's lock, forever
    /// by default, behind a session that holds one.
    static func write(url: PostgresURL, to path: String, timeout: Duration = .seconds(600)) async throws -> String {
        // Whole seconds in the messages: this module does without SafeWatchCore's formatting.
        let file = absolutePath(path)
        if fileExists(file) {
            throw MigrationDatabaseError(.backupFailed, "the backup file \(file) already exists: choose another path (a backup is never overwritten)")
        }
        let directories = ExternalCommand.postgresBinaryDirectories()
        guard let pgDump = ExternalCommand.find("pg_dump", preferring: directories),
            let pgRestore = ExternalCommand.find("pg_restore", preferring: directories)
        else {
            throw MigrationDatabaseError(
                .toolMissing,
                "pg_dump and pg_restore were not found in /usr/lib/postgresql/*/bin or on PATH: install the PostgreSQL client tools (apt-get install postgresql-client)")
        }
        // The password goes in the environment, never on a command line other users can read.
        var environment = ["PGCONNECT_TIMEOUT": "10"]
        if let password = url.password { environment["PGPASSWORD"] = password }
        let dump = try await ExternalCommand.run(
            pgDump, ["--format=custom", "--no-password", "--file", file, "--dbname", url.libpqURL], environment: environment,
            timeout: timeout)
        guard dump.succeeded else {
            _ = unlink(file)
            guard let status = dump.status else {
                throw MigrationDatabaseError(
                    .backupFailed,
                    "pg_dump of \(url.databaseName) at \(url.endpoint) did not finish within \(timeout.components.seconds) s and was stopped; "
                        + "a session holding a lock on a table can block it (see pg_stat_activity), or the database is too large to back up here: "
                        + "back it up yourself and run again without the backup")
            }
            throw MigrationDatabaseError(
                .backupFailed, "pg_dump of \(url.databaseName) at \(url.endpoint) failed (\(status)): \(dump.diagnostic)")
        }
        let list = try await ExternalCommand.run(pgRestore, ["--list", file], timeout: timeout)
        guard list.succeeded, list.standardOutput.contains(where: { !$0.trimmingSpaces().isEmpty }) else {
            let why = switch list.status {
            case .exited(0): "printed nothing"
            case nil: "did not finish within \(timeout.components.seconds) s and was stopped"
            case .some(let status): "failed (\(status)): \(list.diagnostic)"
            }
            throw MigrationDatabaseError(.backupFailed, "the backup \(file) does not verify: pg_restore --list \(why)")
        }
        return "pg_restore --clean --if-exists --dbname \(shellQuoted(url.libpqURL)) \(shellQuoted(file))"
    }
}

/// `path` made absolute against the current directory.
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    let directory = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var relative = Substring(path)
    while relative.hasPrefix("./") { relative = relative.dropFirst(2) }
    return (directory == "/" ? "" : directory) + "/" + relative
}

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}
