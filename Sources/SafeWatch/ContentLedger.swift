import Crypto
import Foundation
import Synchronization

/// What each watched file last held, as far as safe-watch knows: the judge of whether an event is a
/// change. A save that writes the same bytes, a file safe-watch wrote itself (the migrations sum
/// file) and a file the build wrote (SwiftPM's Package.resolved) raise events too; none of them is
/// a reason to build again.
public final class ContentLedger: Sendable {
    /// A file's content in a few bytes.
    enum Fingerprint: Equatable, Sendable {
        case absent
        /// There when safe-watch started; its content was not read.
        case present
        case content([UInt8])
        /// A directory or a file too large to hash on every save: always counts as changed.
        case unjudged
    }

    /// Larger files are taken as changed without reading them.
    static let largestHashed = 16 << 20

    private let directory: String
    private let known = Mutex<[String: Fingerprint]>([:])
    /// The files there at start, as `startKey`s: a hash per file instead of its path, because a
    /// tree of 100,000 files cost 20 MB as paths (a collision among 64-bit hashes only ever makes a
    /// temporary file's coming and going count as a change).
    private let presentAtStart = Mutex<Set<Int>>([])

    /// - Parameter directory: the project directory the relative paths are in.
    public init(directory: String) {
        self.directory = directory
    }

    /// A path judged changed, and whether it is there now (a deletion is a change too).
    public struct Change: Equatable, Sendable {
        public var path: String
        public var isThere: Bool
    }

    /// In a burst of more paths than this (a checkout, a code generator), a file whose content was
    /// never read is judged by whether it is there, without reading it: there at start and touched,
    /// or new, it changed whatever it holds, and reading 5,000 files put 55 ms between the end of
    /// the debounce and the build (B5). It is then recorded as there, content unread, so the next
    /// save of it counts even if it writes the same bytes. Files whose content was recorded are
    /// still read and compared.
    static let readsPerBurst = 256

    /// The paths whose content differs from what was last recorded for them (or that were never
    /// recorded), each recorded as it is now. Paths that are not files (notes such as the watcher's
    /// "(the whole tree …)") pass through.
    public func changed(_ paths: [String]) -> [String] {
        self.changes(paths).map(\.path)
    }

    /// `changed(_:)`, with whether each changed path is there now.
    public func changes(_ paths: [String]) -> [Change] {
        let readsEveryFile = paths.count <= Self.readsPerBurst
        return paths.compactMap { path in
            guard !path.hasPrefix("(") else { return Change(path: path, isThere: false) }
            let now = self.fingerprint(path, readingContent: readsEveryFile || Self.judgedByContent(self.recorded(path)))
            // What was recorded is taken in the same lock as `now` replaces it, so a `willWrite`
            // since the look above is what `now` is compared with.
            let recorded = self.known.withLock { known in
                defer { known[path] = now }
                return known[path]
            }
            let before = recorded ?? self.atStart(path)
            guard Self.isChange(from: before, to: now) else { return nil }
            return Change(path: path, isThere: now != .absent)
        }
    }

    /// What is recorded for `path`, or what is known of it from the start.
    private func recorded(_ path: String) -> Fingerprint? {
        self.known.withLock { $0[path] } ?? self.atStart(path)
    }

    private func atStart(_ path: String) -> Fingerprint? {
        self.presentAtStart.withLock { $0.contains(Self.startKey(path)) } ? .present : nil
    }

    /// Whether telling a change needs the file's content: only when its content was recorded.
    static func judgedByContent(_ before: Fingerprint?) -> Bool {
        switch before {
        case .content, .unjudged: true
        case .present, .absent, nil: false
        }
    }

    /// Whether a path recorded as `before` (nil: never seen) and found as `now` changed.
    static func isChange(from before: Fingerprint?, to now: Fingerprint) -> Bool {
        // Never seen and not there: a temporary file that came and went (an editor's, or an
        // atomic write's) is no change.
        guard let before else { return now != .absent }
        return now == .unjudged || now == .present || before != now
    }

    /// The files there at start (relative paths): deleting one is a change, while a path never
    /// seen that comes and goes is not.
    public func seed(present paths: some Sequence<String>) {
        self.seed(presentKeys: Set(paths.map(Self.startKey)))
    }

    /// `seed(present:)` with the paths already turned into `startKey`s.
    public func seed(presentKeys: Set<Int>) {
        self.presentAtStart.withLock { $0.formUnion(presentKeys) }
    }

    /// What `seed` keeps of a relative path.
    public static func startKey(_ path: String) -> Int { path.hashValue }

    /// Records what `path` holds now, without judging it: it was written by the build.
    public func recordCurrent(_ path: String) {
        let now = self.fingerprint(path)
        self.known.withLock { $0[path] = now }
    }

    /// Records `contents` for the absolute `path` that safe-watch is about to write, so the event
    /// its own write raises is not taken for an edit.
    public func willWrite(_ absolutePath: String, contents: Data) {
        guard let path = self.relative(absolutePath) else { return }
        self.known.withLock { $0[path] = .content(Array(SHA256.hash(data: contents))) }
    }

    private func relative(_ absolutePath: String) -> String? {
        let prefix = self.directory.hasSuffix("/") ? self.directory : self.directory + "/"
        return absolutePath.hasPrefix(prefix) ? String(absolutePath.dropFirst(prefix.count)) : nil
    }

    /// What `path` holds now; without `readingContent`, only whether it is there (`.present`).
    private func fingerprint(_ path: String, readingContent: Bool = true) -> Fingerprint {
        var info = stat()
        guard lstat(self.directory + "/" + path, &info) == 0 else { return .absent }
        guard readingContent else { return .present }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_size <= Self.largestHashed,
            let data = FileManager.default.contents(atPath: self.directory + "/" + path)
        else { return .unjudged }
        return .content(Array(SHA256.hash(data: data)))
    }
}
