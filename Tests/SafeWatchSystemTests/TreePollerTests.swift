import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// The stat poller on a real tree (what runs where inotify sees nothing).
@Suite struct TreePollerTests {
    @Test func seesCreateEditDeleteAndRenameAndIgnoresWhatIsIgnored() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = directory.path
        try FileManager.default.createDirectory(atPath: root + "/Sources/App", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/.build", withIntermediateDirectories: true)
        try "1".write(toFile: root + "/Sources/App/main.swift", atomically: false, encoding: .utf8)
        let poller = try TreePoller(root: root, ignore: IgnoreRules(), interval: .milliseconds(50))
        let seen = Recorder<WatchedChange>()
        poller.start(onChange: { seen.append(contentsOf: $0) })
        defer { poller.stop() }

        try "x".write(toFile: root + "/.build/ignored.o", atomically: false, encoding: .utf8)
        try "2".write(toFile: root + "/Sources/App/main.swift", atomically: false, encoding: .utf8)
        #expect(await seen.wait { $0.contains(WatchedChange(path: "Sources/App/main.swift", kind: .changed)) })
        try "new".write(toFile: root + "/Sources/App/Routes.swift", atomically: true, encoding: .utf8)
        #expect(await seen.wait { $0.contains(WatchedChange(path: "Sources/App/Routes.swift", kind: .changed)) })
        #expect(rename(root + "/Sources/App/Routes.swift", root + "/Sources/App/Web.swift") == 0)
        #expect(await seen.wait {
            $0.contains(WatchedChange(path: "Sources/App/Routes.swift", kind: .removed))
                && $0.contains(WatchedChange(path: "Sources/App/Web.swift", kind: .changed))
        })
        try FileManager.default.removeItem(atPath: root + "/Sources/App/Web.swift")
        #expect(await seen.wait { $0.filter { $0 == WatchedChange(path: "Sources/App/Web.swift", kind: .removed) }.count == 1 })
        #expect(!seen.all.contains { $0.path.hasPrefix(".build") })
    }

    @Test func aTreeThatVanishesAndComesBackIsSeenBothWays() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = directory.path
        try FileManager.default.createDirectory(atPath: root + "/src", withIntermediateDirectories: true)
        try "a".write(toFile: root + "/src/a.swift", atomically: false, encoding: .utf8)
        let poller = try TreePoller(root: root, paths: ["src"], ignore: IgnoreRules(), interval: .milliseconds(50))
        let seen = Recorder<WatchedChange>()
        poller.start(onChange: { seen.append(contentsOf: $0) })
        defer { poller.stop() }
        try FileManager.default.removeItem(atPath: root + "/src")
        #expect(await seen.wait { $0.contains(WatchedChange(path: "src/a.swift", kind: .removed)) })
        try FileManager.default.createDirectory(atPath: root + "/src", withIntermediateDirectories: true)
        try "b".write(toFile: root + "/src/a.swift", atomically: false, encoding: .utf8)
        #expect(await seen.wait { $0.last == WatchedChange(path: "src/a.swift", kind: .changed) })
    }

    @Test func theFileSystemKindOfARealPath() {
        // /proc is procfs: a kernel file system, not one that loses events of its own.
        #expect(fileSystemKind(of: "/proc")?.losesInotifyEvents == false)
        #expect(fileSystemKind(of: "/nonexistent/path") == nil)
    }
}
