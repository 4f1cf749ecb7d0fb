import Foundation
import Logging
import NIOCore
import NIOPosix
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// The thin runtime: feeds events to the `Supervisor` state machine and carries out its actions
/// with real processes, sockets and files. The state machine decides what happens to builds and
/// generations, what a control request answers and how a stopped server drains; three decisions
/// are still made here and belong in it next: arming the hard stop on a signal, which reloaded
/// settings wait for a restart, and holding requests when the active server exits.
public actor SupervisorRuntime {

    /// Everything that happens to the runtime, in the order it is handled.
    enum Event: Sendable {
        case filesChanged([WatchedChange])
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
    private let prober: Prober
    private let router: TrafficRouter
    private let watch: WatchPipeline
    private var debounceCheckScheduled = false
    private var servers: [pid_t: ServerProcess] = [:]
    private var probes: [Generation: Task<Void, Never>] = [:]
    private var exitCode: Int32?
    /// Socket mode: the listening sockets every generation gets as fds 3….
    private let sharedSockets: [PublicSockets.Socket]
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
    ///   - selfExecutable: safe-watch's own binary for the exec-child trampoline (nil: exec directly).
    ///   - sharedSockets: in socket mode, the sockets passed to every generation.
    ///   - serviceManager: systemd, when safe-watch runs as a service.
    public init(
        project: Project, reporter: Reporter, router: TrafficRouter, group: any EventLoopGroup,
        selfExecutable: String?, sharedSockets: [PublicSockets.Socket] = [], serviceManager: ServiceManager = ServiceManager(),
        publicAddresses: [String] = []
    ) {
        self.publicAddresses = publicAddresses
        self.sharedSockets = sharedSockets
        self.serviceManager = serviceManager
        self.serviceStatus = ServiceStatus(
            buildTimeout: project.configuration.build.timeout, startupTimeout: project.configuration.health.startupTimeout)
        self.project = project
        let policy = Self.policy(project)
        self.machine = Supervisor(policy: policy)
        self.board = StatusBoard(gatesMigrations: policy.gatesMigrations)
        self.reporter = reporter
        (self.events, self.post) = AsyncStream<Event>.makeStream()
        self.launcher = ChildLauncher(selfExecutable: selfExecutable)
        self.builder = Builder(launcher: self.launcher)
        self.stager = Stager(stateDirectory: project.stateDirectory)
        self.prober = Prober(group: group, launcher: self.launcher, projectDirectory: project.directory)
        self.router = router
        self.watch = WatchPipeline(project: project, reporter: reporter)
    }

    /// Runs until stopped by a signal; returns the exit code.
    public func run(signals: AsyncStream<Int32>) async throws -> Int32 {
        self.stopLeftoverServers()
        self.stager.discardAll()
        let post = self.post
        try self.watch.start { post.yield(.filesChanged($0)) }
        self.watch.seedLedger()
        let signalTask = Task {
            for await signal in signals { post.yield(.signal(signal)) }
        }
        defer { signalTask.cancel() }
        let watchdogTask = self.startWatchdog()
        defer { watchdogTask?.cancel() }
        self.stateDirectoryIdentity = FileIdentity(path: self.project.stateDirectory)
        let stateCheckTask = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.stateDirectoryCheckInterval)
                post.yield(.stateDirectoryCheck)
            }
        }
        defer { stateCheckTask.cancel() }
        self.perform(self.machine.started(at: self.now))
        for await event in self.events {
            TestHooks.stallWhileAsked()
            self.handle(event)
            if let exitCode = self.exitCode {
                self.watch.stop()
                await Self.stopOrphans(within: self.project.configuration.run.stopTimeout)
                return exitCode
            }
        }
        return 0
    }

    private var now: Moment { ContinuousClock.now - self.start }

    /// Servers of a safe-watch that was killed drain on their parent-death signal (in socket mode
    /// on the very socket the next generation gets). Let them finish, but not forever.
    private func stopLeftoverServers() {
        let generations = self.project.stateDirectory + "/generations/"
        let leftovers = ProcessTable.running(under: generations)
        guard !leftovers.isEmpty else { return }
        let timeout = self.project.configuration.run.stopTimeout
        let signal = self.project.configuration.run.stopSignal
        self.reporter.warning(
            "servers of a previous safe-watch are still running (pid \(leftovers.map(String.init).joined(separator: ", "))); "
                + "they get \(timeout.humanReadable) to drain, then SIGKILL")
        // Not our children: found by pid, then held by pidfd (`ProcessHandle.open`).
        let servers = leftovers.compactMap { pid in
            ProcessHandle.open(pid: pid, isStillIt: { ProcessTable.running(under: generations).contains($0) })
        }
        Teardown.group(signal, grace: timeout).start(on: servers)  // each server leads its own process group
    }

    /// A server that daemonized left a process in a session of its own, reparented to safe-watch
    /// (the child subreaper, or PID 1 in a container): its group was stopped, the daemon was not.
    /// Once every server is gone, whatever is still safe-watch's child is such an orphan: SIGTERM,
    /// then SIGKILL after `timeout`. Rounds, because a daemon's own children become ours in turn.
    private static func stopOrphans(within timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        for _ in 0..<3 {
            let orphans = ProcessTable.children(of: getpid()).compactMap { pid in
                ProcessHandle.open(pid: pid, isStillIt: { ProcessTable.children(of: getpid()).contains($0) })
            }
            guard !orphans.isEmpty else { return }
            await Teardown.alone(SIGTERM, grace: max(.zero, deadline - ContinuousClock.now)).run(on: orphans)
        }
    }

    /// WATCHDOG=1 at half of WATCHDOG_USEC. The tick goes through the event loop like every other
    /// event, so a wedged supervisor stops answering and systemd restarts it; a long build or
    /// probe does not (they run in their own tasks).
    private func startWatchdog() -> Task<Void, Never>? {
        let setting = WatchdogSetting(
            usec: ProcessInfo.processInfo.environment["WATCHDOG_USEC"], pid: ProcessInfo.processInfo.environment["WATCHDOG_PID"],
            ownPID: getpid())
        if let warning = setting.warning { self.reporter.warning(warning) }
        guard let period = setting.period, self.serviceManager.isPresent else { return nil }
        self.serviceManager.send("WATCHDOG=1")
        let post = self.post
        return Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                post.yield(.watchdogTick)
            }
        }
    }

    /// The configuration's policy; generations pass the migrations gate when the project has a
    /// migrations directory.
    static func policy(_ project: Project) -> SupervisorPolicy {
        var policy = project.configuration.policy
        var isDirectory: ObjCBool = false
        policy.gatesMigrations = FileManager.default.fileExists(
            atPath: project.migrationsDirectory, isDirectory: &isDirectory) && isDirectory.boolValue
        return policy
    }

    // MARK: Events

    private func handle(_ event: Event) {
        let now = self.now
        switch event {
        case .filesChanged(let changes):
            let intake = self.watch.take(changes, at: now)
            if intake.configurationChanged { self.perform(self.machine.signalReceived(.reload, at: now)) }
            if let quietAt = intake.quietAt { self.scheduleDebounceCheck(at: quietAt) }
        case .debounceElapsed:
            self.debounceCheckScheduled = false
            // What the running build writes is its own output, not an edit.
            let burst = self.watch.release(at: now, ignoring: self.machine.isBuilding ? self.buildWrittenFiles : [])
            guard let burst else {
                if let next = self.watch.nextCheck { self.scheduleDebounceCheck(at: next) }
                return
            }
            if burst.touchedMigrations { self.reportMigrationsVerdict() }
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
            self.probes.removeValue(forKey: generation)?.cancel()
            if self.router.active?.generation == generation, !self.servers.values.contains(where: { $0.generation == generation }) {
                self.router.setActive(nil)  // hold new requests until a server is healthy again
            }
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
            let signal: SupervisorSignal = number == SIGHUP ? .reload : .terminate
            if signal == .terminate, self.exitCode == nil, !self.router.isShuttingDown {
                self.scheduleHardStop()
                // Under systemd the listening socket outlives safe-watch (socket unit, fd store):
                // idle keep-alive clients get a moment to send one last request, then reconnect to
                // the next safe-watch. In a terminal, stopping is stopping.
                self.router.beginShuttingDown(idleGrace: self.serviceManager.isPresent ? .seconds(1) : .zero)
            }
            self.perform(self.machine.signalReceived(signal, at: now))
        }
    }

    /// One timer for the whole burst (not one per batch of events): when it fires before the tree
    /// is quiet, it is set again for the end of the new quiet period.
    private func scheduleDebounceCheck(at deadline: Moment) {
        guard !self.debounceCheckScheduled else { return }
        self.debounceCheckScheduled = true
        let post = self.post
        let delay = deadline - self.now
        Task {
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
            Task {
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
            Task {
                let reason = await gate.check()
                post.yield(.migrationsChecked(generation, blockedBecause: reason))
            }
        case .switchTraffic(let generation):
            if let server = self.servers.values.first(where: { $0.generation == generation && !$0.hasExited }),
                self.project.configuration.serve.mode.forwardsToPrivatePort, let port = server.port
            {
                self.router.setActive(TrafficRouter.Target(generation: generation, port: port))
            }
        case .stop(let generation, let signal, let timeout):
            self.probes.removeValue(forKey: generation)?.cancel()
            for server in self.servers.values where server.generation == generation {
                self.stop(server, signal: signal, timeout: timeout)
            }
        case .schedule(let timer, let delay):
            Task {
                try? await Task.sleep(for: delay)
                post.yield(.timerFired(timer))
            }
        case .discardGenerations(let generations):
            self.stager.discard(generations)
        case .reloadConfig:
            self.serviceManager.send(self.serviceStatus.reloadStarted(monotonicMicroseconds: ServiceManager.monotonicMicroseconds()))
            self.reloadConfiguration()
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

    private func launch(_ generation: Generation) {
        let configuration = self.project.configuration
        let post = self.post
        guard let binary = configuration.binaryPath else { return }
        let executable = self.stager.executable(of: generation, binaryName: (binary as NSString).lastPathComponent)
        let port: Int?
        switch configuration.serve.mode {
        case .proxy, .tcp, .socket:
            // Proxy and tcp mode: the port traffic goes to. Socket mode: a private health port, only when
            // the check needs one (never the shared socket, which the old server answers too).
            if configuration.serve.mode == .socket, !configuration.health.needsPort {
                port = nil
                break
            }
            do {
                port = try freeLoopbackPort()
            } catch {
                post.yield(.candidateUnhealthy(generation, "no free port for it: \(error)"))
                return
            }
        case .restart:
            port = configuration.serve.listen.port
        }
        var environment = inheritedEnvironment()
        environment.merge(configuration.run.env) { $1 }
        if !configuration.run.portEnv.isEmpty, let port {
            environment[configuration.run.portEnv] = String(port)
        }
        let sharedSockets = self.sharedSockets
        if !sharedSockets.isEmpty {
            // LISTEN_PID is set to the server's own pid by the exec-child trampoline.
            environment["LISTEN_FDS"] = String(sharedSockets.count)
            environment["LISTEN_FDNAMES"] = sharedSockets.map(\.name).joined(separator: ":")
        }
        let notifySocket: NotifySocket?
        if configuration.health.kind == .notify {
            let path = self.notifySocketPath(generation)
            do {
                notifySocket = try NotifySocket(path: path)
                environment["NOTIFY_SOCKET"] = path
            } catch {
                post.yield(.candidateUnhealthy(generation, "cannot create its notify socket: \(error)"))
                return
            }
        } else {
            notifySocket = nil
        }
        let arguments = configuration.run.args.map { argument in
            port.map { argument.replacing("{port}", with: String($0)) } ?? argument
        }
        let reporter = self.reporter
        let launcher = self.launcher
        let directory = self.project.directory
        let check = configuration.health
        let prober = self.prober
        let startedAt = self.now
        let start = self.start
        let (outputEnded, finishOutput) = AsyncStream<Void>.makeStream()
        let tail = OutputTail(notable: PortHandoff.isNotable)
        let handoff = PortHandoff(
            port: port, mode: configuration.serve.mode, args: configuration.run.args, portEnv: configuration.run.portEnv,
            publicAddress: configuration.serve.mode == .restart
                ? nil : self.publicAddresses.first.map { address in address.range(of: "://").map { String(address[$0.upperBound...]) } ?? address })
        // Kept so that the candidate's probing ends with it: when it exits or is stopped, the task
        // is cancelled (a superseded or dead candidate must not be probed on and on).
        self.probes[generation] = Task {
            let output: OutputPipe
            let process: ProcessHandle
            do {
                output = try OutputPipe(label: "safe-watch.gen\(generation)")
                output.start(
                    onLine: { line in
                        reporter.serverOutput(generation, line)
                        tail.append(line)
                    }, onClose: { finishOutput.finish() })
                process = try await launcher.start(
                    executable: executable, arguments: arguments, environment: environment,
                    workingDirectory: directory, output: output, deathSignal: SIGTERM,
                    passedDescriptors: sharedSockets.map(\.fd))
            } catch {
                notifySocket?.close()
                post.yield(.candidateUnhealthy(generation, "cannot start \(executable): \(error)"))
                return
            }
            let pid = process.pid
            let server = ServerProcess(generation: generation, process: process, port: port, output: tail, handoff: handoff)
            notifySocket?.start { lines in
                if lines.contains("READY=1") { server.markReady() }
            }
            self.register(server)
            if Task.isCancelled {
                // Told to stop while it was being spawned (a stop right after the launch): the
                // stop found no process then, so it is carried out now, or it would never exit.
                let run = self.project.configuration.run
                self.stop(server, signal: run.stopSignal, timeout: run.stopTimeout)
            }
            Task {
                let status = await Reaper.shared.wait(for: pid)
                // Its last lines before the line that says it stopped; a grandchild that keeps the
                // pipe open does not hold that up for long.
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { for await _ in outputEnded {} }
                    group.addTask { try? await Task.sleep(for: .milliseconds(250)) }
                    await group.next()
                    group.cancelAll()
                }
                server.exited(status)
                notifySocket?.close()
                post.yield(.processExited(generation, pid, status))
            }
            let verdict = await prober.verdict(
                check: check, port: port, startedAt: startedAt, now: { ContinuousClock.now - start },
                ready: { server.isReady })
            guard !server.hasExited, !Task.isCancelled else { return }
            switch verdict {
            case .healthy:
                if let ownListeners = Self.listenersBesideSharedSockets(pid: pid, shared: sharedSockets, healthPort: port) {
                    post.yield(.candidateUnhealthy(generation, ownListeners))
                    return
                }
                // A check that does not touch the port (exec, notify, none) passes a server that
                // listens elsewhere; traffic would go to a port nobody answers.
                if !check.needsPort, let elsewhere = Self.listeningElsewhere(pid: pid, handoff: handoff) {
                    post.yield(.candidateUnhealthy(generation, elsewhere))
                    return
                }
                post.yield(.candidateHealthy(generation))
            case .unhealthy(let reason):
                let elsewhere = Self.listeningElsewhere(pid: pid, handoff: handoff).map { "; \($0)" } ?? ""
                post.yield(.candidateUnhealthy(generation, reason + elsewhere))
            case .pending: break
            }
        }
    }

    /// Socket mode: a server that binds its own port instead of serving on fd 3 would be healthy
    /// but never get the shared socket's traffic. Names what it listens on, or nil when all is well.
    nonisolated private static func listenersBesideSharedSockets(
        pid: pid_t, shared: [PublicSockets.Socket], healthPort: Int?
    ) -> String? {
        guard !shared.isEmpty else { return nil }
        let own = listenersOutsideSocketMode(
            serverSocketInodes: ListeningSockets.socketInodes(of: pid), listening: ListeningSockets.listeningTCP(),
            sharedInodes: Set(shared.compactMap { ListeningSockets.inode($0.fd) }), healthPort: healthPort)
        guard !own.isEmpty else { return nil }
        let addresses = own.map { "\($0.address):\($0.port)" }.joined(separator: ", ")
        return "it listens on \(addresses) itself instead of serving on the socket passed as fd 3 (LISTEN_FDS); "
            + "in socket mode the server must take its socket with sd_listen_fds, or use mode = \"proxy\" for servers that bind a port"
    }

    /// What a live candidate listens on, when that is not the port it was given (`PortHandoff`).
    nonisolated private static func listeningElsewhere(pid: pid_t, handoff: PortHandoff) -> String? {
        let own = ListeningSockets.socketInodes(of: pid)
        guard !own.isEmpty else { return nil }
        return handoff.diagnoseListening(ListeningSockets.listeningTCP().filter { own.contains($0.inode) })
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
        Task { await gate.reportVerdict() }
    }

    private func register(_ server: ServerProcess) {
        self.servers[server.pid] = server
    }

    private func notifySocketPath(_ generation: Generation) -> String {
        let path = "\(self.project.stateDirectory)/notify-\(generation).sock"
        // sun_path holds 108 bytes; deep project paths fall back to /tmp.
        return path.utf8.count < 100 ? path : "/tmp/safe-watch-\(getpid())-\(generation).sock"
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
        Task {
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

    /// If stopping takes much longer than stop_timeout, exit anyway (children get SIGKILL). A
    /// signal armed this as it arrived; `safe-watch stop` comes as an event and arms it here.
    private func scheduleHardStop() {
        HardStopTimer.shared.arm(signal: SIGTERM)
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
        Task { await restore() }
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
        let old = self.project.configuration
        if configuration.product == nil { configuration.product = old.product }
        if configuration.serve.listen != old.serve.listen || configuration.serve.mode != old.serve.mode
            || configuration.serve.forwardedHeaders != old.serve.forwardedHeaders
        {
            self.reporter.warning("serve.listen, serve.mode and serve.forwarded_headers changes take effect when safe-watch restarts")
            configuration.serve = old.serve
        }
        configuration.settleModeDefaults()
        let rebuild = configuration.build != old.build || configuration.run != old.run || configuration.product != old.product
            || configuration.health != old.health
        self.project.configuration = configuration
        HardStopTimer.shared.configure(stopTimeout: configuration.run.stopTimeout)
        let post = self.post
        self.watch.reconfigure(self.project) { post.yield(.filesChanged($0)) }
        self.perform(self.machine.configReloaded(Self.policy(self.project), rebuild: rebuild, at: self.now))
    }
}
