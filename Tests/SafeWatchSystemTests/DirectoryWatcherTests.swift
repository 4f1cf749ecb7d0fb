import Foundation
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// The watcher against the real kernel, in private temporary directories.
@Suite struct DirectoryWatcherTests {

    func watching(_ directory: TemporaryDirectory, ignore: IgnoreRules = IgnoreRules()) throws -> (DirectoryWatcher, ChangeLog) {
        let watcher = try DirectoryWatcher(root: directory.path, ignore: ignore)
        let log = ChangeLog()
        try watcher.start { log.append(contentsOf: $0) }
        return (watcher, log)
    }

    @Test func createModifyRenameDelete() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("Sources/App/main.swift")
        let (watcher, log) = try watching(directory)
        defer { watcher.stop() }

        try directory.write("Sources/App/new.swift")
        #expect(await log.wait(until: log.saw("Sources/App/new.swift")))
        try directory.write("Sources/App/main.swift", "changed\n")
        #expect(await log.wait(until: log.saw("Sources/App/main.swift")))
        try FileManager.default.moveItem(
            atPath: directory.path + "/Sources/App/new.swift", toPath: directory.path + "/Sources/App/renamed.swift")
        #expect(await log.wait(until: log.saw("Sources/App/new.swift", .removed)))
        #expect(await log.wait(until: log.saw("Sources/App/renamed.swift")))
        try FileManager.default.removeItem(atPath: directory.path + "/Sources/App/renamed.swift")
        #expect(await log.wait(until: log.saw("Sources/App/renamed.swift", .removed)))
    }

    @Test func atomicSaveReportsTheTargetFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("Sources/main.swift")
        let (watcher, log) = try watching(directory)
        defer { watcher.stop() }
        // What editors do: write a temporary file, rename it over the original.
        try directory.write("Sources/.main.swift.tmp-1234", "new contents\n")
        try FileManager.default.removeItem(atPath: directory.path + "/Sources/main.swift")
        try FileManager.default.moveItem(
            atPath: directory.path + "/Sources/.main.swift.tmp-1234", toPath: directory.path + "/Sources/main.swift")
        #expect(await log.wait(until: log.saw("Sources/main.swift")))
    }

    @Test func newNestedDirectoryWithAFileWrittenAtOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (watcher, log) = try watching(directory)
        defer { watcher.stop() }
        // mkdir -p and a write in the same instant: the file exists before any watch on c/ can.
        try directory.write("a/b/c/Deep.swift")
        #expect(await log.wait(until: log.saw("a/b/c/Deep.swift")))
        #expect(watcher.watchedDirectories.contains("a/b/c"))
        // And later writes inside it are seen through the new watch.
        log.clear()
        try directory.write("a/b/c/Later.swift")
        #expect(await log.wait(until: log.saw("a/b/c/Later.swift")))
    }

    @Test func noWatchUnderIgnoredDirectories() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for index in 0..<20 {
            try directory.mkdir(".build/debug/Module\(index).build")
            try directory.mkdir(".git/objects/\(index)")
            try directory.mkdir("node_modules/pkg\(index)")
        }
        try directory.mkdir(".safe-watch/generations/1")
        try directory.mkdir(".build-bench/x")
        try directory.mkdir("Sources/App")
        try directory.mkdir("Tests/AppTests")
        let (watcher, _) = try watching(directory, ignore: IgnoreRules(patterns: ["node_modules/"]))
        defer { watcher.stop() }
        // Exactly one watch per directory that is not ignored: ., Sources, Sources/App, Tests, Tests/AppTests.
        #expect(watcher.watchedDirectories == [".", "Sources", "Sources/App", "Tests", "Tests/AppTests"])
    }

    @Test func ignoredPathsAndEditorDroppingsAreNotReported() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.mkdir("Sources")
        let (watcher, log) = try watching(directory, ignore: IgnoreRules(patterns: ["*.log"]))
        defer { watcher.stop() }
        try directory.write("Sources/.main.swift.swp")
        try directory.write("Sources/4913")
        try directory.write("Sources/main.swift~")
        try directory.write("server.log")
        try directory.mkdir(".build/new")
        try directory.write(".build/new/x.swift")
        try directory.write("Sources/marker.swift")  // the last write: once it is seen, the others were handled
        #expect(await log.wait(until: log.saw("Sources/marker.swift")))
        #expect(log.all.map(\.path).allSatisfy { $0 == "Sources/marker.swift" })
    }

    @Test func deletedAndRecreatedDirectoryIsWatchedAgain() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("Sources/App/main.swift")
        let (watcher, log) = try watching(directory)
        defer { watcher.stop() }
        try FileManager.default.removeItem(atPath: directory.path + "/Sources/App")
        #expect(await log.wait(until: log.saw("Sources/App", .removed)))
        try directory.write("Sources/App/main.swift", "back\n")
        #expect(await log.wait(until: { $0.filter { $0 == WatchedChange(path: "Sources/App/main.swift", kind: .changed) }.count >= 1 }))
        log.clear()
        try directory.write("Sources/App/main.swift", "edited again\n")
        #expect(await log.wait(until: log.saw("Sources/App/main.swift")))
    }

    @Test func queueOverflowTriggersARescan() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.mkdir("Sources")
        let (watcher, log) = try watching(directory)
        defer { watcher.stop() }
        // Stop reading while more events happen than the kernel queues (max_queued_events, 16384
        // here): each new file is at least two events.
        watcher.pauseReading()
        let limit = (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 16384
        for index in 0...(limit / 2 + 100) {
            try directory.write("Sources/File\(index).swift")
        }
        try directory.mkdir("Sources/Created")  // a directory whose IN_CREATE is lost in the overflow
        watcher.resumeReading()
        #expect(await log.wait(until: log.saw(".", .rescanned)))
        #expect(watcher.watchedDirectories.contains("Sources/Created"))
    }
}
