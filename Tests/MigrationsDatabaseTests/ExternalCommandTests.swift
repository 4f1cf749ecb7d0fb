import Testing

@testable import SafeWatchMigrationsDatabase

/// pg_dump and pg_restore run through `ExternalCommand`: bounded in time, stopped with their group.
@Suite struct ExternalCommandTests {
    @Test func aCommandThatOutlivesItsTimeoutIsStoppedWithItsGroup() async throws {
        // The shell ignores SIGTERM (SIGKILL follows) and its child keeps the output pipe open:
        // `run` returns only once both are gone.
        let result = try await ExternalCommand.run(
            "/bin/sh", ["-c", "trap '' TERM; sleep 60 & echo started; wait"], timeout: .milliseconds(500))
        #expect(result.status == nil)
        #expect(result.standardOutput == ["started"])
    }

    @Test func aCommandWithinItsTimeoutReportsItsStatus() async throws {
        let result = try await ExternalCommand.run("/bin/sh", ["-c", "echo done; exit 3"], timeout: .seconds(60))
        #expect(result.status == .exited(3))
        #expect(result.standardOutput == ["done"])
    }
}
