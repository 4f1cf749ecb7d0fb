import CSafeWatchShims
import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import Synchronization

/// The file system a path lives on (`statfs`), nil when it cannot be read.
public func fileSystemKind(of path: String) -> FileSystemKind? {
    var type: Int64 = 0
    guard sw_statfs_type(path, &type) == 0 else { return nil }
    return FileSystemKind(magic: type)
}

/// Watches a tree with `lstat` every `interval`: for file systems that deliver no inotify events
/// (FUSE, virtiofs, 9p, NFS, CIFS). No contents are read, and a tick does not stat everything:
/// `PollSchedule` says what it looks at (every directory's own stamp, the recently changed files,
/// a rotating slice of the rest) and so how soon a change is seen. Changes come out as the inotify
/// watcher reports them, so debounce and classification are the same.
///
/// A tick that takes longer than the interval stretches the interval to the tick's own length
/// (at most half of the time scanning) and says so once, instead of piling ticks up.
public final class TreePoller: Sendable {
    private let root: String
    private let paths: [String]
    private let ignore: IgnoreRules
    public let interval: Duration
    /// Written to wake the polling thread when it must stop.
    private let wake: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
    /// Under one lock, so that `stop()` never writes to a wake-up pipe the thread has closed (its
    /// number may belong to another file by then).
    private let state = Mutex((stopped: false, closed: false))
    private let counted = Mutex(PollWork())

    public init(root: String, paths: [String] = ["."], ignore: IgnoreRules, interval: Duration) throws(SystemError) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        self.paths = paths.map(normalizedWatchPath)
        self.ignore = ignore
        self.interval = interval
        self.wake = try FileDescriptor.pipe()
    }

    deinit {
        // Never started: nothing else closes them. (A polling thread keeps `self` alive.)
        self.closeDescriptors()
    }

    /// What the ticks so far have done: how much a tick costs, for tests and benchmarks.
    public var work: PollWork { self.counted.withLock { $0 } }

    /// Takes the first scan (synchronously: a change made after `start` returns is seen), then
    /// polls on a thread of its own. `onSlowScan` hears when ticks outgrow the interval.
    public func start(onChange: @escaping @Sendable ([WatchedChange]) -> Void, onSlowScan: @escaping @Sendable (String) -> Void = { _ in }) {
        let tree = PolledTree(root: self.root, paths: self.paths, ignore: self.ignore, interval: self.interval)
        let thread = PollingThread(poller: self, tree: tree, onChange: onChange, onSlowScan: onSlowScan)
        thread.start()
    }

    /// Stops polling; the thread ends at its next wake-up, which this causes at once.
    public func stop() {
        self.state.withLock { state in
            guard !state.stopped else { return }
            state.stopped = true
            // One byte into an empty pipe: cannot block.
            if !state.closed { try? self.wake.writeEnd.writeAll([1]) }
        }
    }

    var isStopped: Bool { self.state.withLock { $0.stopped } }

    /// Sleeps up to `duration` or until stopped; false when stopped.
    func pause(_ duration: Duration) -> Bool {
        var entry = pollfd(fd: self.wake.readEnd.rawValue, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
        let ready = try? Syscall.retrying("poll") { poll(&entry, 1, max(milliseconds, 1)) }
        return ready == 0 && !self.isStopped
    }

    func count(_ tick: PollWork) {
        self.counted.withLock { $0.add(tick) }
    }

    func closeDescriptors() {
        self.state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            self.wake.readEnd.close()
            self.wake.writeEnd.close()
        }
    }
}

/// What polling ticks did, summed.
public struct PollWork: Equatable, Sendable {
    public var ticks = 0
    /// Directories read with readdir (each of their entries stat'ed).
    public var listedDirectories = 0
    /// `lstat`/`fstatat` calls: directories' own stamps, listed entries, recent files.
    public var stats = 0

    public init() {}

    mutating func add(_ other: PollWork) {
        self.ticks += other.ticks
        self.listedDirectories += other.listedDirectories
        self.stats += other.stats
    }
}

/// Every non-ignored entry under `paths` (relative to `root`), with what `lstat` says of it:
/// what `doctor` counts the directories to watch with. Symlinks are not
/// followed, as the inotify watcher follows none. Paths in `known` passed the ignore rules
/// already; only new ones are matched again.
public func scanTree(root: String, paths: [String], ignore: IgnoreRules) -> [String: FileStamp] {
    var stamps: [String: FileStamp] = [:]
    var pending = paths.map(normalizedWatchPath)
    while let directory = pending.popLast() {
        let absolute = directory == "." ? root : root + "/" + directory
        guard let stream = opendir(absolute) else { continue }
        defer { closedir(stream) }
        forEachEntry(of: stream) { name, stamp in
            guard let stamp else { return }
            let path = child(directory, name)
            if ignore.isIgnored(path, isDirectory: stamp.isDirectory) { return }
            stamps[path] = stamp
            if stamp.isDirectory { pending.append(path) }
        }
    }
    return stamps
}

/// Calls `body` with the relative path of every entry that is not a directory under `paths`,
/// without descending into ignored directories. Files are not matched against the ignore rules
/// (events for ignored files never get past the watchers) and an entry is stat'ed only where
/// readdir does not give its type: this walk stands between safe-watch's start and its first build,
/// and on a tree of 100,000 files the matching and the stats were most of its time.
public func forEachFile(root: String, paths: [String], ignore: IgnoreRules, _ body: (String) -> Void) {
    var pending = paths.map(normalizedWatchPath)
    while let directory = pending.popLast() {
        let absolute = directory == "." ? root : root + "/" + directory
        guard let stream = opendir(absolute) else { continue }
        defer { closedir(stream) }
        let descriptor = dirfd(stream)
        while let entry = readdir(stream) {
            let name = entryName(entry)
            if name == "." || name == ".." { continue }
            let path = child(directory, name)
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                var info = stat()
                guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                isDirectory = info.st_mode & S_IFMT == S_IFDIR
            }
            if !isDirectory {
                body(path)
            } else if !ignore.isIgnored(path, isDirectory: true) {
                pending.append(path)
            }
        }
    }
}

/// Calls `body` with each entry of an open directory but "." and "..", and its stamp (not
/// following symlinks); nil when it could not be stat'ed (gone since the listing).
private func forEachEntry(of stream: OpaquePointer, _ body: (String, FileStamp?) -> Void) {
    let descriptor = dirfd(stream)
    while let entry = readdir(stream) {
        let name = entryName(entry)
        if name == "." || name == ".." { continue }
        var info = stat()
        body(name, fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 ? FileStamp(info) : nil)
    }
}

/// One watched directory as the poller last listed it.
private struct PolledDirectory {
    /// Relative to the project root ("." for the root itself).
    var path: String
    /// `path`, NUL-terminated: stat'ed on every tick (from the open root) without building a string.
    var relative: [CChar]
    /// A watched path itself: stat'ed through symlinks (opendir follows them), never removed.
    var isWatchedRoot: Bool
    /// Its own stamp, taken just before its last listing; nil when it could not be read.
    var stamp: FileStamp?
    /// Entry name → stamp, ignored entries left out.
    var entries: [String: FileStamp] = [:]
    var gone = false
}

/// The tree as the poller knows it, and one tick of polling it. Touched by one thread at a time.
final class PolledTree {
    private let root: String
    private let ignore: IgnoreRules
    private var schedule: PollSchedule
    private var directories: [PolledDirectory] = []
    /// Relative path → index into `directories`.
    private var index: [String: Int] = [:]
    /// When this tree was made: `Moment`s are measured from it.
    private let origin = ContinuousClock.now
    /// The project root, open: stats and listings walk their paths from here rather than from "/"
    /// (walking paths is most of a tick's cost). -1 while the root cannot be opened.
    private var rootDescriptor: Int32 = -1
    private var rootIdentity: (device: UInt64, inode: UInt64)?
    /// This tick's count of work, and its directory stamps (kept to save an allocation per tick).
    private var work = PollWork()
    private var stamps: [FileStamp?] = []

    /// Lists the whole tree (the baseline: nothing is reported of it).
    init(root: String, paths: [String], ignore: IgnoreRules, interval: Duration) {
        self.root = root
        self.ignore = ignore
        self.schedule = PollSchedule(interval: interval)
        self.openRoot()
        // A path inside another watched path is listed as part of it.
        let paths = Set(paths)
        let outermost = paths.filter { path in !paths.contains { $0 != path && ($0 == "." || path.hasPrefix($0 + "/")) } }
        var ignored: [(path: String, removed: Bool)] = []
        for path in outermost.sorted() {
            let position = self.add(directory: path, isWatchedRoot: true)
            self.list(position, stamp: self.stamp(of: position), at: .zero, changes: &ignored)
        }
        // What the baseline found is not a change: no file is recent yet.
        self.schedule = PollSchedule(interval: interval)
    }

    deinit {
        if self.rootDescriptor >= 0 { close(self.rootDescriptor) }
    }

    /// Opens the project root, again when it was replaced (or came back) since.
    private func openRoot() {
        var info = stat()
        self.work.stats += 1
        guard stat(self.root, &info) == 0 else { return }
        let identity = (device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        if self.rootDescriptor >= 0, let known = self.rootIdentity, known == identity { return }
        if self.rootDescriptor >= 0 { close(self.rootDescriptor) }
        self.rootDescriptor = Glibc.open(self.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        self.rootIdentity = self.rootDescriptor >= 0 ? identity : nil
    }

    /// Entries known, directories included.
    var entryCount: Int { self.directories.reduce(0) { $0 + ($1.gone ? 0 : $1.entries.count) } }

    /// One tick: the changes since the last one (paths relative to the project, sorted), and the
    /// work it took.
    func tick() -> (changes: [(path: String, removed: Bool)], work: PollWork) {
        let now = ContinuousClock.now - self.origin
        self.work = PollWork()
        self.work.ticks = 1
        var wallClock = timespec()
        clock_gettime(CLOCK_REALTIME, &wallClock)
        let wallNow = Int64(wallClock.tv_sec) * 1_000_000_000 + Int64(wallClock.tv_nsec)
        self.openRoot()

        // Every directory's own stamp: listed when it moved (an entry came, went or was renamed)
        // or when it is too recent to trust.
        var due: [Int] = []
        self.stamps.removeAll(keepingCapacity: true)
        for position in self.directories.indices {
            let stamp = self.stamp(of: position)
            self.stamps.append(stamp)
            if stamp != self.directories[position].stamp
                || stamp.map({ PollSchedule.isSettling(modified: $0.modified, now: wallNow) }) == true
            {
                due.append(position)
            }
        }
        // A slice of the rest, for edits in place (they move no directory's mtime).
        due += self.schedule.rotationSlice(weights: self.directories.map { $0.entries.count + 1 })
        var listed = Set<Int>()
        var changes: [(path: String, removed: Bool)] = []
        // Parents before children: a directory gone with its parent is not listed.
        for position in Set(due).sorted(by: { self.directories[$0].path < self.directories[$1].path }) {
            guard !self.directories[position].gone else { continue }
            listed.insert(position)
            self.list(position, stamp: self.stamps[position], at: now, changes: &changes)
        }

        // Recently changed files, one stat each, unless their directory was just listed.
        for path in self.schedule.recentFiles(at: now) {
            let slash = path.lastIndex(of: "/")
            let directory = slash.map { String(path[..<$0]) } ?? "."
            let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
            guard let position = self.index[directory], !listed.contains(position), !self.directories[position].gone,
                let known = self.directories[position].entries[name]
            else { continue }
            var info = stat()
            self.work.stats += 1
            // Gone or turned into a directory: its directory's stamp moved, and the listing says so.
            guard fstatat(self.rootDescriptor, path, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let stamp = FileStamp(info)
            guard stamp != known, !stamp.isDirectory, !known.isDirectory else { continue }
            self.directories[position].entries[name] = stamp
            self.schedule.changed(path, at: now)
            changes.append((path, false))
        }

        if self.directories.contains(where: \.gone) {
            self.directories.removeAll(where: \.gone)
            self.index = Dictionary(self.directories.enumerated().map { ($1.path, $0) }, uniquingKeysWith: { first, _ in first })
        }
        changes.sort { ($0.path, $0.removed ? 0 : 1) < ($1.path, $1.removed ? 0 : 1) }
        return (changes, self.work)
    }

    private func add(directory path: String, isWatchedRoot: Bool = false) -> Int {
        if let existing = self.index[path], !self.directories[existing].gone { return existing }
        self.directories.append(PolledDirectory(path: path, relative: Array(path.utf8CString), isWatchedRoot: isWatchedRoot))
        self.index[path] = self.directories.count - 1
        return self.directories.count - 1
    }

    private func stamp(of position: Int) -> FileStamp? {
        var info = stat()
        self.work.stats += 1
        let directory = self.directories[position]
        // A watched path may be a symlink (opening it follows it too); below it, none is followed.
        let flags = directory.isWatchedRoot ? 0 : AT_SYMLINK_NOFOLLOW
        return fstatat(self.rootDescriptor, directory.relative, &info, flags) == 0 ? FileStamp(info) : nil
    }

    /// Reads the directory at `position` and stats each entry (`stamp`: its own, taken before);
    /// adds what changed to `changes`. New subdirectories are listed at once, vanished ones
    /// forgotten with everything under them.
    private func list(_ position: Int, stamp: FileStamp?, at now: Moment, changes: inout [(path: String, removed: Bool)]) {
        let directory = self.directories[position]
        let before = directory.entries
        var after: [String: FileStamp] = [:]
        after.reserveCapacity(before.count)
        self.work.listedDirectories += 1
        if let stream = self.open(directory) {  // nil: vanished, its entries count as removed
            defer { closedir(stream) }
            forEachEntry(of: stream) { name, stamp in
                self.work.stats += 1
                guard let stamp else { return }
                if before[name] == nil, self.ignore.isIgnored(child(directory.path, name), isDirectory: stamp.isDirectory) { return }
                after[name] = stamp
            }
        }
        self.directories[position].stamp = stamp
        self.directories[position].entries = after

        for (name, removed) in changesBetween(before, after) {
            let path = child(directory.path, name)
            changes.append((path, removed))
            let old = before[name]
            let new = after[name]
            if old?.isDirectory == true && new?.isDirectory != true { self.forget(path, changes: &changes) }
            if let new, new.isDirectory {
                // A directory's own stamp moving is no change; a replaced directory's entries are
                // compared when it is listed itself (its stamp moved too).
                if old?.isDirectory != true { self.list(self.add(directory: path), stamp: new, at: now, changes: &changes) }
            } else if removed {
                self.schedule.removed(path)
            } else {
                self.schedule.changed(path, at: now)
            }
        }
    }

    private func open(_ directory: PolledDirectory) -> OpaquePointer? {
        let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (directory.isWatchedRoot ? 0 : O_NOFOLLOW)
        let descriptor = openat(self.rootDescriptor, directory.relative, flags)
        guard descriptor >= 0 else { return nil }
        guard let stream = fdopendir(descriptor) else {
            close(descriptor)
            return nil
        }
        return stream
    }

    /// The directory at `path` is gone, and everything under it: each known entry is removed.
    private func forget(_ path: String, changes: inout [(path: String, removed: Bool)]) {
        let prefix = path + "/"
        for position in self.directories.indices where !self.directories[position].gone && !self.directories[position].isWatchedRoot {
            let directory = self.directories[position]
            guard directory.path == path || directory.path.hasPrefix(prefix) else { continue }
            self.directories[position].gone = true
            self.index[directory.path] = nil
            for (name, stamp) in directory.entries {
                let entry = child(directory.path, name)
                changes.append((entry, true))
                if !stamp.isDirectory { self.schedule.removed(entry) }
            }
        }
    }
}

private func child(_ directory: String, _ name: String) -> String {
    directory == "." ? name : directory + "/" + name
}

extension FileStamp {
    init(_ info: stat) {
        self.init(
            modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
            changed: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec),
            size: Int64(info.st_size), inode: UInt64(info.st_ino), isDirectory: (info.st_mode & S_IFMT) == S_IFDIR)
    }
}

/// The loop: tick, deliver, sleep.
private final class PollingThread: @unchecked Sendable {
    // Touched only on the thread itself after start.
    private let poller: TreePoller
    private let tree: PolledTree
    private let onChange: @Sendable ([WatchedChange]) -> Void
    private let onSlowScan: @Sendable (String) -> Void

    init(
        poller: TreePoller, tree: PolledTree, onChange: @escaping @Sendable ([WatchedChange]) -> Void,
        onSlowScan: @escaping @Sendable (String) -> Void
    ) {
        self.poller = poller
        self.tree = tree
        self.onChange = onChange
        self.onSlowScan = onSlowScan
    }

    func start() {
        let thread = Thread { self.run() }
        thread.name = "safe-watch.poll"
        thread.start()
    }

    private func run() {
        var pacing = PollPacing(interval: self.poller.interval)
        while self.poller.pause(pacing.pause) {
            let begun = ContinuousClock.now
            let (changes, work) = self.tree.tick()
            let took = ContinuousClock.now - begun
            self.poller.count(work)
            if !changes.isEmpty {
                self.onChange(changes.map { WatchedChange(path: $0.path, kind: $0.removed ? .removed : .changed) })
            }
            if let message = pacing.scanned(entries: self.tree.entryCount, took: took) { self.onSlowScan(message) }
        }
        self.poller.closeDescriptors()
    }
}
