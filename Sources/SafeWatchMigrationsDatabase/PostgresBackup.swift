import Glibc

/// `pg_dump --format=custom`, verified with `pg_restore --list`.
enum PostgresBackup {
    static func write(url: PostgresURL, to path: String) async throws -> String {
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
            pgDump, ["--format=custom", "--no-password", "--file", file, "--dbname", url.libpqURL], environment: environment)
        guard dump.succeeded else {
            _ = unlink(file)
            throw MigrationDatabaseError(
                .backupFailed, "pg_dump of \(url.databaseName) at \(url.endpoint) failed (\(dump.status)): \(dump.diagnostic)")
        }
        let list = try await ExternalCommand.run(pgRestore, ["--list", file])
        guard list.succeeded, list.standardOutput.contains(where: { !$0.trimmingSpaces().isEmpty }) else {
            throw MigrationDatabaseError(
                .backupFailed,
                "the backup \(file) does not verify: pg_restore --list \(list.succeeded ? "printed nothing" : "failed (\(list.status)): \(list.diagnostic)")")
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
