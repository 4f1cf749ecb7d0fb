import Dispatch
import Glibc
import Logging
import SafeWatchCore
import SafeWatchProcesses
import Synchronization

/// A path the watcher saw change, relative to the project root.
public struct WatchedChange: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Created, written, touched or moved in.
        case changed
        /// Deleted or moved out.
        case removed
        /// The kernel's queue overflowed and the tree was rescanned: anything may have changed.
        case rescanned
    }

    public var path: String
    public var kind: Kind

    public init(path: String, kind: Kind) {
        self.path = path
        self.kind = kind
    }
}

/// Watches a project tree with inotify: one watch per directory that is not ignored.
///
/// New directories get a watch and are scanned at once, so files written into them before the
/// watch existed are reported too. `IN_Q_OVERFLOW` rescans the whole tree. Changes are delivered in
/// batches (one per read of the inotify fd) on the watcher's own queue.
public final class DirectoryWatcher: @unchecked Sendable {
    // All mutable state below is touched only on `queue`.
    private let queue = DispatchQueue(label: "safe-watch.inotify")
    private let root: String
    private let paths: [String]
    private let ignore: IgnoreRules
    private let fd: FileDescriptor
    private let reader: DescriptorReader
    private var directoryOfWatch: [Int32: String] = [:]
    private var watchOfDirectory: [String: Int32] = [:]
    private var onChange: (@Sendable ([WatchedChange]) -> Void)?

    /// - Parameters:
    ///   - root: the project directory (absolute).
    ///   - paths: directories under `root` to watch (relative; "." for all of it).
    public init(root: String, paths: [String] = ["."], ignore: IgnoreRules) throws(SystemError) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        self.paths = paths.map(normalizedWatchPath)
        self.ignore = ignore
        let fd = try Inotify.initialize()
        do {
            self.reader = try DescriptorReader(fd: fd)
        } catch {
            fd.close()
            throw error
        }
        self.fd = fd
    }

    deinit {
        self.reader.stop()
    }

    /// Places the watches (synchronously, so a change made after `start` returns is seen) and
    /// starts delivering changes.
    public func start(onChange: @escaping @Sendable ([WatchedChange]) -> Void) throws(SystemError) {
        var failure: SystemError?
        self.queue.sync {
            self.onChange = onChange
            do throws(SystemError) {
                for path in self.paths {
                    _ = try self.watchTree(path, listingFiles: false)
                }
            } catch {
                failure = error
                return
            }
        }
        if let failure { throw failure }
        self.reader.start(
            name: "safe-watch.inotify",
            onData: { [weak self] bytes in
                let events = Inotify.parse(bytes)
                self?.queue.sync { self?.deliver(events) }
            },
            onEnd: { failure in
                // Nothing else would tell: builds would just stop following edits.
                guard let failure else { return }
                Logger(label: "safe-watch").error(
                    "the file watcher stopped (\(failure)): changes are no longer noticed; restart safe-watch")
            })
    }

    /// How many directories have a watch; read without waiting for the watcher's queue, which
    /// may be busy placing 10,000 watches.
    public var watchedDirectoryCount: Int { self.watchCount.load(ordering: .relaxed) }
    private let watchCount = Atomic<Int>(0)

    /// Stops watching (the inotify descriptor is closed).
    public func stop() {
        self.queue.sync { self.onChange = nil }
        self.reader.stop()
    }

    /// Stops reading the inotify fd until `resumeReading` (tests use it to make the kernel queue
    /// overflow).
    public func pauseReading() {
        self.reader.pause()
    }

    public func resumeReading() {
        self.reader.resume()
    }

    /// The directories watched now, relative to the root (for tests and `doctor`).
    public var watchedDirectories: [String] {
        self.queue.sync { self.watchOfDirectory.keys.sorted() }
    }

    private func deliver(_ events: [Inotify.Event]) {
        var changes: [WatchedChange] = []
        for event in events {
            changes += self.handle(event)
        }
        if !changes.isEmpty {
            self.onChange?(changes)
        }
    }

    private func handle(_ event: Inotify.Event) -> [WatchedChange] {
        if event.has(IN_Q_OVERFLOW) {
            // Events were lost: place watches on directories we may have missed and let the
            // caller treat the whole tree as changed.
            for path in self.paths { _ = try? self.watchTree(path, listingFiles: false) }
            return [WatchedChange(path: ".", kind: .rescanned)]
        }
        if event.has(IN_IGNORED) {
            if let directory = self.directoryOfWatch.removeValue(forKey: event.watch),
                self.watchOfDirectory[directory] == event.watch
            {
                self.watchOfDirectory.removeValue(forKey: directory)
                self.watchCount.store(self.watchOfDirectory.count, ordering: .relaxed)
            }
            return []
        }
        guard let directory = self.directoryOfWatch[event.watch], !event.name.isEmpty else { return [] }
        let path = Self.join(directory, event.name)
        let isDirectory = event.has(IN_ISDIR)
        if self.ignore.isIgnored(path, isDirectory: isDirectory) { return [] }
        if isDirectory {
            if event.has(IN_CREATE) || event.has(IN_MOVED_TO) {
                // Files may already be inside: report them all.
                let files = (try? self.watchTree(path, listingFiles: true)) ?? []
                return files.map { WatchedChange(path: $0, kind: .changed) }
            }
            if event.has(IN_MOVED_FROM) || event.has(IN_DELETE) {
                self.forgetTree(path)
                return [WatchedChange(path: path, kind: .removed)]
            }
            return []
        }
        let removed = event.has(IN_DELETE) || event.has(IN_MOVED_FROM)
        return [WatchedChange(path: path, kind: removed ? .removed : .changed)]
    }

    /// Watches `relative` and every directory below it that is not ignored; returns the files found
    /// when `listingFiles` (a new directory's files are changes; at start they are not, and matching
    /// 100,000 names against the ignore rules would double the time to the first build).
    private func watchTree(_ relative: String, listingFiles: Bool) throws(SystemError) -> [String] {
        var files: [String] = []
        var pending = [relative]
        while let directory = pending.popLast() {
            let absolute = directory == "." ? self.root : self.root + "/" + directory
            let watch: Int32
            do {
                watch = try Inotify.addWatch(self.fd, path: absolute)
            } catch where [.noSuchFileOrDirectory, .notDirectory, .permissionDenied].contains(error.errno) {
                continue  // gone already, or not ours to read
            }
            if let old = self.watchOfDirectory[directory], old != watch { self.directoryOfWatch.removeValue(forKey: old) }
            self.directoryOfWatch[watch] = directory
            self.watchOfDirectory[directory] = watch
            self.watchCount.store(self.watchOfDirectory.count, ordering: .relaxed)
            guard let stream = opendir(absolute) else { continue }
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                var type = entry.pointee.d_type
                if type == UInt8(DT_REG) && !listingFiles { continue }  // no string made for it
                let name = entryName(entry)
                if name == "." || name == ".." { continue }
                let path = Self.join(directory, name)
                if type == UInt8(DT_UNKNOWN) || type == UInt8(DT_LNK) {
                    var info = stat()
                    // Follow neither symlinks into other trees nor loops: lstat.
                    type = lstat(self.root + "/" + path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR ? UInt8(DT_DIR) : UInt8(DT_REG)
                }
                if type == UInt8(DT_DIR) {
                    if !self.ignore.isIgnored(path, isDirectory: true) { pending.append(path) }
                } else if listingFiles, !self.ignore.isIgnored(path, isDirectory: false) {
                    files.append(path)
                }
            }
        }
        return files
    }

    private func forgetTree(_ relative: String) {
        let prefix = relative + "/"
        for (directory, watch) in self.watchOfDirectory where directory == relative || directory.hasPrefix(prefix) {
            Inotify.removeWatch(self.fd, watch)
            self.watchOfDirectory.removeValue(forKey: directory)
            self.watchCount.store(self.watchOfDirectory.count, ordering: .relaxed)
            self.directoryOfWatch.removeValue(forKey: watch)
        }
    }

    private static func join(_ directory: String, _ name: String) -> String {
        directory == "." ? name : directory + "/" + name
    }
}
