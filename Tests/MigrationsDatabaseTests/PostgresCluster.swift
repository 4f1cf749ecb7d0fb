import Testing

@testable import SafeWatchMigrationsDatabase

/// The throwaway PostgreSQL cluster the Postgres suite shares: started once by
/// script/postgres-test-cluster (initdb + `pg_ctl start -w`, so it is ready when the URL comes
/// back) and stopped when the suite ends.
actor PostgresCluster {
    static let shared = PostgresCluster()

    private var starting: Task<(url: String, directory: String), any Error>?
    private var users = 0

    /// The superuser URL (`postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable`). Throws the
    /// script's message when the cluster cannot start — e.g. "run 'apt-get install postgresql'".
    func url() async throws -> String {
        try await self.start().url
    }

    /// The cluster's directory, which holds its unix socket.
    func directory() async throws -> String {
        try await self.start().directory
    }

    /// A URL for database `name` on the cluster.
    func url(database name: String) async throws -> String {
        try await self.url().replacing("/postgres?", with: "/\(name)?")
    }

    /// A new, empty database named `name` (dropped first if a previous run left it).
    func freshDatabase(_ name: String) async throws -> String {
        let admin = try await PostgresMigrationDatabase.connect(url: try await self.url())
        _ = try await admin.queryText("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        _ = try await admin.queryText("CREATE DATABASE \(name)")
        await admin.close()
        return try await self.url(database: name)
    }

    func acquire() {
        self.users += 1
    }

    func release() async {
        self.users -= 1
        guard self.users == 0, let starting = self.starting else { return }
        self.starting = nil
        if let started = try? await starting.value {
            _ = try? await ExternalCommand.run("/bin/bash", [scriptPath("postgres-test-cluster"), "stop", started.directory])
        }
    }

    private func start() async throws -> (url: String, directory: String) {
        if let starting = self.starting { return try await starting.value }
        let task = Task { () throws -> (url: String, directory: String) in
            let directory = try makeTemporaryDirectory("safe-watch-pg")
            let result = try await ExternalCommand.run("/bin/bash", [scriptPath("postgres-test-cluster"), "start", directory])
            guard result.succeeded, let url = result.standardOutput.last(where: { $0.hasPrefix("postgres://") }) else {
                await removeTree(directory)
                throw ClusterUnavailable(
                    message: "the PostgreSQL test cluster did not start (\(result.outcome)): \(result.standardError.joined(separator: " / "))")
            }
            return (url, directory)
        }
        self.starting = task
        return try await task.value
    }
}

struct ClusterUnavailable: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}

/// Starts the shared cluster around a whole suite and stops it afterwards. A cluster that cannot
/// start is not an error here: every test then fails on its own with the script's message.
struct PostgresClusterScope: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        await PostgresCluster.shared.acquire()
        do {
            try await function()
        } catch {
            await PostgresCluster.shared.release()
            throw error
        }
        await PostgresCluster.shared.release()
    }
}

extension Trait where Self == PostgresClusterScope {
    static var postgresCluster: Self { Self() }
}
