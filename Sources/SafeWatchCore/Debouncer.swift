/// Gathers a burst of changed paths into one change set, released once the tree has been quiet
/// for `quietPeriod` (a `git checkout` of 5,000 files is one build).
public struct Debouncer: Sendable {
    public var quietPeriod: Duration
    private var pending: [String] = []
    private var pendingSet: Set<String> = []
    private var lastChange: Moment?

    public init(quietPeriod: Duration) {
        self.quietPeriod = quietPeriod
    }

    /// Records changes seen at `seen` (when a watcher read them, which may be a little before
    /// they are recorded); returns when to look again (the end of the quiet period). Changes from
    /// two watchers can arrive out of order: the quiet period runs from the latest seen.
    public mutating func record(_ paths: [String], at seen: Moment) -> Moment {
        for path in paths where self.pendingSet.insert(path).inserted {
            self.pending.append(path)
        }
        let latest = max(self.lastChange ?? seen, seen)
        self.lastChange = latest
        return latest + self.quietPeriod
    }

    /// The gathered paths once the tree has been quiet long enough; nil while the burst goes on
    /// (then look again at `nextCheck`).
    public mutating func release(at now: Moment) -> [String]? {
        guard let lastChange, now - lastChange >= self.quietPeriod, !self.pending.isEmpty else { return nil }
        defer {
            self.pending = []
            self.pendingSet = []
            self.lastChange = nil
        }
        return self.pending
    }

    /// When the current burst becomes quiet, if one is pending.
    public var nextCheck: Moment? { self.lastChange.map { $0 + self.quietPeriod } }
}

/// SwiftPM's incremental check compares whole-second mtimes: a file edited in the same wall-clock
/// second as its previous build can be skipped ("Build complete!", old code). Wait until the
/// clock's whole second is past the newest changed file's mtime second.
public func sameSecondWait(now wallClockSeconds: Double, newestModification: Double?) -> Duration {
    guard let newest = newestModification else { return .zero }
    let safe = newest.rounded(.down) + 1
    guard wallClockSeconds < safe else { return .zero }
    return .nanoseconds(Int64(((safe - wallClockSeconds) * 1e9).rounded(.up)) + 1_000_000)
}
