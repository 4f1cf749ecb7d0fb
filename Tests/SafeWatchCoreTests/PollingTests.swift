import SafeWatchCore
import Testing

@Suite struct PollSettingTests {
    @Test func parsesAutoOffAndIntervals() throws {
        #expect(try PollSetting(parsing: "auto") == .auto)
        #expect(try PollSetting(parsing: "off") == .off)
        #expect(try PollSetting(parsing: "500ms") == .every(.milliseconds(500)))
        #expect(try PollSetting(parsing: "2s") == .every(.seconds(2)))
    }

    @Test(arguments: ["0ms", "-1s", "10ms", "2h", "fast", ""])
    func rejectsZeroNegativeAbsurdAndGarbage(_ text: String) {
        #expect(throws: PollSettingError.self) { try PollSetting(parsing: text) }
    }

    @Test func autoPollsOnlyLossyFileSystems() {
        #expect(PollSetting.auto.interval(losesInotifyEvents: true) == .milliseconds(500))
        #expect(PollSetting.auto.interval(losesInotifyEvents: false) == nil)
        #expect(PollSetting.off.interval(losesInotifyEvents: true) == nil)
        #expect(PollSetting.every(.seconds(1)).interval(losesInotifyEvents: false) == .seconds(1))
    }

    @Test func configurationKey() throws {
        let loader = ConfigurationLoader(fileName: "safe-watch.toml")
        #expect(try loader.load("[watch]\npoll = \"250ms\"\n").watch.poll == .every(.milliseconds(250)))
        #expect(try loader.load("[watch]\npoll = false\n").watch.poll == .off)
        #expect(try loader.load("").watch.poll == .auto)
        #expect(throws: ConfigurationError.self) { try loader.load("[watch]\npoll = \"0s\"\n") }
        do {
            _ = try loader.load("[watch]\n\npoll = 5\n")
            Issue.record("an integer poll was accepted")
        } catch {
            #expect(error.description == "safe-watch.toml:3: watch.poll: must be \"auto\", \"off\" or an interval like \"500ms\", got integer")
        }
    }
}

@Suite struct FileSystemKindTests {
    /// statfs(2) f_type values, linux/magic.h.
    @Test(arguments: [
        (Int64(0x6573_5546), true), (0x0102_1997, true), (0x6969, true), (Int64(0xFF53_4D42), true), (Int64(0xFE53_4D42), true),
        (0x517B, true), (0x00C3_6400, true),
        (0xEF53, false),  // ext4
        (0x5846_5342, false),  // xfs
        (0x0102_1994, false),  // tmpfs
        (0x9123_683E, false),  // btrfs
        (0x794C_7630, false),  // overlayfs (Docker's own layers deliver events)
    ])
    func magicNumbers(_ magic: Int64, _ lossy: Bool) {
        #expect(FileSystemKind(magic: magic).losesInotifyEvents == lossy)
    }

    @Test func fuseIsNamedForPeople() {
        #expect(FileSystemKind(magic: 0x6573_5546).name == "fuse (FUSE, virtiofs)")
        #expect(FileSystemKind(magic: 0xEF53).name == "0xef53")
    }
}

@Suite struct TreeDiffTests {
    func stamp(_ modified: Int64, size: Int64 = 10, inode: UInt64 = 1, directory: Bool = false) -> FileStamp {
        FileStamp(modified: modified, changed: modified, size: size, inode: inode, isDirectory: directory)
    }

    @Test func createsEditsDeletesAndRenames() {
        let before = ["a.swift": stamp(1, inode: 1), "b.swift": stamp(1, inode: 2), "dir": stamp(1, inode: 9, directory: true)]
        let after = [
            "a.swift": stamp(2, inode: 1),  // edited
            "c.swift": stamp(1, inode: 2),  // b renamed to c
            "dir": stamp(5, inode: 9, directory: true),  // only its mtime moved: not a change
            "dir/new.swift": stamp(5, inode: 3),
        ]
        let changes = changesBetween(before, after)
        #expect(changes.map(\.path) == ["a.swift", "b.swift", "c.swift", "dir/new.swift"])
        #expect(changes.map(\.removed) == [false, true, false, false])
    }

    @Test func sameSizeAndSecondButOtherNanosecondsOrInodeIsAnEdit() {
        #expect(changesBetween(["x": stamp(1_000_000_001)], ["x": stamp(1_000_000_002)]).count == 1)
        #expect(changesBetween(["x": stamp(1, inode: 1)], ["x": stamp(1, inode: 2)]).count == 1)  // atomic save
        #expect(changesBetween(["x": stamp(1)], ["x": stamp(1)]).isEmpty)
    }
}

@Suite struct PollPacingTests {
    @Test func aSlowScanStretchesThePauseAndSaysSoOnceThenRecovers() {
        var pacing = PollPacing(interval: .milliseconds(500))
        #expect(pacing.scanned(entries: 10_000, took: .milliseconds(40)) == nil)
        #expect(pacing.pause == .milliseconds(500))
        let slow = pacing.scanned(entries: 200_000, took: .milliseconds(1200))
        #expect(slow?.contains("scanning 200000 entries took 1.2 s, longer than the poll interval 500 ms") == true)
        #expect(pacing.pause == .milliseconds(1200))
        // Still slow: no new message, the pause follows the scan.
        #expect(pacing.scanned(entries: 200_000, took: .milliseconds(1500)) == nil)
        #expect(pacing.pause == .milliseconds(1500))
        let recovered = pacing.scanned(entries: 10_000, took: .milliseconds(30))
        #expect(recovered?.contains("scans are fast again") == true)
        #expect(pacing.pause == .milliseconds(500))
    }
}
