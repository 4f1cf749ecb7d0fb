import ArgumentParser
import Foundation
import Glibc
import SafeWatch
import SafeWatchCore
import SafeWatchMigrations
import SafeWatchProcesses
import SafeWatchSystem

extension SafeWatchCommand {
    struct Migrations: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate, record, create and apply sqlx-format migrations.",
            discussion: """
                The migrations directory (--dir, else [migrations] dir in safe-watch.toml, else migrations/) and the \
                database (--database-url, else [migrations] database_url, else $DATABASE_URL) are the ones \
                `safe-watch run` uses. The directory uses sqlx's layout: \
                <VERSION>_<description>.sql, or .up.sql + .down.sql. migrations/safe-watch.sum records \
                every file's checksum (commit it): an edit, deletion or rename of a recorded migration is \
                caught without a database. Use `validate --strict` in CI and as a pre-commit hook.
                """,
            subcommands: [Validate.self, Hash.self, Add.self, Run.self, Revert.self, Info.self, FixChecksum.self]
        )
    }

    struct MigrationOptions: ParsableArguments {
        @OptionGroup var project: ConfiguredProjectOptions

        @Option(
            name: .long,
            help: ArgumentHelp(
                "The migrations directory, relative to the project (default: [migrations] dir, else migrations).", valueName: "dir"))
        var dir: String?

        @Option(
            name: .long,
            help: ArgumentHelp("postgres://… or sqlite:… (default: [migrations] database_url, else $DATABASE_URL).", valueName: "url"))
        var databaseURL: String?

        /// `[migrations]` of the project's configuration (the defaults without one), so these
        /// commands check the directory and database `safe-watch run` gates on, and the tool for
        /// them. A configuration that does not load ends the command, as it would end `run`.
        func load() -> (tool: MigrationsTool, settings: Configuration.Migrations) {
            let settings: Configuration.Migrations
            do {
                settings = try ProjectLoader.configuration(in: self.project.configurationFile, given: self.project.config)?.migrations
                    ?? Configuration.Migrations()
            } catch {
                writeToStandardError("safe-watch: \(error)\n")
                _exit(error.exitCode)
            }
            let launcher = ChildLauncher()
            Reaper.shared.start()
            let url = self.databaseURL ?? settings.databaseURL
                ?? ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
            let tool = MigrationsTool(
                workspace: MigrationsWorkspace(projectDirectory: self.project.directory, directory: self.dir ?? settings.dir, launcher: launcher),
                databaseURL: url, print: { writeToStandardOutput($0 + "\n") })
            return (tool, settings)
        }

        func tool() -> MigrationsTool { self.load().tool }
    }
}


extension SafeWatchCommand.Migrations {
    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the migrations (and the database, if given); exit 1 on BLOCK.")
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        @Flag(help: "Warnings block too (for CI).") var strict = false
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Applied versions with no file here (another branch's) do not block, as with sqlx's --ignore-missing.")
        var ignoreMissing = false
        @Flag(help: "Also run the build command (build.command, or swift build).") var build = false
        func run() async throws {
            let (tool, settings) = self.options.load()
            let ignoreMissing = self.ignoreMissing || settings.ignoreMissing
            var code = await tool.validate(strict: self.strict, json: self.json, ignoreMissing: ignoreMissing)
            if self.build {
                let project = try? await ProjectLoader(
                    directory: tool.workspace.projectDirectory, configurationFile: self.options.project.config, launcher: tool.workspace.launcher,
                    overrides: { _ in }
                ).load()
                let built = await tool.build(command: project?.configuration.buildCommand ?? "swift build")
                code = max(code, built)
            }
            _exit(code)
        }
    }

    struct Hash: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rewrite migrations/safe-watch.sum from the files.")
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        @Flag(help: "Record changed or removed entries too.") var force = false
        func run() async throws { _exit(self.options.tool().hash(force: self.force)) }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the next migration file(s), named as sqlx-cli names them.",
            discussion: """
                Without flags (or sqlx.toml's [migrate.defaults]), the version is sequential (the newest + 1, \
                4 digits) when the two newest versions differ by one or the only one is 0 or 1, else the UTC \
                time; the migration is a .up.sql/.down.sql pair when the newest one is. Spaces in the \
                description become _.
                """)
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        @Argument(help: "What the migration does, e.g. create_users.") var name: String
        @Flag(name: [.short, .long], help: "Create .up.sql and .down.sql.") var reversible = false
        @Flag(help: "Create a single .sql file.") var simple = false
        @Flag(name: [.short, .long], help: "Version YYYYMMDDHHMMSS (UTC).") var timestamp = false
        @Flag(name: [.short, .long], help: "Version = the newest one + 1.") var sequential = false
        func validate() throws {
            if self.timestamp && self.sequential { throw ValidationError("--timestamp and --sequential exclude each other") }
            if self.reversible && self.simple { throw ValidationError("--reversible and --simple exclude each other") }
        }
        func run() async throws {
            let versioning: NewMigration.Versioning = self.timestamp ? .timestamp : (self.sequential ? .sequential : .inferred)
            let shape: NewMigration.Shape = self.reversible ? .reversible : (self.simple ? .simple : .inferred)
            _exit(self.options.tool().add(name: self.name, shape: shape, versioning: versioning))
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply the pending migrations (sqlx-compatible).")
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        @Option(help: ArgumentHelp("Back the database up into this directory first (default: [migrations] backup_dir when backup = true).", valueName: "dir"))
        var backup: String?
        @Flag(help: "Applied versions with no file here (another branch's) do not block, as with sqlx's --ignore-missing.")
        var ignoreMissing = false
        func run() async throws {
            let (tool, settings) = self.options.load()
            let configured = settings.backupDir.hasPrefix("/") ? settings.backupDir : self.options.project.directory + "/" + settings.backupDir
            let backup = self.backup ?? (settings.backup ? configured : nil)
            _exit(await tool.run(backupDirectory: backup, ignoreMissing: self.ignoreMissing || settings.ignoreMissing))
        }
    }

    struct Revert: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revert the newest applied migration that has a .down.sql (newer simple ones stay, as with sqlx).")
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        @Flag(help: "Applied versions with no file here (another branch's) do not block, as with sqlx's --ignore-missing.")
        var ignoreMissing = false
        func run() async throws {
            let (tool, settings) = self.options.load()
            _exit(await tool.revert(ignoreMissing: self.ignoreMissing || settings.ignoreMissing))
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every version: applied, pending, modified or missing.")
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        func run() async throws { _exit(await self.options.tool().info()) }
    }

    struct FixChecksum: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fix-checksum",
            abstract: "Record an edited migration's new checksum, only when the edit is proven equivalent.")
        @OptionGroup var options: SafeWatchCommand.MigrationOptions
        @Argument(help: "The version to fix.") var version: Int64
        @Flag(help: "Also when the statements changed (you made the database match by hand).") var force = false
        func run() async throws { _exit(await self.options.tool().fixChecksum(version: self.version, force: self.force)) }
    }
}

/// Writes straight to fd 1.
func writeToStandardOutput(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { Glibc.write(1, $0.baseAddress! + offset, $0.count - offset) }
        if written <= 0 { return }
        offset += written
    }
}
