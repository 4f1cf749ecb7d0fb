// swift-tools-version:6.2
import PackageDescription

/// script/test (and CI) builds with every warning an error; a plain `swift build` does not, so a
/// newer toolchain's new warning never stops a user.
let strict: [SwiftSetting] = Context.environment["SAFE_WATCH_STRICT"] == "1" ? [.treatAllWarnings(as: .error)] : []

let package = Package(
    name: "safe-watch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "safe-watch", targets: ["safe-watch"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // Processes and system calls: spawn, reap, signal, tear down, find in /proc; `Syscall`,
        // `Errno`, `FileDescriptor`, output pipes. Only the C shims and swift-log below it, so the
        // migrations runner uses it without the configuration (TOMLKit) or NIO.
        .target(
            name: "SafeWatchProcesses",
            dependencies: ["CSafeWatchShims", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Pure decisions: config model, the Supervisor state machine, change classification,
        // debounce, diagnostics, health policy. No I/O, no clocks, no processes. From
        // SafeWatchProcesses it imports only values (`ExitStatus`, signal names), by scoped imports.
        .target(
            name: "SafeWatchCore",
            dependencies: ["SafeWatchProcesses", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict
        ),
        // Pure: migration files, sqlx checksums, the sum file, rules and verdicts.
        .target(
            name: "SafeWatchMigrations",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // `_sqlx_migrations` in PostgreSQL and SQLite: read, apply, revert, checksum fix, backup.
        .target(
            name: "SafeWatchMigrationsDatabase",
            dependencies: [
                "SafeWatchMigrations",
                "SafeWatchProcesses",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ],
            swiftSettings: strict
        ),
        // C helpers that need _GNU_SOURCE (posix_spawn_file_actions_addclosefrom_np,
        // POSIX_SPAWN_SETSID) or macros Swift cannot import (prctl options).
        .target(name: "CSafeWatchShims"),
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // Linux adapters: inotify, polling, sockets, systemd, privileges, the hard stop. Logging: for
        // what an adapter can only report as it happens (a watcher that lost events).
        .target(
            name: "SafeWatchSystem",
            dependencies: [
                "SafeWatchCore", "SafeWatchProcesses", "CSafeWatchShims", "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The runtime: supervisor actor, builder, launcher, prober, HTTP proxy, log handler.
        .target(
            name: "SafeWatch",
            dependencies: [
                "SafeWatchCore",
                "SafeWatchProcesses",
                "SafeWatchSystem",
                "SafeWatchMigrations",
                "SafeWatchMigrationsDatabase",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "safe-watch",
            dependencies: [
                "SafeWatch",
                "SafeWatchCore",
                "SafeWatchProcesses",
                "SafeWatchSystem",
                "SafeWatchMigrations",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Waiting on readiness in tests: shared by the process, system and integration tests.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "SafeWatchProcessesTests", dependencies: ["SafeWatchProcesses", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "SafeWatchCoreTests", dependencies: ["SafeWatchCore"], swiftSettings: strict),
        .testTarget(name: "SafeWatchMigrationsTests", dependencies: ["SafeWatchMigrations"], swiftSettings: strict),
        .testTarget(
            name: "MigrationsDatabaseTests",
            dependencies: ["SafeWatchMigrationsDatabase", "SafeWatchMigrations", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(name: "SafeWatchSystemTests", dependencies: ["SafeWatchSystem", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "SafeWatchTests",
            dependencies: [
                "SafeWatch", "SafeWatchSystem", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "safe-watch", "SafeWatchCore", "SafeWatchProcesses", "SafeWatchSystem", "TestSupport",
                // SHA-256 of the bodies the proxy conformance tests send and receive.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
