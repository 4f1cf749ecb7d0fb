import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// Projects as users have them, not as a test would like them: paths with spaces and accents, a
/// symlinked checkout, a .gitignore with negations, a directory safe-watch cannot write. Real
/// builds, run as the unprivileged account. In the serialized suite: the fixture is shared.
extension SupervisorIntegrationTests {

    /// A broken Version.swift, the line safe-watch must report relative to the project.
    func breakVersion(in directory: String, _ version: String) throws {
        try (versionSource(version) + "let broken: Int = \"not a number\"\n").save(to: directory + "/Sources/hello-server/Version.swift")
    }

    @Test func aProjectPathWithSpacesAndAccentsBuildsServesAndReports() async throws {
        let parent = makeTemporaryDirectory("sw-hostile") + "/mon projet é"
        try createAccountDirectory(parent)
        let directory = parent + "/hello"
        try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Examples/hello-server", toPath: directory)
        try? FileManager.default.removeItem(atPath: directory + "/.build")
        giveTreeToAccount(directory)
        try setVersion("accent-1", in: directory)

        // Zero configuration: `swift package describe` and `swift build` run in that directory.
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort(), "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", limit: .seconds(300)) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server accent-1\n")
        #expect(safeWatch.output.contains("· \(directory) ·"), "the start line names the path as given: \(safeWatch.output)")

        try setVersion("accent-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server accent-2\n")

        let mark = safeWatch.log.count
        try breakVersion(in: directory, "accent-3")
        #expect(await safeWatch.log.waitForLine(containing: "Sources/hello-server/Version.swift:3: cannot convert", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server accent-2\n")
        let status = try await self.status(of: directory)
        #expect(status.project == directory && status.active?.generation == 2, "\(status)")
        #expect(await safeWatch.terminate() == .exited(0))
        #expect(processes(mentioning: directory).isEmpty)
    }

    @Test func aSymlinkedProjectRebuildsOnEditsThroughEitherPath() async throws {
        let real = try await Fixture.shared.reset(version: "link-1")
        let link = makeTemporaryDirectory("sw-link") + "/hello"
        #expect(symlink(real, link) == 0)
        giveToAccount(link)
        let safeWatch = try await SafeWatchProcess(["run", "--project", link, "--listen", "127.0.0.1:0"])
        let port = try #require(await safeWatch.publicPort(), "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server link-1\n")

        // An edit through the real path, then one through the symlink.
        try setVersion("link-2", in: real)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server link-2\n")
        try setVersion("link-3", in: link)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 3 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server link-3\n")

        // The compiler names the real path; the report is still relative to the project.
        let mark = safeWatch.log.count
        try breakVersion(in: link, "link-4")
        let failed = await safeWatch.log.waitForLine(containing: "failed in", after: mark)
        #expect(failed?.contains("still serving gen 3") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "    Sources/hello-server/Version.swift:3: cannot convert", after: mark) != nil, "\(safeWatch.output)")
        // Both paths reach the same safe-watch.
        #expect(try await self.status(of: real).pid == safeWatch.pid)
        #expect(try await self.status(of: link).pid == safeWatch.pid)
        #expect(await safeWatch.terminate() == .exited(0))
    }

    @Test func aGitignoreNegationRebuildsTheKeptFileAndNotTheIgnoredOnes() async throws {
        let directory = try await Fixture.shared.reset(version: "ignore-1")
        let sources = directory + "/Sources/hello-server"
        try "*.generated.swift\n!Keep.generated.swift\n".save(to: directory + "/.gitignore")
        try "let keptGenerated = 1\n".save(to: sources + "/Keep.generated.swift")
        try "let ignoredGenerated = 1\n".save(to: sources + "/Other.generated.swift")
        defer {
            for file in [directory + "/.gitignore", sources + "/Keep.generated.swift", sources + "/Other.generated.swift"] {
                try? FileManager.default.removeItem(atPath: file)
            }
        }
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0", "--debounce", "50ms"])
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")

        // The ignored file first, then the kept one: the build that follows is the kept file's alone.
        // Written in place, as a generator writes them (an atomic save's temporary file has a name
        // of its own, which the patterns do not cover).
        let mark = safeWatch.log.count
        try "let ignoredGenerated = 2\n".save(to: sources + "/Other.generated.swift", atomically: false)
        try "let keptGenerated = 2\n".save(to: sources + "/Keep.generated.swift", atomically: false)
        let started = await safeWatch.log.waitForLine(containing: "▸ build", after: mark)
        #expect(started?.hasSuffix("(Sources/hello-server/Keep.generated.swift changed)") == true, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
        #expect(!safeWatch.log.all.dropFirst(mark).contains { $0.contains("Other.generated.swift") }, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// What cannot be written: the account's own directory made read-only, and (as root) a
    /// directory root owns, without a safe-watch.toml so nothing before the check may write either.
    @Test func aProjectDirectoryTheAccountCannotWriteStopsWithTheReasonAndExit73() async throws {
        let account = try expectedUserID()
        var cases: [(directory: String, fix: String)] = []

        let own = makeTemporaryDirectory("sw-readonly") + "/project"
        try createAccountDirectory(own)
        try "[build]\ncommand = \"true\"\nbinary = \"server.sh\"\n[health]\ntype = \"none\"\n".save(to: own + "/safe-watch.toml")
        #expect(chmod(own, 0o555) == 0)
        cases.append((own, "`chmod u+w \(own)`"))

        if geteuid() == 0 {
            let roots = makeTemporaryDirectory("sw-rootowned") + "/hello"
            try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Examples/hello-server", toPath: roots)
            try? FileManager.default.removeItem(atPath: roots + "/.build")
            try? FileManager.default.removeItem(atPath: roots + "/.safe-watch")
            cases.append((roots, "(it belongs to uid 0): run safe-watch as its owner, or make it yours with `sudo chown -R \(account) \(roots)`"))
        }
        for (directory, fix) in cases {
            let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
            #expect(await safeWatch.waitForExit(limit: .seconds(60)) == .exited(73), "\(safeWatch.output)")
            let output = safeWatch.output
            #expect(output.contains("safe-watch: cannot create \(directory)/.safe-watch: Permission denied"), "\(output)")
            #expect(output.contains("\(directory) is not writable by uid \(account)"), "\(output)")
            #expect(output.contains(fix), "\(output)")
            #expect(!output.contains("Fatal error") && !output.contains("swift package describe"), "\(output)")
            #expect(!FileManager.default.fileExists(atPath: directory + "/.build"))
        }
        chmod(own, 0o755)
    }

    /// `sudo safe-watch` once leaves `.safe-watch` (or a generation in it) to root. Run as the
    /// project's owner afterwards, safe-watch stops at once with the reason and the fix, instead of
    /// building what it could never stage and serving nothing. (A `.safe-watch` another user owns
    /// whose generations are writable still serves: ControlSocketTests.)
    @Test(.enabled(if: geteuid() == 0, "only root can leave a state directory behind for the account"))
    func aStateDirectoryLeftByRootStopsWithTheFixAndExit73() async throws {
        let account = try expectedUserID()
        let directory = makeTemporaryDirectory("sw-rootstate") + "/project"
        try createAccountDirectory(directory)
        try "[build]\ncommand = \"true\"\nbinary = \"server.sh\"\n[health]\ntype = \"none\"\n".save(to: directory + "/safe-watch.toml")
        giveTreeToAccount(directory)
        // As a run as root leaves it: the tree, a generation and the lock, all root's.
        let state = directory + "/.safe-watch"
        try FileManager.default.createDirectory(atPath: state + "/generations/1", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: state + "/lock", contents: nil, attributes: [.posixPermissions: 0o600]))

        // Then the tree given back, but for the generation root staged.
        let onlyAGeneration = { #expect(chown(state, account, gid_t(account)) == 0 && chown(state + "/generations", account, gid_t(account)) == 0) }
        for (unwritable, prepare) in [(state + "/generations", {}), (state + "/generations/1", onlyAGeneration)] {
            prepare()
            let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
            #expect(await safeWatch.waitForExit(limit: .seconds(60)) == .exited(73), "\(safeWatch.output)")
            let output = safeWatch.output
            #expect(output.contains("safe-watch: \(unwritable) is not writable by uid \(account) (it belongs to uid 0)"), "\(output)")
            #expect(output.contains("`sudo chown -R \(account) \(state)`"), "\(output)")
            #expect(!output.contains("build 1 started"), "\(output)")
        }
    }
}
