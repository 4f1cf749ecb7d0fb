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

/// The changes between two scans of a tree (paths relative to the project): new or different
/// files are `changed`, missing ones `removed`; a rename is the old path removed and the new one
/// changed, as inotify reports it. Directories count only when they appear or vanish.
public func changesBetween(_ old: [String: FileStamp], _ new: [String: FileStamp]) -> [(path: String, removed: Bool)] {
    var changes: [(path: String, removed: Bool)] = []
    for (path, stamp) in new {
        guard let before = old[path] else {
            changes.append((path, false))
            continue
        }
        if !stamp.isDirectory && before != stamp { changes.append((path, false)) }
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
