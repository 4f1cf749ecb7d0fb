/// `[watch] poll`: how a tree is watched.
public enum PollSetting: Equatable, Sendable {
    /// Poll only trees on file systems that deliver no inotify events (the default).
    case auto
    /// Always inotify.
    case off
    /// Always poll, every `interval`.
    case every(Duration)

    /// The interval auto-detected trees are polled at.
    public static let automaticInterval = Duration.milliseconds(500)
    /// Below this a stat scan of a real tree would eat a core; above it edits feel lost.
    public static let intervalRange = Duration.milliseconds(50)...Duration.seconds(60)

    /// Parses `auto`, `off`, or a duration (`500ms`, `2s`). Errors say what is accepted.
    public init(parsing text: String) throws(PollSettingError) {
        switch text.lowercased() {
        case "auto": self = .auto
        case "off", "false", "no", "never": self = .off
        default:
            guard let interval = parseDuration(text) else {
                throw PollSettingError("\"\(text)\" is not \"auto\", \"off\" or an interval like \"500ms\"")
            }
            guard Self.intervalRange.contains(interval) else {
                throw PollSettingError(
                    "\(interval.humanReadable) is outside 50 ms…60 s: shorter burns CPU on every tick, longer makes edits look lost")
            }
            self = .every(interval)
        }
    }

    /// The interval to poll a tree at, given whether its file system loses inotify events; nil
    /// means inotify.
    public func interval(losesInotifyEvents: Bool) -> Duration? {
        switch self {
        case .off: nil
        case .every(let interval): interval
        case .auto: losesInotifyEvents ? Self.automaticInterval : nil
        }
    }
}

public struct PollSettingError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// File systems whose changes inotify does not see: changes made by another kernel or
/// machine — Docker Desktop's macOS/Windows mounts, WSL2's 9p, network shares — or by a FUSE
/// daemon. Identified by `statfs`'s `f_type`, never by a self-test (an event can arrive late).
public enum FileSystemKind: Equatable, Sendable {
    case fuse, ninep, nfs, cifs, smb2, smb, ceph, afs, other(Int64)

    /// `statfs.f_type` magic numbers (linux/magic.h). virtiofs and every fuse.* report FUSE's.
    public init(magic: Int64) {
        switch UInt32(truncatingIfNeeded: magic) {
        case 0x6573_5546: self = .fuse
        case 0x0102_1997: self = .ninep
        case 0x6969: self = .nfs
        case 0xFF53_4D42: self = .cifs
        case 0xFE53_4D42: self = .smb2
        case 0x517B: self = .smb
        case 0x00C3_6400: self = .ceph
        case 0x5346_414F, 0x6B41_4653: self = .afs
        default: self = .other(magic)
        }
    }

    public var losesInotifyEvents: Bool {
        if case .other = self { return false }
        return true
    }

    public var name: String {
        switch self {
        case .fuse: "fuse (FUSE, virtiofs)"
        case .ninep: "9p"
        case .nfs: "nfs"
        case .cifs: "cifs"
        case .smb2: "smb2"
        case .smb: "smb"
        case .ceph: "ceph"
        case .afs: "afs"
        case .other(let magic): "0x" + String(UInt32(truncatingIfNeeded: magic), radix: 16)
        }
    }
}

/// What a stat scan records of one path: enough to see edits without reading contents.
public struct FileStamp: Equatable, Sendable {
    public var modified: Int64  // nanoseconds since the epoch
    public var changed: Int64  // ctime: also moves on rename-over and chmod
    public var size: Int64
    public var inode: UInt64
    public var isDirectory: Bool

    public init(modified: Int64, changed: Int64, size: Int64, inode: UInt64, isDirectory: Bool) {
        self.modified = modified
        self.changed = changed
        self.size = size
        self.inode = inode
        self.isDirectory = isDirectory
    }
}

/// The changes between two listings (of a directory, or of a tree: keys are names or paths): new
/// or different files are `changed`, missing ones `removed`; a rename is the old path removed and
/// the new one changed, as inotify reports it. Directories count only when they appear, vanish,
/// or take the place of a file (or a file theirs): a directory's own stamp moves with its entries.
public func changesBetween(_ old: [String: FileStamp], _ new: [String: FileStamp]) -> [(path: String, removed: Bool)] {
    var changes: [(path: String, removed: Bool)] = []
    for (path, stamp) in new {
        guard let before = old[path] else {
            changes.append((path, false))
            continue
        }
        if before.isDirectory != stamp.isDirectory || (!stamp.isDirectory && before != stamp) { changes.append((path, false)) }
    }
    for path in old.keys where new[path] == nil {
        changes.append((path, true))
    }
    return changes.sorted { $0.path < $1.path }
}

/// When the poller scans next: every `interval`, or — when a scan takes longer than that — after
/// a pause as long as the scan itself, so at most half the time goes to scanning and scans never
/// pile up. Says so when that starts and when scans are fast again.
public struct PollPacing: Sendable {
    public let interval: Duration
    public private(set) var pause: Duration

    public init(interval: Duration) {
        self.interval = interval
        self.pause = interval
    }

    /// Records how long the last scan of `entries` took; returns what to tell people, if anything.
    public mutating func scanned(entries: Int, took: Duration) -> String? {
        let wasStretched = self.pause > self.interval
        self.pause = max(self.interval, took)
        if self.pause > self.interval && !wasStretched {
            return "scanning \(entries) entries took \(took.humanReadable), longer than the poll interval "
                + "\(self.interval.humanReadable): waiting \(took.humanReadable) between scans until they are faster "
                + "(fewer watched paths, or more [watch] ignore patterns, help)"
        }
        if wasStretched && self.pause == self.interval {
            return "scans are fast again (\(took.humanReadable) for \(entries) entries): polling every \(self.interval.humanReadable)"
        }
        return nil
    }
}

/// How the poller spreads its work over ticks, and the detection times that follow. Stat'ing every
/// entry on every tick is what made polling cost: a tick instead
/// - stats every watched directory and re-lists (and stats the entries of) only those whose stamp
///   moved — creating, deleting or renaming an entry moves its directory's mtime — or whose mtime
///   is too recent to trust (`isSettling`);
/// - stats the files that changed recently (`recentFiles`) one by one;
/// - re-lists a slice of the other directories in rotation (`rotationSlice`), so that an edit made
///   in place, which moves no directory's mtime, is still found: every directory comes round at
///   least once every `ticksPerRotation` ticks.
public struct PollSchedule: Sendable {
    /// Every directory is re-listed at least once in this much time of ticks.
    public static let rotation = Duration.seconds(3)
    /// Timestamps are only as fine as the file system keeps them (FAT: 2 s; some network file
    /// systems: 1 s; ext4 before Linux 6.13: a clock tick). Two creations in the same granule leave
    /// one mtime, so a directory listed less than this after its mtime is listed again on every
    /// tick until a listing falls after the granule.
    public static let settling = Duration.seconds(2)
    /// A file that changed within this long (by the poller's clock) is stat'ed on every tick…
    public static let recentFor = Duration.seconds(600)
    /// …the most recent this many of them: a checkout of thousands of files goes back to rotation.
    public static let recentLimit = 1_000

    public let interval: Duration
    /// Ticks in one rotation: at 500 ms, 6 (3 s); from 1.5 s on, 1 (every directory every tick).
    public let ticksPerRotation: Int
    /// Where the next rotation slice starts, an index into the weights.
    public private(set) var cursor = 0
    /// File path → when the poller last saw it change.
    private var recent: [String: Moment] = [:]

    public init(interval: Duration) {
        self.interval = interval
        self.ticksPerRotation = max(1, Int((Self.rotation / interval).rounded(.down)))
    }

    /// Worst-case detection of a change to a recently changed file, and of creating, deleting or
    /// renaming anything (its directory's mtime moves): the next tick, so 2 intervals with the time
    /// the ticks' scans take.
    public var recentBound: Duration { self.interval * 2 }

    /// Worst-case detection of any change, an in-place edit of a quiet file included: its
    /// directory comes round within `rotation` (3 s), plus headroom for the scans themselves; at
    /// 1.5 s and more every directory is re-listed on every tick, so 2 intervals.
    public var anyBound: Duration { max(.seconds(4), self.interval * 2) }

    /// Whether a directory whose mtime is `modified` (nanoseconds since the epoch), seen at
    /// `now` (wall clock, same unit), must be re-listed although its stamp did not move: a later
    /// entry change in the same timestamp granule would leave the same stamp. A file system clock
    /// ahead of ours re-lists for longer; one behind by more than `settling` leaves such a change
    /// to the rotation.
    public static func isSettling(modified: Int64, now: Int64) -> Bool {
        now - modified < Int64(Self.settling / .nanoseconds(1))
    }

    /// The directories this tick re-lists in rotation, as indices into `weights` (each
    /// directory's entries + 1, in a stable order). Each tick takes directories from the cursor on
    /// (wrapping, never one twice) until it has at least 1/`ticksPerRotation` of the total weight,
    /// so every directory comes round within `ticksPerRotation` ticks while the order holds, and a
    /// tick's work is about the same whatever the sizes of the directories.
    public mutating func rotationSlice(weights: [Int]) -> [Int] {
        guard !weights.isEmpty else { return [] }
        let total = weights.reduce(0, +)
        let budget = (total + self.ticksPerRotation - 1) / self.ticksPerRotation
        var index = self.cursor < weights.count ? self.cursor : 0
        var slice: [Int] = []
        var taken = 0
        while taken < budget && slice.count < weights.count {
            slice.append(index)
            taken += weights[index]
            index = (index + 1) % weights.count
        }
        self.cursor = index
        return slice
    }

    /// `path` (a file) changed, was created, or was replaced at `now`.
    public mutating func changed(_ path: String, at now: Moment) {
        self.recent[path] = now
    }

    /// `path` is gone.
    public mutating func removed(_ path: String) {
        self.recent[path] = nil
    }

    /// The files to stat on this tick, in no order: those seen changing within `recentFor`, the
    /// `recentLimit` most recent. Older ones are forgotten here.
    public mutating func recentFiles(at now: Moment) -> [String] {
        self.recent = self.recent.filter { now - $0.value < Self.recentFor }
        if self.recent.count > Self.recentLimit {
            let kept = self.recent.sorted { ($0.value, $0.key) > ($1.value, $1.key) }.prefix(Self.recentLimit)
            self.recent = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
        }
        return Array(self.recent.keys)
    }
}
