import SafeWatchCore
import Testing

/// sqlx 0.9's sqlx.toml, as sqlx-cli main reads its `[migrate]` table (kebab-case keys).
@Suite struct SQLxConfigurationTests {
    @Test func migrateSettingsAreRead() throws {
        let text = """
            [common]
            database-url-var = "APP_DATABASE_URL"

            [migrate]
            table-name = "audit._sqlx_migrations"
            migrations-dir = "db/migrations"
            # Space, tab, CR, LF, BOM
            ignored-chars = [" ", "\\t", "\\r", "\\n", "\\uFEFF"]

            [migrate.defaults]
            migration-type = "reversible"
            migration-versioning = "sequential"
            """
        let sqlx = try SQLxConfiguration(parsing: text)
        #expect(sqlx.tableName == "audit._sqlx_migrations")
        #expect(sqlx.migrationsDir == "db/migrations")
        #expect(sqlx.ignoredCharacters == [" ", "\t", "\r", "\n", "\u{FEFF}"])
        #expect(sqlx.defaultMigrationType == .reversible && sqlx.defaultVersioning == .sequential)
        #expect(try SQLxConfiguration(parsing: "[macros]\ndatetime-crate = \"time\"\n") == SQLxConfiguration())
        #expect(SQLxConfiguration().tableName == "_sqlx_migrations")
    }

    @Test func mistakesAreNamedWithTheFix() {
        func problem(_ text: String) -> String {
            do {
                _ = try SQLxConfiguration(parsing: text)
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(problem("[migrate]\nignored_chars = [\"\\r\"]\n")
            == "sqlx.toml:2: migrate.ignored_chars: sqlx reads `ignored-chars`, not `ignored_chars`: rename the key (sqlx ignores it as written)")
        #expect(problem("[migrate]\nignored-chars = [\"\\r\\n\"]\n").hasPrefix("sqlx.toml:2: migrate.ignored-chars: \"\r\n\" is not one character"))
        #expect(problem("[migrate]\ntable-name = \"\"\n") == "sqlx.toml:2: migrate.table-name: must not be empty")
        #expect(problem("[migrate.defaults]\nmigration-type = \"both\"\n").contains("migrate.defaults.migration-type: unknown value \"both\""))
    }

    @Test func ignoreMissingIsAMigrationsKey() throws {
        let loaded = try ConfigurationLoader(fileName: "safe-watch.toml").load("[migrations]\nignore_missing = true\n")
        #expect(loaded.migrations.ignoreMissing)
        #expect(Configuration().migrations.ignoreMissing == false)
    }
}
