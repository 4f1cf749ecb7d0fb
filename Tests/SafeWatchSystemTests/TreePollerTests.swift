import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// The stat poller on a real tree (what runs where inotify sees nothing).
@Suite struct TreePollerTests {
    /// The walk that tells the content ledger which files were there at start: every file and
    /// symlink under the watched paths, none inside an ignored directory, directories not listed.
    @Test func forEachFileListsFilesAndSkipsIgnoredDirectories() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let root = directory.path
        try FileManager.default.createDirectory(atPath: root + "/Sources/App/Deep", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/.build/debug", withIntermediateDirectories: true)
        for file in ["Package.swift", "Sources/App/main.swift", "Sources/App/Deep/x.swift", ".build/debug/a.o"] {
            try "1".write(toFile: root + "/" + file, atomically: false, encoding: .utf8)
        }
        #expect(symlink("main.swift", root + "/Sources/App/link.swift") == 0)
        var seen: [String] = []
        forEachFile(root: root, paths: ["."], ignore: IgnoreRules(patterns: [".build/"])) { seen.append($0) }
        #expect(seen.sorted() == ["Package.swift", "Sources/App/Deep/x.swift", "Sources/App/link.swift", "Sources/App/main.swift"])
        seen = []
        forEachFile(root: root, paths: ["Sources/App/Deep/"], ignore: IgnoreRules()) { seen.append($0) }
        #expect(seen == ["Sources/App/Deep/x.swift"])
    }

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

    /// A tree of `directories` × `files` under Sources/, every directory's mtime an hour old: all
    /// of it quiet, nothing settling, so only what the schedule promises finds a change.
    func quietTree(_ directory: TemporaryDirectory, directories: Int, files: Int) throws -> [String] {
        var paths: [String] = []
        for d in 0..<directories {
            for f in 0..<files {
                let path = "Sources/M\(d)/F\(f).swift"
                try directory.write(path, "let f = \(f)\n")
                paths.append(path)
            }
        }
        var anHourAgo = timespec()
        clock_gettime(CLOCK_REALTIME, &anHourAgo)
        anHourAgo.tv_sec -= 3600
        let times = [anHourAgo, anHourAgo]
        for path in ["", "/Sources"] + (0..<directories).map({ "/Sources/M\($0)" }) {
            #expect(utimensat(AT_FDCWD, directory.path + path, times, 0) == 0)
        }
        return paths
    }

    /// Rewrites a file where it is (no new inode, its directory's mtime stays).
    func editInPlace(_ path: String, _ text: String) {
        let descriptor = open(path, O_WRONLY | O_TRUNC)
        #expect(descriptor >= 0)
        _ = text.utf8CString.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count - 1) }
        close(descriptor)
    }

    func modified(_ path: String) -> timespec {
        var info = stat()
        _ = stat(path, &info)
        return info.st_mtim
    }

    /// What a poller reported, and when.
    struct Seen: Sendable {
        var change: WatchedChange
        var at: ContinuousClock.Instant
    }

    func start(_ poller: TreePoller) -> Recorder<Seen> {
        let seen = Recorder<Seen>()
        poller.start(onChange: { changes in
            let now = ContinuousClock.now
            seen.append(contentsOf: changes.map { Seen(change: $0, at: now) })
        })
        return seen
    }

    /// When each of `paths` was first reported changed; nil until all were.
    func firstSeen(_ paths: [String]) -> @Sendable ([Seen]) -> [String: ContinuousClock.Instant]? {
        { seen in
            var first: [String: ContinuousClock.Instant] = [:]
            for entry in seen where entry.change.kind == .changed && paths.contains(entry.change.path) && first[entry.change.path] == nil {
                first[entry.change.path] = entry.at
            }
            return first.count == paths.count ? first : nil
        }
    }

    @Test func anEditInPlaceOfAQuietFileIsSeenWithinTheStatedBoundAndAgainWithinTwoIntervals() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // 60 directories of 5 files: 6 rotation slices of about 10 directories at 500 ms.
        _ = try quietTree(directory, directories: 60, files: 5)
        let schedule = PollSchedule(interval: PollSetting.automaticInterval)
        let poller = try TreePoller(root: directory.path, ignore: IgnoreRules(), interval: PollSetting.automaticInterval)
        let seen = start(poller)
        defer { poller.stop() }

        // One file in every fifth directory: they fall in every slice of the rotation.
        let directories = stride(from: 0, to: 60, by: 5).map { "\(directory.path)/Sources/M\($0)" }
        let edited = stride(from: 0, to: 60, by: 5).map { "Sources/M\($0)/F2.swift" }
        let mtimes = directories.map(modified)
        let editedAt = ContinuousClock.now
        for path in edited { editInPlace(directory.path + "/" + path, "let f = 2 // edited\n") }
        // What makes these edits hard: no directory's mtime moved.
        let after = directories.map(modified)
        #expect(zip(mtimes, after).allSatisfy { $0.tv_sec == $1.tv_sec && $0.tv_nsec == $1.tv_nsec })

        let first = await seen.wait(limit: .seconds(30), firstSeen(edited))
        let latest = first.map { $0.values.map { $0 - editedAt }.max() ?? .zero }
        #expect(latest != nil, "not all of \(edited) were seen: \(seen.all.map(\.change))")
        if let latest {
            #expect(latest <= schedule.anyBound, "the last in-place edit was seen after \(latest), the bound is \(schedule.anyBound)")
            // And quiet files are not stat'ed on every tick: some of them waited for their slice.
            #expect(latest > schedule.recentBound, "every quiet file was seen within \(latest): no rotation?")
        }

        // Now recently changed, they are stat'ed on every tick (the rotation alone would take 6).
        let mark = seen.count
        let editedAgainAt = ContinuousClock.now
        for path in edited { editInPlace(directory.path + "/" + path, "let f = 3 // edited again\n") }
        let again = await seen.wait(limit: .seconds(30)) { all in firstSeen(edited)(Array(all.dropFirst(mark))) }
        let latestAgain = again.map { $0.values.map { $0 - editedAgainAt }.max() ?? .zero }
        #expect(latestAgain.map { $0 <= schedule.recentBound } == true, "the last edit again was seen after \(String(describing: latestAgain))")
    }

    @Test func aNewFileInAQuietDirectoryIsSeenWithinTwoIntervals() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try quietTree(directory, directories: 60, files: 5)
        let schedule = PollSchedule(interval: PollSetting.automaticInterval)
        let poller = try TreePoller(root: directory.path, ignore: IgnoreRules(), interval: PollSetting.automaticInterval)
        let seen = start(poller)
        defer { poller.stop() }

        // In directories of every slice of the rotation: the rotation alone would take 6 ticks.
        let created = stride(from: 0, to: 60, by: 10).map { "Sources/M\($0)/New.swift" }
        let createdAt = ContinuousClock.now
        for path in created { try directory.write(path, "let new = 1\n") }
        let first = await seen.wait(limit: .seconds(30), firstSeen(created))
        #expect(first != nil, "not all of \(created) were seen: \(seen.all.map(\.change))")
        for (path, at) in first ?? [:] {
            #expect(at - createdAt <= schedule.recentBound, "\(path) seen after \(at - createdAt)")
        }
        // And edited in place right after: a recent file.
        let mark = seen.count
        let editedAt = ContinuousClock.now
        editInPlace(directory.path + "/" + created[2], "let new = 2\n")
        let seenEdit = await seen.wait(limit: .seconds(30)) { all in
            all.dropFirst(mark).first { $0.change == WatchedChange(path: created[2], kind: .changed) }?.at
        }
        #expect(seenEdit.map { $0 - editedAt <= schedule.recentBound } == true, "\(String(describing: seenEdit.map { $0 - editedAt }))")
    }

    @Test func aQuietTickStatsTheDirectoriesAndListsOnlyASliceOfThem() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        _ = try quietTree(directory, directories: 60, files: 5)
        let interval = Duration.milliseconds(50)  // 60 ticks a rotation: one directory a tick
        let poller = try TreePoller(root: directory.path, ignore: IgnoreRules(), interval: interval)
        let seen = start(poller)
        defer { poller.stop() }
        #expect(await waitUntil { poller.work.ticks >= 20 })
        poller.stop()
        let work = poller.work
        // 62 directories (the root and Sources included) and 360 entries: every tick stats the 62
        // and lists a 60th of the rest (two or three directories, about 8 entries); listing and
        // stat'ing everything would be 62 listings and 422 stats a tick.
        #expect(work.listedDirectories <= work.ticks * 3, "\(work)")
        #expect(work.stats <= work.ticks * 100, "\(work)")
        #expect(seen.all.isEmpty)
    }

    @Test func theFileSystemKindOfARealPath() {
        // /proc is procfs: a kernel file system, not one that loses events of its own.
        #expect(fileSystemKind(of: "/proc")?.losesInotifyEvents == false)
        #expect(fileSystemKind(of: "/nonexistent/path") == nil)
    }
}
