import Foundation
import NIOCore
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// The event loop: feeds events to the `Supervisor` state machine and carries out its actions
/// with real processes, sockets and files. Every decision is the core's: the state machine's
/// (builds, generations, what a control request answers, arming the hard stop, holding traffic
/// when the server it goes to exits), `StopDrain`'s (how a stopped server drains) and
/// `ConfigurationReload`'s (which reloaded settings apply). What is left here is carrying out.
///
/// Every task it starts is kept in `tasks` until it ends, cancelled when it is superseded or moot
/// (a candidate's probing when it is superseded, stopped or exits), and at the latest when `run`
/// returns.
public actor SupervisorRuntime {

    /// Everything that happens to the runtime, in the order it is handled.
    enum Event: Sendable {
        /// `seenAt`: when the watcher read them, which is when their quiet period starts (the
        /// event may wait for the loop a while under load, and the debounce must not add that).
        case filesChanged([WatchedChange], seenAt: Moment)
        case debounceElapsed
        case buildFinished(BuildID, BuildOutcome)
        case candidateHealthy(Generation)
        case candidateUnhealthy(Generation, String)
        case processExited(Generation, pid_t, ExitStatus)
        case migrationsChecked(Generation, blockedBecause: String?)
        case timerFired(SupervisorTimer)
        case signal(Int32)
        /// Time to tell systemd's watchdog the loop is alive.
        case watchdogTick
        /// Time to look whether `.safe-watch` is still the directory safe-watch made.
        case stateDirectoryCheck
    }

    /// How often safe-watch looks for its state directory having been deleted under it.
    static let stateDirectoryCheckInterval: Duration = .seconds(1)

    private var project: Project
    private var machine: Supervisor
    private let reporter: Reporter
    private let events: AsyncStream<Event>
    private let post: AsyncStream<Event>.Continuation
    private let start = ContinuousClock.now
    private let launcher: ChildLauncher
    private let builder: Builder
    private let stager: Stager
    private let serverLauncher: ServerLauncher
    private let router: TrafficRouter
    private let watch: WatchPipeline
    private var servers: [pid_t: ServerProcess] = [:]
    private var tasks = OwnedTasks()
    private var exitCode: Int32?
    /// When stopping must be over, from the first stop signal (`stop_timeout` later) or a second
    /// one (at once): what is left after the servers, orphans they left behind, gets only the rest.
    private var stopDeadline: ContinuousClock.Instant?
    private let serviceManager: ServiceManager
    private var serviceStatus: ServiceStatus
    /// What `safe-watch status` shows.
    private var board: StatusBoard
    private let startedAt = Date()
    private let publicAddresses: [String]
    /// The state directory as made at start (device, inode): another one there means it was
    /// deleted, and what it held with it.
    private var stateDirectoryIdentity: FileIdentity?
    /// Takes the instance lock and control socket again in a recreated state directory.
    private var restoreState: @Sendable () async -> Void = {}

    /// - Parameters:
    ///   - sharedSockets: in socket mode, the sockets passed to every generation.
    ///   - serviceManager: systemd, when safe-watch runs as a service.
    public init(
        project: Project, reporter: Reporter, router: TrafficRouter, group: any EventLoopGroup,
        sharedSockets: [PublicSockets.Socket] = [], serviceManager: ServiceManager = ServiceManager(),
        publicAddresses: [String] = []
    ) {
        self.publicAddresses = publicAddresses
        self.serviceManager = serviceManager
        self.serviceStatus = ServiceStatus(
            buildTimeout: project.configuration.build.timeout, startupTimeout: project.configuration.health.startupTimeout)
        self.project = project
        let policy = Self.policy(project, runsAsService: serviceManager.isPresent)
        self.machine = Supervisor(policy: policy)
        self.board = StatusBoard(gatesMigrations: policy.gatesMigrations)
        self.reporter = reporter
        (self.events, self.post) = AsyncStream<Event>.makeStream()
        self.launcher = ChildLauncher()
        self.builder = Builder(launcher: self.launcher)
        self.stager = Stager(stateDirectory: project.stateDirectory)
        self.serverLauncher = ServerLauncher(
            launcher: self.launcher, prober: Prober(group: group, launcher: self.launcher, projectDirectory: project.directory),
            stager: self.stager, reporter: reporter, projectDirectory: project.directory, stateDirectory: project.stateDirectory,
            sharedSockets: sharedSockets, publicAddresses: publicAddresses)
        self.router = router
        self.watch = WatchPipeline(project: project, reporter: reporter)
    }

    /// Runs until stopped by a signal; returns the exit code.
    public func run(signals: AsyncStream<Int32>) async throws -> Int32 {
        LeftoverProcesses.stopServersOfAPreviousRun(
            stateDirectory: self.project.stateDirectory, run: self.project.configuration.run, reporter: self.reporter)
        self.stager.discardAll()
        let post = self.post
        try self.watch.start(changed: self.changedFilesPoster)
        self.watch.seedLedger()
        defer { self.tasks.cancelAll() }
        self.own(.signals) {
            for await signal in signals { post.yield(.signal(signal)) }
        }
        self.startWatchdog()
        self.stateDirectoryIdentity = FileIdentity(path: self.project.stateDirectory)
        self.own(.stateDirectoryCheck) {
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.stateDirectoryCheckInterval)
                post.yield(.stateDirectoryCheck)
            }
        }
        self.perform(self.machine.started(at: self.now))
        for await event in self.events {
            TestHooks.stallWhileAsked()
            self.handle(event)
            if let exitCode = self.exitCode {
                self.watch.stop()
                self.tasks.cancelAll()
                await LeftoverProcesses.stopOrphans(until: self.stopDeadline ?? .now + self.project.configuration.run.stopTimeout)
                return exitCode
            }
        }
        return 0
    }

    /// Runs `work` in a task kept under `key` until it ends; a task it supersedes is cancelled.
    private func own(_ key: TaskKey, _ work: @escaping @Sendable () async -> Void) {
        let id = self.tasks.nextID()
        self.tasks.keep(
            key, id: id,
            Task {
                await work()
                self.tasks.ended(key, id: id)
            })
    }

    private var now: Moment { ContinuousClock.now - self.start }

    /// What the watchers call on their own threads: the changes, stamped with the moment they were
    /// read.
    private var changedFilesPoster: @Sendable ([WatchedChange]) -> Void {
        let post = self.post
        let start = self.start
        return { changes in post.yield(.filesChanged(changes, seenAt: ContinuousClock.now - start)) }
    }

    /// WATCHDOG=1 at half of WATCHDOG_USEC. The tick goes through the event loop like every other
    /// event, so a wedged supervisor stops answering and systemd restarts it; a long build or
    /// probe does not (they run in their own tasks).
    private func startWatchdog() {
        let setting = WatchdogSetting(
            usec: ProcessInfo.processInfo.environment["WATCHDOG_USEC"], pid: ProcessInfo.processInfo.environment["WATCHDOG_PID"],
            ownPID: getpid())
        if let warning = setting.warning { self.reporter.warning(warning) }
        guard let period = setting.period, self.serviceManager.isPresent else { return }
        self.serviceManager.send("WATCHDOG=1")
        let post = self.post
        self.own(.watchdog) {
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                post.yield(.watchdogTick)
            }
        }
    }

    /// The configuration's policy; generations pass the migrations gate when the project has a
    /// migrations directory.
    static func policy(_ project: Project, runsAsService: Bool) -> SupervisorPolicy {
        var policy = project.configuration.policy
        policy.runsAsService = runsAsService
        var isDirectory: ObjCBool = false
        policy.gatesMigrations = FileManager.default.fileExists(
            atPath: project.migrationsDirectory, isDirectory: &isDirectory) && isDirectory.boolValue
        return policy
    }

    // MARK: Events

    private func handle(_ event: Event) {
        let now = self.now
        switch event {
        case .filesChanged(let changes, let seenAt):
            let intake = self.watch.take(changes, at: seenAt)
            if let quietAt = intake.quietAt { self.scheduleDebounceCheck(at: quietAt) }
        case .debounceElapsed:
            // What the running build writes is its own output, not an edit.
            let burst = self.watch.release(at: now, ignoring: self.machine.isBuilding ? self.buildWrittenFiles : [])
            guard let burst else {
                if let next = self.watch.nextCheck { self.scheduleDebounceCheck(at: next, again: true) }
                return
            }
            if burst.configurationChanged { self.perform(self.machine.signalReceived(.reload, at: now)) }
            if burst.touchedMigrations { self.reportMigrationsVerdict() }
            for asset in burst.assets { self.reporter.assetChanged(asset.path, kind: asset.kind) }
            guard !burst.paths.isEmpty else { return }
            self.perform(self.machine.filesChanged(burst.paths, at: now))
        case .buildFinished(let id, let outcome):
            for path in self.buildWrittenFiles { self.watch.ledger.recordCurrent(path) }
            self.perform(self.machine.buildFinished(id, outcome, at: now))
        case .candidateHealthy(let generation):
            self.perform(self.machine.candidateHealthy(generation, at: now))
        case .candidateUnhealthy(let generation, let reason):
            self.perform(self.machine.candidateUnhealthy(generation, reason: reason, at: now))
        case .processExited(let generation, let pid, let status):
            let server = self.servers.removeValue(forKey: pid)
            self.tasks.cancel(.probe(pid))
            let diagnosis = server.flatMap { $0.handoff.diagnoseExit(output: $0.output.lines) }
            self.perform(self.machine.processExited(generation, status, at: now, diagnosis: diagnosis))
        case .timerFired(let timer):
            self.perform(self.machine.timerFired(timer, at: now))
        case .migrationsChecked(let generation, let reason):
            self.perform(self.machine.migrationsChecked(generation, blockedBecause: reason, at: now))
        case .watchdogTick:
            self.serviceManager.send("WATCHDOG=1")
        case .stateDirectoryCheck:
            self.checkStateDirectory()
        case .signal(let number):
            // Asked twice, stop at once: the orphans too.
            if number != SIGHUP, self.stopDeadline != nil { self.stopDeadline = .now }
            self.perform(self.machine.signalReceived(number == SIGHUP ? .reload : .terminate, at: now))
        }
    }

    /// One timer for the whole burst (not one per batch of events): when it fires before the tree
    /// is quiet, it is set `again` for the end of the new quiet period (replacing one that changes
    /// set meanwhile).
    private func scheduleDebounceCheck(at deadline: Moment, again: Bool = false) {
        guard again || !self.tasks.contains(.debounceCheck) else { return }
        let post = self.post
        let delay = deadline - self.now
        self.own(.debounceCheck) {
            try? await Task.sleep(for: delay)
            post.yield(.debounceElapsed)
        }
    }

    // MARK: Actions

    private func perform(_ actions: [SupervisorAction]) {
        for action in actions {
            self.perform(action)
        }
    }

    private func perform(_ action: SupervisorAction) {
        let post = self.post
        switch action {
        case .startBuild(let id):
            let changed = self.watch.takeChangedSinceBuild()
            guard let settings = self.buildSettings else {
                post.yield(.buildFinished(id, .failed(BuildFailure(summary: "no build command: set product or build.command in safe-watch.toml"))))
                return
            }
            let builder = self.builder
            self.own(.build(id)) {
                let outcome = await builder.build(id, settings: settings, changedFiles: changed)
                post.yield(.buildFinished(id, outcome))
            }
        case .cancelBuild(let id):
            self.builder.cancel(id)
        case .stage(let build, let generation):
            guard let binary = self.buildSettings?.binary else { return }
            let absolute = binary.hasPrefix("/") ? binary : self.project.directory + "/" + binary
            do {
                _ = try self.stager.stage(binary: absolute, as: generation)
                self.perform(self.machine.staged(generation, at: self.now))
            } catch {
                self.perform(self.machine.stagingFailed(build, reason: "\(error)"))
            }
        case .launchCandidate(let generation, _):
            // A crash restart right after `git clean -fdx` must not run a binary that is gone.
            self.checkStateDirectory()
            self.launch(generation)
        case .checkMigrations(let generation):
            let gate = self.migrationsGate
            self.own(.migrationsCheck(generation)) {
                let reason = await gate.check()
                post.yield(.migrationsChecked(generation, blockedBecause: reason))
            }
        case .switchTraffic(let generation):
            if let server = self.servers.values.first(where: { $0.generation == generation && !$0.hasExited }),
                self.project.configuration.serve.mode.forwardsToPrivatePort, let port = server.port
            {
                self.router.setActive(TrafficRouter.Target(generation: generation, port: port))
            }
        case .holdTraffic(let generation):
            // Held until a server is healthy again, unless another process of it still serves.
            if self.router.active?.generation == generation, !self.servers.values.contains(where: { $0.generation == generation }) {
                self.router.setActive(nil)
            }
        case .stop(let generation, let signal, let timeout):
            // Still spawning: it is stopped as soon as it has a pid (`started`).
            self.tasks.cancel(.launch(generation))
            for server in self.servers.values where server.generation == generation {
                self.tasks.cancel(.probe(server.pid))
                self.stop(server, signal: signal, timeout: timeout)
            }
        case .schedule(let timer, let delay):
            self.own(.timer(timer)) {
                try? await Task.sleep(for: delay)
                post.yield(.timerFired(timer))
            }
        case .discardGenerations(let generations):
            self.stager.discard(generations)
        case .reloadConfig:
            self.serviceManager.send(self.serviceStatus.reloadStarted(monotonicMicroseconds: ServiceManager.monotonicMicroseconds()))
            self.reloadConfiguration()
        case .armHardStop:
            HardStopTimer.shared.arm(signal: SIGTERM)
            self.stopDeadline = .now + self.project.configuration.run.stopTimeout
        case .stopAcceptingTraffic(let idleGrace):
            self.router.beginShuttingDown(idleGrace: idleGrace)
        case .report(let report):
            self.reporter.report(report)
            self.board.record(report, at: Date())
            if self.serviceManager.isPresent, let state = self.serviceStatus.record(report) {
                self.serviceManager.send(state)
            }
        case .exit(let code):
            self.exitCode = code
        }
    }

    // MARK: Control socket

    /// Answers `safe-watch status`, `rebuild`, `rollback` and `stop`.
    public func answer(_ request: ControlRequest) -> ControlReply {
        switch request {
        case .status:
            let servers = self.servers
            let facts = StatusSnapshot.Facts(
                pid: getpid(), project: self.project.directory, startedAt: self.startedAt,
                serve: StatusSnapshot.Serve(
                    mode: self.project.configuration.serve.mode.rawValue, addresses: self.publicAddresses,
                    failedConnections: self.router.connectionFailures.count, lastFailedConnection: self.router.connectionFailures.last),
                watching: StatusSnapshot.Watching(directories: self.watch.watchedDirectoryCount, polled: self.watch.polledTrees),
                pidOf: { generation in servers.values.first { $0.generation == generation && !$0.hasExited }?.pid })
            return ControlReply(ok: true, status: self.board.snapshot(facts, at: Date()))
        case .rebuild:
            let (actions, reply) = self.machine.rebuildAsked(at: self.now)
            self.perform(actions)
            return reply
        case .rollback:
            let (actions, reply) = self.machine.rollbackAsked(at: self.now)
            self.perform(actions)
            return reply
        case .stop:
            let (reply, terminate) = self.machine.stopAsked(runsAsService: self.serviceManager.isPresent)
            if terminate { self.post.yield(.signal(SIGTERM)) }
            return reply
        case .events:
            return .refused("events are streamed by the control server")
        }
    }

    /// Files the build command writes itself: SwiftPM writes Package.resolved when it resolves
    /// (the first build of a fresh checkout does). Not a reason to cancel the build that wrote them.
    private var buildWrittenFiles: [String] {
        (self.project.configuration.buildCommand ?? "").contains("swift build") ? ["Package.resolved"] : []
    }

    private var buildSettings: Builder.Settings? {
        let configuration = self.project.configuration
        guard let command = configuration.buildCommand, let binary = configuration.binaryPath else { return nil }
        return Builder.Settings(
            command: command, projectDirectory: self.project.directory, binary: binary,
            timeout: configuration.build.timeout, environment: inheritedEnvironment(),
            waitsOutSameSecond: command.contains("swift build"))
    }

    /// Starts `generation`: its spawn, then (`started`) its exit watch and its probing, each in
    /// a task of its own.
    private func launch(_ generation: Generation) {
        let post = self.post
        let plan: ServerLauncher.Plan
        do {
            guard let planned = try self.serverLauncher.plan(generation, configuration: self.project.configuration, at: self.now) else { return }
            plan = planned
        } catch {
            post.yield(.candidateUnhealthy(generation, error.reason))
            return
        }
        let serverLauncher = self.serverLauncher
        self.own(.launch(generation)) {
            let started: ServerLauncher.Started
            do throws(ServerLauncher.Failure) {
                started = try await serverLauncher.start(plan)
            } catch {
                post.yield(.candidateUnhealthy(generation, error.reason))
                return
            }
            await self.started(started)
        }
    }

    /// A server was spawned. Called from its launch task, whose cancellation means it was told to
    /// stop while it was being spawned: the stop found no process then, so it is carried out now,
    /// or it would never exit.
    private func started(_ started: ServerLauncher.Started) {
        let server = started.server
        let pid = server.pid
        let post = self.post
        let serverLauncher = self.serverLauncher
        self.servers[pid] = server
        self.own(.exitWatch(pid)) {
            let status = await serverLauncher.waitForExit(started)
            post.yield(.processExited(server.generation, pid, status))
        }
        if Task.isCancelled {
            let run = self.project.configuration.run
            self.stop(server, signal: run.stopSignal, timeout: run.stopTimeout)
            return
        }
        let start = self.start
        self.own(.probe(pid)) {
            switch await serverLauncher.verdict(started, now: { ContinuousClock.now - start }) {
            case .healthy: post.yield(.candidateHealthy(server.generation))
            case .unhealthy(let reason): post.yield(.candidateUnhealthy(server.generation, reason))
            case nil: break
            }
        }
    }

    private var migrationsGate: MigrationsGate {
        MigrationsGate(
            workspace: MigrationsWorkspace(
                projectDirectory: self.project.directory, directory: self.project.migrationsDirectory, launcher: self.launcher,
                willWrite: { [ledger = self.watch.ledger] in ledger.willWrite($0, contents: $1) }),
            databaseURL: self.project.databaseURL, settings: self.project.configuration.migrations, reporter: self.reporter)
    }

    /// A migration file changed: say at once what a server starting now would make of it.
    private func reportMigrationsVerdict() {
        let gate = self.migrationsGate
        self.own(.migrationsVerdict(self.tasks.nextID())) { await gate.reportVerdict() }
    }

    /// Drains then stops one server: in proxy mode it first finishes the requests routed to it (in
    /// tcp mode its connections close) for at most `timeout`, then gets `signal`, then SIGKILL for
    /// its whole group once `timeout` is over counted from the start, or half of it counted from
    /// the signal, whichever is later.
    private func stop(_ server: ServerProcess, signal: Int32, timeout: Duration) {
        let router = self.router
        let drain = StopDrain(
            forwardsTraffic: self.project.configuration.serve.mode.forwardsToPrivatePort, signal: signal, timeout: timeout,
            shuttingDown: router.isShuttingDown, isRouted: router.active?.generation == server.generation)
        self.own(.stop(server.pid, signal: signal)) {
            let begun = ContinuousClock.now
            switch drain {
            case .none: break
            case .untilIdle(let within): await router.waitUntilIdle(server.generation, timeout: within)
            case .lastRequests(let within): await router.waitUntilNoClients(timeout: within)
            }
            let left = StopDrain.signalTimeout(timeout, drained: ContinuousClock.now - begun)
            await Teardown.group(signal, grace: left).run(on: server.process)
        }
    }

    /// Sets what takes the lock and the control socket again once a deleted state directory has
    /// been made anew.
    public func onStateDirectoryRecreated(_ restore: @escaping @Sendable () async -> Void) {
        self.restoreState = restore
    }

    /// `.safe-watch` deleted under a running safe-watch (`git clean -fdx`, `rm -rf .safe-watch`)
    /// took the staged generations, the lock and the control socket with it: make it again, take
    /// them back, and let the state machine build a generation it can restart.
    private func checkStateDirectory() {
        let directory = self.project.stateDirectory
        guard let known = self.stateDirectoryIdentity, FileIdentity(path: directory) != known,
            self.exitCode == nil
        else { return }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.stateDirectoryIdentity = FileIdentity(path: directory)
        let restore = self.restoreState
        self.own(.stateRestore(self.tasks.nextID())) { await restore() }
        self.perform(self.machine.stateDirectoryLost(at: self.now))
    }

    private func reloadConfiguration() {
        let file = self.project.configurationFile
        var configuration: Configuration
        do {
            if FileManager.default.fileExists(atPath: file) {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                configuration = try ConfigurationLoader(fileName: file).load(text)
            } else {
                configuration = Configuration()
                self.project.framework?.apply(to: &configuration)
            }
        } catch {
            self.perform(self.machine.configRejected("\(error)"))
            return
        }
        self.project.overrides(&configuration)
        let reload = ConfigurationReload(reloaded: configuration, current: self.project.configuration)
        if let warning = reload.warning { self.reporter.warning(warning) }
        self.project.configuration = reload.configuration
        HardStopTimer.shared.configure(stopTimeout: reload.configuration.run.stopTimeout)
        self.watch.reconfigure(self.project, changed: self.changedFilesPoster)
        let policy = Self.policy(self.project, runsAsService: self.serviceManager.isPresent)
        self.perform(self.machine.configReloaded(policy, rebuild: reload.rebuild, at: self.now))
    }
}
