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

/// Watches a tree by scanning it with `lstat` every `interval`: for file systems that
/// deliver no inotify events (FUSE, virtiofs, 9p, NFS, CIFS). Work is one stat per non-ignored
/// entry per tick, no reading of contents. Changes come out as the inotify watcher reports them,
/// so debounce and classification are the same.
///
/// A scan that takes longer than the interval stretches the interval to the scan's own length
/// (at most half of the time scanning) and says so once, instead of piling scans up.
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

    /// Takes the first scan (synchronously: a change made after `start` returns is seen), then
    /// polls on a thread of its own. `onSlowScan` hears when scans outgrow the interval.
    public func start(onChange: @escaping @Sendable ([WatchedChange]) -> Void, onSlowScan: @escaping @Sendable (String) -> Void = { _ in }) {
        let baseline = self.scan()
        let thread = PollingThread(poller: self, baseline: baseline, onChange: onChange, onSlowScan: onSlowScan)
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

    func closeDescriptors() {
        self.state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            self.wake.readEnd.close()
            self.wake.writeEnd.close()
        }
    }

    /// Every non-ignored entry under the watched paths, with what `lstat` says of it. Paths in
    /// `known` (the previous scan) passed the ignore rules already; only new ones are matched again.
    func scan(known: [String: FileStamp] = [:]) -> [String: FileStamp] {
        scanTree(root: self.root, paths: self.paths, ignore: self.ignore, known: known)
    }
}

/// Every non-ignored entry under `paths` (relative to `root`), with what `lstat` says of it:
/// the poller's scan, and what `doctor` counts the directories to watch with. Symlinks are not
/// followed, as the inotify watcher follows none. Paths in `known` passed the ignore rules
/// already; only new ones are matched again.
public func scanTree(root: String, paths: [String], ignore: IgnoreRules, known: [String: FileStamp] = [:]) -> [String: FileStamp] {
    var stamps: [String: FileStamp] = [:]
    stamps.reserveCapacity(known.count)
    var pending = paths.map(normalizedWatchPath)
    while let directory = pending.popLast() {
        let absolute = directory == "." ? root : root + "/" + directory
        guard let stream = opendir(absolute) else { continue }  // vanished: its entries count as removed
        defer { closedir(stream) }
        let descriptor = dirfd(stream)
        while let entry = readdir(stream) {
            let name = entryName(entry)
            if name == "." || name == ".." { continue }
            var info = stat()
            guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
            let path = directory == "." ? name : directory + "/" + name
            if known[path] == nil, ignore.isIgnored(path, isDirectory: isDirectory) { continue }
            stamps[path] = FileStamp(
                modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                changed: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec),
                size: Int64(info.st_size), inode: UInt64(info.st_ino), isDirectory: isDirectory)
            if isDirectory { pending.append(path) }
        }
    }
    return stamps
}

/// The loop: scan, compare, deliver, sleep.
private final class PollingThread: @unchecked Sendable {
    // Touched only on the thread itself after start.
    private let poller: TreePoller
    private var previous: [String: FileStamp]
    private let onChange: @Sendable ([WatchedChange]) -> Void
    private let onSlowScan: @Sendable (String) -> Void

    init(
        poller: TreePoller, baseline: [String: FileStamp], onChange: @escaping @Sendable ([WatchedChange]) -> Void,
        onSlowScan: @escaping @Sendable (String) -> Void
    ) {
        self.poller = poller
        self.previous = baseline
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
            let current = self.poller.scan(known: self.previous)
            let took = ContinuousClock.now - begun
            let changes = changesBetween(self.previous, current)
            self.previous = current
            if !changes.isEmpty {
                self.onChange(changes.map { WatchedChange(path: $0.path, kind: $0.removed ? .removed : .changed) })
            }
            if let message = pacing.scanned(entries: current.count, took: took) { self.onSlowScan(message) }
        }
        self.poller.closeDescriptors()
    }
}
