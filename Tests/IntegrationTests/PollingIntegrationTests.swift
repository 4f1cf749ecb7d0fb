import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// Where inotify delivers nothing: a FUSE mount (bindfs) whose files change underneath it, as
/// Docker Desktop's bind mounts behave. Without FUSE here, forced polling on a plain directory.
@Suite(.serialized, .timeLimit(.minutes(5))) struct PollingIntegrationTests {
    /// A project with no compiler in the loop: the "build" is `true`, the server a script that
    /// prints the version it read, so each swap shows which edit it saw.
    func makeProject(in directory: String) throws {
        try createAccountDirectory(directory + "/src")
        try "v1\n".save(to: directory + "/src/version.txt", atomically: false)
        try "#!/bin/sh\necho \"serving $(cat src/version.txt)\"\nexec sleep 1000\n"
            .save(to: directory + "/server.sh", atomically: false)
        chmod(directory + "/server.sh", 0o755)
        try """
            [build]
            command = "true"
            binary = "server.sh"
            [watch]
            extensions = ["txt"]
            debounce = "50ms"
            [health]
            type = "none"
            [run]
            stop_timeout = "1s"
            """.save(to: directory + "/safe-watch.toml", atomically: false)
    }

    /// bindfs BACKING onto MOUNT; false when FUSE is not available here.
    func mountFUSE(_ backing: String, at mount: String) async throws -> Bool {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/bindfs"), access("/dev/fuse", R_OK | W_OK) == 0 else { return false }
        let (status, _) = try await run("/usr/bin/bindfs", [backing, mount], in: "/")
        return status == .exited(0) && fileSystemKind(of: mount)?.losesInotifyEvents == true
    }

    @Test func editsUnderAMountWithoutInotifyEventsAreSeenAndSwapped() async throws {
        let backing = makeTemporaryDirectory("sw-backing")
        let mount = makeTemporaryDirectory("sw-fuse")
        try makeProject(in: backing)
        let fuse = try await mountFUSE(backing, at: mount)
        defer { if fuse { _ = umount2(mount, Int32(MNT_DETACH)) } }
        // On FUSE, safe-watch must notice by itself; otherwise polling is forced.
        let project = fuse ? mount : backing
        print("polling test: \(fuse ? "bindfs FUSE mount" : "forced polling (no FUSE here)")")
        let safeWatch = try await SafeWatchProcess(
            ["run", "--project", project, "--listen", "127.0.0.1:0"] + (fuse ? [] : ["--poll=200ms"]))
        let polling = await safeWatch.log.waitForLine(containing: "polling every")
        if fuse {
            #expect(polling?.contains("polling every 500 ms: . (. is on fuse (FUSE, virtiofs)") == true, "\(safeWatch.output)")
        } else {
            #expect(polling?.contains("polling every 200 ms") == true, "\(safeWatch.output)")
        }
        #expect(await safeWatch.log.waitForLine(containing: "[gen 1] serving v1") != nil, "\(safeWatch.output)")

        // Every edit is made in the backing directory: nothing passes through the mount's kernel side.
        var mark = safeWatch.log.count
        try "v2\n".save(to: backing + "/src/version.txt")  // edit (atomic save)
        #expect(await safeWatch.log.waitForLine(containing: "(src/version.txt changed)", after: mark) != nil, "\(safeWatch.output)")
        #expect(await safeWatch.log.waitForLine(containing: "[gen 2] serving v2", after: mark) != nil, "\(safeWatch.output)")

        mark = safeWatch.log.count
        try "notes\n".save(to: backing + "/src/notes.txt", atomically: false)  // create
        #expect(await safeWatch.log.waitForLine(containing: "(src/notes.txt changed)", after: mark) != nil, "\(safeWatch.output)")

        mark = safeWatch.log.count
        #expect(rename(backing + "/src/notes.txt", backing + "/src/renamed.txt") == 0)  // rename
        #expect(await safeWatch.log.waitForLine(containing: "▸ build", after: mark) != nil, "\(safeWatch.output)")
        #expect(safeWatch.log.all.dropFirst(mark).contains { $0.contains("renamed.txt") || $0.contains("notes.txt and 1 more") })

        mark = safeWatch.log.count
        try FileManager.default.removeItem(atPath: backing + "/src/renamed.txt")  // delete
        #expect(await safeWatch.log.waitForLine(containing: "(src/renamed.txt changed)", after: mark) != nil, "\(safeWatch.output)")

        #expect(await safeWatch.terminate() == .exited(0))
    }
}
