import Foundation
import SafeWatchCore
import SafeWatchSystem

/// From file-system events to the changes the state machine hears about: inotify where the file
/// system delivers its events and stat polling where it does not, the classifier (build input,
/// migration, the configuration, or nothing), the debounce, and the content ledger (a save of the
/// same bytes, safe-watch's own writes and the build's are no edit).
///
/// Owned by the runtime and used only from it; the watchers' threads only post events.
final class WatchPipeline {
    /// What one batch of events means for the supervisor.
    struct Intake {
        /// When the burst these changes belong to will have been quiet long enough.
        var quietAt: Moment?
    }

    /// A burst that went quiet, judged by content.
    struct Burst {
        /// Changed files, those still there first: an editor's temporary file (`sedX1b2`,
        /// `.x.swp.tmp`) changed too, but is gone by the time the build starts.
        var paths: [String]
        /// A migration file changed in it: the runtime prints the migrations verdict.
        var touchedMigrations: Bool
        /// Files under `[browser] assets`: they go to the browser, and build nothing.
        var assets: [(path: String, kind: AssetKind)] = []
        /// The configuration file changed in it: reload it, once the burst is over. An editor
        /// that writes in place truncates first: read at once, the file would be empty, and its
        /// defaults would replace the settings.
        var configurationChanged = false
    }

    private var project: Project
    private let reporter: Reporter
    private var classifier: ChangeClassifier
    private var debouncer: Debouncer
    /// Judges changes by content once the tree is quiet.
    let ledger: ContentLedger
    private var watcher: DirectoryWatcher?
    /// Trees polled instead (file systems without inotify events, or `poll` forced).
    private var pollers: [TreePoller] = []
    /// The polled trees, e.g. "src (every 500 ms)", for `safe-watch status`.
    private(set) var polledTrees: [String] = []
    /// A migration file changed in the burst being debounced.
    private var migrationsChangedInBurst = false
    /// Files changed since the last build started (the builder's same-second wait looks at them).
    private var changedSinceBuild: [String] = []
    /// The asset files in the burst being debounced, and what each asks of the browser.
    private var assetsInBurst: [String: AssetKind] = [:]
    /// The configuration file, if it changed in the burst: it shares the debounce, and is
    /// reloaded rather than built.
    private var configurationInBurst: String?

    init(project: Project, reporter: Reporter) {
        self.project = project
        self.reporter = reporter
        self.classifier = Self.classifier(for: project)
        self.debouncer = Debouncer(quietPeriod: project.configuration.watch.debounce)
        self.ledger = ContentLedger(directory: project.directory)
    }

    var watchedDirectoryCount: Int { self.watcher?.watchedDirectoryCount ?? 0 }

    /// When the debounce should be looked at again, if a burst is pending.
    var nextCheck: Moment? { self.debouncer.nextCheck }

    /// Records what is in the tree now, so that the first save of a file is judged against it.
    func seedLedger() {
        var present = Set<Int>()
        forEachFile(root: self.project.directory, paths: self.project.configuration.watch.paths, ignore: Self.ignoreRules(for: self.project)) {
            present.insert(ContentLedger.startKey($0))
        }
        self.ledger.seed(presentKeys: present)
    }

    /// inotify for the watched paths whose file system delivers its events, stat polling for the
    /// others (FUSE, virtiofs, 9p, NFS, CIFS: `[watch] poll = "auto"`), or for all when forced.
    /// `changed` is called on the watchers' threads.
    func start(changed: @escaping @Sendable ([WatchedChange]) -> Void) throws {
        let configuration = self.project.configuration
        let ignore = Self.ignoreRules(for: self.project)
        var inotifyPaths: [String] = []
        var polled: [Duration: [String]] = [:]
        var reasons: [String] = []
        for path in configuration.watch.paths {
            let absolute = path == "." ? self.project.directory : self.project.directory + "/" + path
            let kind = fileSystemKind(of: absolute)
            if kind == nil {
                self.reporter.warning(
                    "[watch] paths: \(path) does not exist or cannot be read, so nothing under it is watched; paths are relative to the project")
            }
            guard let interval = configuration.watch.poll.interval(losesInotifyEvents: kind?.losesInotifyEvents ?? false) else {
                inotifyPaths.append(path)
                continue
            }
            polled[interval, default: []].append(path)
            if let kind, kind.losesInotifyEvents, configuration.watch.poll == .auto {
                reasons.append("\(path) is on \(kind.name), where inotify misses changes made outside this machine")
            }
        }
        if !inotifyPaths.isEmpty {
            let watcher = try DirectoryWatcher(root: self.project.directory, paths: inotifyPaths, ignore: ignore)
            try watcher.start(onChange: changed)
            self.watcher = watcher
        }
        let reporter = self.reporter
        for (interval, paths) in polled.sorted(by: { $0.key < $1.key }) {
            let poller = try TreePoller(root: self.project.directory, paths: paths, ignore: ignore, interval: interval)
            poller.start(onChange: changed, onSlowScan: { reporter.warning($0) })
            self.pollers.append(poller)
            self.polledTrees += paths.map { "\($0) (every \(interval.humanReadable))" }
            let why = reasons.isEmpty ? "[watch] poll, --poll or SAFE_WATCH_POLL" : reasons.joined(separator: "; ")
            reporter.info("polling every \(interval.humanReadable): \(paths.joined(separator: ", ")) (\(why))")
        }
    }

    func stop() {
        self.watcher?.stop()
        self.watcher = nil
        for poller in self.pollers { poller.stop() }
        self.pollers = []
        self.polledTrees = []
    }

    /// Classifies a batch of events and adds the build inputs among them to the burst.
    func take(_ changes: [WatchedChange], at now: Moment) -> Intake {
        var intake = Intake()
        var buildPaths: [String] = []
        var assetPaths: [String] = []
        for change in changes {
            if change.kind == .rescanned {
                buildPaths.append("(the whole tree: inotify queue overflowed)")
                continue
            }
            switch self.classifier.classify(change.path) {
            case .build: buildPaths.append(change.path)
            case .migration:
                self.migrationsChangedInBurst = true
                buildPaths.append(change.path)
            case .configuration:
                self.configurationInBurst = change.path
                buildPaths.append(change.path)
            case .asset(let kind):
                self.assetsInBurst[change.path] = kind
                assetPaths.append(change.path)
            case .irrelevant: break
            }
        }
        guard !buildPaths.isEmpty || !assetPaths.isEmpty else { return intake }
        self.changedSinceBuild += buildPaths.filter { !$0.hasPrefix("(") && $0 != self.configurationInBurst }
        // Assets share the debounce: an editor's save is one event for the browser, not three.
        intake.quietAt = self.debouncer.record(buildPaths + assetPaths, at: now)
        return intake
    }

    /// The burst, if it has been quiet long enough and still holds a change once judged by
    /// content. What a running build writes (`ownOutput`) is its own, not an edit.
    func release(at now: Moment, ignoring ownOutput: [String]) -> Burst? {
        guard let released = self.debouncer.release(at: now) else { return nil }
        let ownOutput = Set(ownOutput)
        var changes = self.ledger.changes(released)
        changes.removeAll { ownOutput.contains($0.path) }
        let assetKinds = self.assetsInBurst
        self.assetsInBurst = [:]
        let assets = changes.compactMap { change in assetKinds[change.path].map { (path: change.path, kind: $0) } }
        changes.removeAll { assetKinds[$0.path] != nil }
        let configuration = self.configurationInBurst
        self.configurationInBurst = nil
        let configurationChanged = changes.contains { $0.path == configuration }
        changes.removeAll { $0.path == configuration }
        guard !changes.isEmpty || !assets.isEmpty || configurationChanged else { return nil }
        let touchedMigrations = self.migrationsChangedInBurst
        self.migrationsChangedInBurst = false
        // The files still there first: the build's reason names one of them.
        let paths = changes.filter(\.isThere).map(\.path) + changes.filter { !$0.isThere }.map(\.path)
        return Burst(paths: paths, touchedMigrations: touchedMigrations, assets: assets, configurationChanged: configurationChanged)
    }

    /// The files changed since the last build started; the next one starts now.
    func takeChangedSinceBuild() -> [String] {
        defer { self.changedSinceBuild = [] }
        return self.changedSinceBuild
    }

    /// A new configuration: the classifier and debounce follow it, and the watchers are made
    /// again when `[watch]` changed.
    func reconfigure(_ project: Project, changed: @escaping @Sendable ([WatchedChange]) -> Void) {
        let watchChanged = project.configuration.watch != self.project.configuration.watch
        self.project = project
        self.classifier = Self.classifier(for: project)
        self.debouncer.quietPeriod = project.configuration.watch.debounce
        guard watchChanged else { return }
        self.stop()
        do {
            try self.start(changed: changed)
        } catch {
            self.reporter.warning("cannot watch with the new [watch] settings: \(error)")
        }
    }

    /// Decides what a changed path means; made once per configuration, not per event.
    private static func classifier(for project: Project) -> ChangeClassifier {
        var classifier = ChangeClassifier(
            extensions: Set(project.configuration.watch.extensions),
            configurationPath: project.relativeConfigurationFile, ignore: Self.ignoreRules(for: project),
            migrationsDirectory: project.configuration.migrations.dir)
        // Without the browser side nobody would hear of an asset change: they stay build inputs then.
        classifier.assetDirectories = project.liveReloadSettings(listenAddresses: []).settings?.assetDirectories ?? []
        return classifier
    }

    /// `watch.ignore` and the project's `.gitignore`.
    private static func ignoreRules(for project: Project) -> IgnoreRules {
        IgnoreRules.watching(project: project.directory, patterns: project.configuration.watch.ignore)
    }
}
