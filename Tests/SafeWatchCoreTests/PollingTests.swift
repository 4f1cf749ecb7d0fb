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

    @Test func aFileTurnedDirectoryOrBackIsAChange() {
        let file = ["x": stamp(1, inode: 1)]
        let directory = ["x": stamp(1, inode: 1, directory: true)]
        #expect(changesBetween(file, directory).map(\.path) == ["x"])
        #expect(changesBetween(directory, file).map(\.path) == ["x"])
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

@Suite struct PollScheduleTests {
    @Test func ticksPerRotationAndTheStatedBounds() {
        let cases: [(Duration, ticks: Int, recent: Duration, any: Duration)] = [
            (.milliseconds(50), 60, .milliseconds(100), .seconds(4)),
            (.milliseconds(100), 30, .milliseconds(200), .seconds(4)),
            (.milliseconds(500), 6, .seconds(1), .seconds(4)),
            (.milliseconds(700), 4, .milliseconds(1400), .seconds(4)),
            (.seconds(1), 3, .seconds(2), .seconds(4)),
            (.milliseconds(1500), 2, .seconds(3), .seconds(4)),
            (.seconds(2), 1, .seconds(4), .seconds(4)),
            (.seconds(60), 1, .seconds(120), .seconds(120)),
        ]
        for (interval, ticks, recent, any) in cases {
            let schedule = PollSchedule(interval: interval)
            #expect(schedule.ticksPerRotation == ticks, "\(interval)")
            #expect(schedule.recentBound == recent, "\(interval)")
            #expect(schedule.anyBound == any, "\(interval)")
        }
        // Over the whole accepted range: a rotation fits in the bound with at least 1 s (or, past
        // 1 s, one interval) to spare for the ticks' own scans.
        var interval = PollSetting.intervalRange.lowerBound
        while interval <= PollSetting.intervalRange.upperBound {
            let schedule = PollSchedule(interval: interval)
            let rotation = interval * schedule.ticksPerRotation
            #expect(rotation + min(.seconds(1), interval) <= schedule.anyBound, "\(interval)")
            interval += .milliseconds(50)
        }
    }

    @Test func aRotationSliceTakesATicksShareFromTheCursorOn() {
        var schedule = PollSchedule(interval: .milliseconds(500))  // 6 ticks
        let weights = [1, 11, 11, 3, 50, 1, 1, 11, 11, 11]  // 111: at least 19 a tick
        #expect(schedule.rotationSlice(weights: weights) == [0, 1, 2])
        #expect(schedule.rotationSlice(weights: weights) == [3, 4])
        #expect(schedule.rotationSlice(weights: weights) == [5, 6, 7, 8])
        #expect(schedule.rotationSlice(weights: weights) == [9, 0, 1])  // wraps
        #expect(schedule.cursor == 2)
        #expect(schedule.rotationSlice(weights: []) == [])
        // Fewer directories than the cursor (some went): it starts over.
        #expect(schedule.rotationSlice(weights: [5]) == [0])
        #expect(schedule.rotationSlice(weights: [5]) == [0])
    }

    @Test(arguments: [
        [Int](repeating: 11, count: 1000),  // the B8 tree: 10 files a directory
        [1, 11, 11, 3, 50, 1, 1, 11, 11, 11],
        [1000] + [Int](repeating: 2, count: 50),  // one huge directory among small ones
        [3, 3],  // fewer directories than ticks
    ])
    func everyDirectoryComesRoundWithinARotation(_ weights: [Int]) {
        for interval in [Duration.milliseconds(50), .milliseconds(500), .seconds(1), .seconds(2)] {
            var schedule = PollSchedule(interval: interval)
            let ticks = schedule.ticksPerRotation
            var lastVisit = [Int?](repeating: nil, count: weights.count)
            var longestGap = 0
            for tick in 0..<(ticks * 5) {
                let slice = schedule.rotationSlice(weights: weights)
                #expect(Set(slice).count == slice.count)
                let budget = (weights.reduce(0, +) + ticks - 1) / ticks
                #expect(slice.count == weights.count || slice.map { weights[$0] }.reduce(0, +) >= budget)
                for position in slice {
                    longestGap = max(longestGap, tick - (lastVisit[position] ?? -1))
                    lastVisit[position] = tick
                }
            }
            // The first visit counts from tick -1, so this bounds the first rotation too.
            #expect(longestGap <= ticks, "\(interval): \(longestGap) ticks between visits, \(ticks) allowed")
            #expect(!lastVisit.contains(nil))
        }
    }

    @Test func aDirectoryIsTrustedTwoSecondsAfterItsMtime() {
        let second: Int64 = 1_000_000_000
        #expect(PollSchedule.isSettling(modified: 10 * second, now: 10 * second))
        #expect(PollSchedule.isSettling(modified: 10 * second, now: 12 * second - 1))
        #expect(!PollSchedule.isSettling(modified: 10 * second, now: 12 * second))
        #expect(PollSchedule.isSettling(modified: 20 * second, now: 12 * second))  // a clock ahead of ours
    }

    @Test func recentFilesAreTheChangedOnesOfTheLastTenMinutes() {
        var schedule = PollSchedule(interval: .milliseconds(500))
        #expect(schedule.recentFiles(at: .zero).isEmpty)
        schedule.changed("a.swift", at: .zero)
        schedule.changed("b.swift", at: .seconds(1))
        schedule.changed("gone.swift", at: .seconds(1))
        schedule.removed("gone.swift")
        #expect(Set(schedule.recentFiles(at: .seconds(2))) == ["a.swift", "b.swift"])
        #expect(Set(schedule.recentFiles(at: .seconds(599))) == ["a.swift", "b.swift"])
        #expect(schedule.recentFiles(at: .seconds(600)) == ["b.swift"])
        schedule.changed("b.swift", at: .seconds(600))  // changed again: ten more minutes
        #expect(schedule.recentFiles(at: .seconds(1199)) == ["b.swift"])
        #expect(schedule.recentFiles(at: .seconds(1200)).isEmpty)
    }

    @Test func aCheckoutOfManyFilesKeepsOnlyTheMostRecentThousand() {
        var schedule = PollSchedule(interval: .milliseconds(500))
        for file in 0..<1_005 {
            schedule.changed("f\(file)", at: .milliseconds(file))
        }
        let recent = Set(schedule.recentFiles(at: .seconds(2)))
        #expect(recent.count == PollSchedule.recentLimit)
        #expect(recent == Set((5..<1_005).map { "f\($0)" }))
    }
}
