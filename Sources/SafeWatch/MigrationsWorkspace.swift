import Foundation
import SafeWatchCore
import SafeWatchMigrations
import SafeWatchSystem

/// The migrations directory on disk: reads it into the pure model, finds the bytes an edited file
/// had before (git history, or safe-watch's snapshot), and writes the sum file.
public struct MigrationsWorkspace: Sendable {
    /// The project directory (git runs there).
    public var projectDirectory: String
    /// The migrations directory, absolute.
    public var directory: String
    public var launcher: ChildLauncher

    /// Told the path and bytes of every file about to be written (the supervisor's `ContentLedger`,
    /// so that its own writes are not taken for edits).
    public var willWrite: @Sendable (_ path: String, _ contents: Data) -> Void

    public init(
        projectDirectory: String, directory: String, launcher: ChildLauncher,
        willWrite: @escaping @Sendable (_ path: String, _ contents: Data) -> Void = { _, _ in }
    ) {
        self.projectDirectory = projectDirectory
        self.directory = directory.hasPrefix("/") ? directory : projectDirectory + "/" + directory
        self.launcher = launcher
        self.willWrite = willWrite
    }

    public var sumFilePath: String { self.directory + "/" + MigrationDirectory.sumFileName }

    /// Where safe-watch keeps a copy of every migration it has seen, by checksum, so an edit can be
    /// classified even when the old bytes were never committed.
    var snapshotDirectory: String { self.projectDirectory + "/.safe-watch/migrations" }

    public struct MissingDirectory: Error, CustomStringConvertible {
        public var path: String
        public var description: String {
            "the migrations directory \(self.path) does not exist; create it (`safe-watch migrations add NAME` does) or set [migrations] dir in safe-watch.toml"
        }
    }

    /// The project's sqlx.toml (where sqlx-cli reads it): its `[migrate]` settings change the table
    /// and the checksums, so they apply here too. Defaults when there is none.
    public func sqlxConfiguration() throws -> SQLxConfiguration {
        let path = self.projectDirectory + "/" + SQLxConfiguration.fileName
        guard let data = FileManager.default.contents(atPath: path) else { return SQLxConfiguration() }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(file: path, message: "not UTF-8")
        }
        return try SQLxConfiguration(parsing: text, fileName: path)
    }

    /// Reads the directory's top level (sqlx ignores subdirectories).
    public func read() throws -> MigrationDirectory {
        let ignored = try self.sqlxConfiguration().ignoredCharacters
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: self.directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MissingDirectory(path: self.directory)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: self.directory)
        let entries = names.map { name -> DirectoryEntry in
            let path = self.directory + "/" + name
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            if isDirectory.boolValue { return DirectoryEntry(name: name, isDirectory: true, bytes: nil) }
            return DirectoryEntry(name: name, bytes: FileManager.default.contents(atPath: path).map { Array($0) })
        }
        return MigrationDirectory(entries: entries, now: Self.utcNow(), ignoredCharacters: ignored)
    }

    /// Now as `YYYYMMDDHHMMSS` in UTC, sqlx's timestamp version format.
    static func utcNow() -> Int64? {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMddHHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.locale = Locale(identifier: "en_US_POSIX")
        return Int64(formatter.string(from: Date()))
    }

    /// The sum file: nil when absent, `.failure` when it cannot be trusted.
    public func readSumFile() -> Result<SumFile, SumFile.ParseError>? {
        guard let data = FileManager.default.contents(atPath: self.sumFilePath) else { return nil }
        guard let text = String(data: data, encoding: .utf8) else {
            return .failure(SumFile.ParseError(line: 1, message: "not UTF-8"))
        }
        return Result { () throws(SumFile.ParseError) in try SumFile(parsing: text) }
    }

    public func writeSumFile(_ sum: SumFile) throws {
        let contents = Data(sum.rendered.utf8)
        self.willWrite(self.sumFilePath, contents)
        try contents.write(to: URL(fileURLWithPath: self.sumFilePath), options: .atomic)
    }

    /// Keeps a copy of each file's bytes under its checksum.
    public func snapshot(_ directory: MigrationDirectory) {
        try? FileManager.default.createDirectory(atPath: self.snapshotDirectory, withIntermediateDirectories: true)
        for file in directory.files {
            let path = self.snapshotDirectory + "/" + hex(file.checksum)
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: Data(file.bytes))
            }
        }
    }

    /// Validates, looking up the previous bytes of modified files in the snapshot and git history.
    public func validate(
        strict: Bool, ignoreMissing: Bool = false, applied: [AppliedMigration]?
    ) async throws -> (MigrationDirectory, ValidationReport) {
        let directory = try self.read()
        let sum = self.readSumFile()
        let first = Validator(strict: strict, ignoreMissing: ignoreMissing).validate(directory, sumFile: sum, applied: applied)
        let modified = first.findings.filter { $0.rule == .modified && $0.modification == .unknown }
        guard !modified.isEmpty else { return (directory, first) }
        var previous: [String: [UInt8]] = [:]
        for finding in modified {
            guard let name = finding.file else { continue }
            let recorded = applied?.first { $0.version == finding.version }?.checksum
                ?? (try? sum?.get())?.checksum(of: name)
            guard let recorded else { continue }
            if let bytes = await self.previousBytes(name: name, checksum: recorded, ignoring: directory.ignoredCharacters) {
                previous[name + hex(recorded)] = bytes
            }
        }
        let found = previous
        let report = Validator(strict: strict, ignoreMissing: ignoreMissing, previousBytes: { name, checksum in found[name + hex(checksum)] })
            .validate(directory, sumFile: sum, applied: applied)
        return (directory, report)
    }

    /// The bytes `name` had when its checksum was `checksum`: from the snapshot, else from the
    /// file's git history (newest first, at most 50 revisions).
    func previousBytes(name: String, checksum: [UInt8], ignoring: Set<Unicode.Scalar>) async -> [UInt8]? {
        if let data = FileManager.default.contents(atPath: self.snapshotDirectory + "/" + hex(checksum)) {
            return Array(data)
        }
        guard let git = ProjectLoader.findExecutable("git") else { return nil }
        let relative = self.directory.hasPrefix(self.projectDirectory + "/")
            ? String(self.directory.dropFirst(self.projectDirectory.count + 1)) + "/" + name : name
        let (status, log) = await runCapturing(
            launcher: self.launcher, executable: git, arguments: ["log", "-n", "50", "--format=%H", "--", relative],
            directory: self.projectDirectory)
        guard status == .exited(0) else { return nil }
        for revision in log.split(separator: "\n") {
            let (shown, bytes) = await runCapturingBytes(
                launcher: self.launcher, executable: git, arguments: ["show", "\(revision):\(relative)"],
                directory: self.projectDirectory)
            if shown == .exited(0), sqlxChecksum(bytes, ignoring: ignoring) == checksum { return bytes }
        }
        return nil
    }
}
