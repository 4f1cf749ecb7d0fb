import enum SafeWatchProcesses.ExitStatus

/// A generation is one successful build, staged under `.safe-watch/generations/N/`.
public typealias Generation = Int

/// Builds are numbered separately from generations: a failed build makes no generation.
public typealias BuildID = Int

/// A point on the supervisor's monotonic time line, measured from its start.
///
/// The state machine never reads a clock; the runtime passes `now` with every event, which is
/// what lets the tests tell a story with exact times.
public typealias Moment = Duration

/// How a build ended, as the builder saw it.
public enum BuildOutcome: Equatable, Sendable {
    case succeeded
    case failed(BuildFailure)
    /// Stopped because a newer change arrived or safe-watch is stopping.
    case cancelled
}

public struct BuildFailure: Equatable, Sendable {
    /// What to tell the user in one line: "2 errors", "exit status 127: command not found", …
    public var summary: String
    /// The first diagnostics, in order.
    public var diagnostics: [Diagnostic]
    public var errorCount: Int

    public init(summary: String, diagnostics: [Diagnostic] = [], errorCount: Int = 0) {
        self.summary = summary
        self.diagnostics = diagnostics
        self.errorCount = errorCount
    }
}

/// Why a candidate was launched; it decides what happens when it fails.
public enum LaunchPurpose: Equatable, Sendable {
    /// A new build.
    case newBuild
    /// The same generation again after the active server crashed.
    case restart
    /// The previous generation, because the new one failed.
    case rollback
}

/// What the runtime asks the state machine to react to besides file changes.
public enum SupervisorSignal: Equatable, Sendable {
    /// SIGTERM or SIGINT: stop everything gracefully and exit.
    case terminate
    /// SIGHUP: reload the configuration.
    case reload
}

public enum SupervisorTimer: Hashable, Sendable {
    /// Restart `generation` after the crash backoff.
    case restart(Generation)
}

/// What the runtime must carry out. Actions are commands; the runtime reports their outcomes back
/// as events.
public enum SupervisorAction: Equatable, Sendable {
    case startBuild(BuildID)
    /// Interrupt the build's whole process group; it still reports `buildFinished(.cancelled)`.
    case cancelBuild(BuildID)
    /// Copy the build's binary into generation `Generation`'s directory.
    case stage(BuildID, Generation)
    /// Check the migrations (and apply them, if safe-watch applies them) before `Generation`
    /// may start; answered by `migrationsChecked`.
    case checkMigrations(Generation)
    /// Start `Generation` beside whatever serves now and health-check it.
    case launchCandidate(Generation, LaunchPurpose)
    /// Route new requests (tcp mode: new connections) to `Generation`.
    case switchTraffic(to: Generation)
    /// A process of the generation traffic was last switched to exited: new requests (tcp mode:
    /// connections) wait for the next healthy generation, up to `hold_timeout`, instead of going
    /// to a port nobody answers. Nothing changes while another process of it still serves, or
    /// when traffic goes elsewhere already.
    case holdTraffic(Generation)
    /// Send `signal` to the generation's process group, SIGKILL it after `timeout`. In proxy and
    /// tcp mode the runtime first lets the generation's in-flight requests (tcp mode: its open
    /// connections) finish, within the same timeout.
    case stop(Generation, signal: Int32, timeout: Duration)
    case schedule(SupervisorTimer, after: Duration)
    /// Delete staged generations that fell out of the kept window (their processes, if any, are gone).
    case discardGenerations([Generation])
    /// Read the configuration again and answer `configReloaded` or `configRejected`.
    case reloadConfig
    /// safe-watch stops: start the clock that cuts a stop that hangs short (`HardStop`). A stop
    /// signal armed it as it arrived; this arms it for `safe-watch stop`, which comes as an event.
    case armHardStop
    /// safe-watch stops: take no new connections. Idle keep-alive clients get `idleGrace` to send
    /// one last request first.
    case stopAcceptingTraffic(idleGrace: Duration)
    case report(Report)
    case exit(code: Int32)
}

/// Why safe-watch goes back to an older generation.
public enum RollbackCause: String, Equatable, Sendable {
    /// The active generation crashed within the rollback window after its swap.
    case crashedAfterSwap
    /// Restart mode: the new generation failed after the old one was stopped for it.
    case replacementFailed
    /// Someone asked (`safe-watch rollback`).
    case requested

    /// Why, in a few words, for a rollback away from `generation`.
    public func explanation(from generation: Generation) -> String {
        switch self {
        case .crashedAfterSwap: "gen \(generation) crashed after its swap"
        case .replacementFailed: "gen \(generation) failed"
        case .requested: "requested"
        }
    }
}

/// The transitions people are told about: terminal lines, journald, status, events.
public enum Report: Equatable, Sendable {
    case buildStarted(BuildID, reason: BuildReason)
    case buildSucceeded(BuildID, took: Duration)
    case buildFailed(BuildID, took: Duration, BuildFailure, stillServing: Generation?)
    case buildCancelled(BuildID, because: BuildCancelCause)
    case stagingFailed(BuildID, reason: String, stillServing: Generation?)
    case candidateLaunched(Generation, LaunchPurpose)
    /// The migrations gate said no: `Generation` never starts.
    case migrationsBlocked(Generation, reason: String, stillServing: Generation?)
    case swapped(from: Generation?, to: Generation, healthyAfter: Duration)
    case candidateDiscarded(Generation, reason: String, stillServing: Generation?)
    case serverCrashed(Generation, status: ExitStatus)
    case restartScheduled(Generation, after: Duration)
    case rollingBack(from: Generation, to: Generation, because: RollbackCause)
    case serverStopped(Generation, status: ExitStatus)
    case configReloaded
    case configRejected(String, keeping: String)
    /// `.safe-watch` was deleted under safe-watch (`git clean -fdx`): the staged binaries are gone.
    case stateDirectoryLost(stillServing: Generation?)
    case stopping
    case stopped
}

public enum BuildReason: Equatable, Sendable {
    case initial
    case filesChanged([String])
    case configChanged
    case requested
    /// The state directory, with every staged generation, was deleted.
    case stateDirectoryLost

    /// The reason for one build that stands for this one and `newer`, queued behind a running build:
    /// changed files add up (so the build names them), anything else is the newer reason.
    func merged(with newer: BuildReason) -> BuildReason {
        if case .filesChanged(let older) = self, case .filesChanged(let paths) = newer {
            return .filesChanged(older + paths.filter { !older.contains($0) })
        }
        return newer
    }
}

/// Why a running build was stopped before it finished.
public enum BuildCancelCause: Equatable, Sendable {
    /// safe-watch is stopping.
    case stopping
    /// Something newer asked for a build (the queued build's reason).
    case superseded(by: BuildReason)
}

/// The timings and mode the state machine decides with; all from the configuration.
public struct SupervisorPolicy: Equatable, Sendable {
    public var mode: ServeMode
    public var stopSignal: Int32
    public var stopTimeout: Duration
    /// A generation that crashes this soon after its swap is replaced by the previous one.
    public var rollbackWindow: Duration
    public var restartBackoff: Backoff
    /// A server that ran this long before crashing restarts with the shortest delay again.
    public var stableAfter: Duration
    /// How many staged generations to keep (at least 2, so a rollback is one launch away).
    public var keepGenerations: Int
    /// Whether a new generation must pass the migrations gate before it starts.
    public var gatesMigrations: Bool
    /// Whether safe-watch runs as a systemd service: its listening socket outlives it then.
    public var runsAsService: Bool

    public init(
        mode: ServeMode = .proxy,
        stopSignal: Int32 = 15,
        stopTimeout: Duration = .seconds(5),
        rollbackWindow: Duration = .seconds(10),
        restartBackoff: Backoff = Backoff(),
        stableAfter: Duration = .seconds(10),
        keepGenerations: Int = 3,
        gatesMigrations: Bool = false,
        runsAsService: Bool = false
    ) {
        self.mode = mode
        self.stopSignal = stopSignal
        self.stopTimeout = stopTimeout
        self.rollbackWindow = rollbackWindow
        self.restartBackoff = restartBackoff
        self.stableAfter = stableAfter
        self.keepGenerations = max(2, keepGenerations)
        self.gatesMigrations = gatesMigrations
        self.runsAsService = runsAsService
    }
}

/// The supervise loop's decisions, with no I/O, no clocks and no processes.
///
/// One `mutating func` per event returns the actions to carry out, in order. The runtime actor
/// feeds it events from the watcher, the builder, the launcher, the reaper, timers and signals.
///
/// The state is a few enums whose cases carry their data, so that a combination the loop never
/// makes (a candidate while stopping, a launch waiting for the port beside an active server, a
/// build queued behind one that is not being cancelled) cannot be written down either.
public struct Supervisor: Sendable {

    /// A build that runs.
    private struct RunningBuild: Equatable {
        var id: BuildID
        var startedAt: Moment
        var reason: BuildReason
    }

    /// The build side: at most one build runs; at most one more waits for it to be cancelled.
    private enum BuildState: Equatable {
        /// No build runs.
        case idle
        case running(RunningBuild)
        /// Asked to stop. `because` says what follows once it has: the build it was superseded by
        /// (its reason), or nothing when safe-watch is stopping.
        case cancelling(RunningBuild, because: BuildCancelCause)
    }

    /// A generation started beside (or, in restart mode, after) the active one and not yet healthy.
    private struct Candidate: Equatable {
        var generation: Generation
        var purpose: LaunchPurpose
        var launchedAt: Moment
    }

    /// The generation that serves traffic.
    private struct Active: Equatable {
        var generation: Generation
        var since: Moment
        /// When it was swapped in for a different generation (rollback window), nil after a restart.
        var swappedAt: Moment?
    }

    /// A launch that waits for something before it starts.
    private struct Launch: Equatable {
        var generation: Generation
        var purpose: LaunchPurpose
    }

    /// Who serves and who is on the way in, while safe-watch runs.
    private enum Serving: Equatable {
        /// Nothing serves and nothing starts: before the first launch, or after a crash. `restart`
        /// is the crashed generation whose restart timer is armed.
        case idle(restart: Generation?)
        /// A candidate starts and nothing serves (the first server, a crash restart, a rollback
        /// after a crash, restart mode after the old server stopped). A crashed generation's
        /// `restart` stays armed: it runs again if this candidate fails before the timer fires.
        case starting(Candidate, restart: Generation?)
        case serving(Active)
        /// Proxy, tcp and socket mode: `candidate` starts beside `active`, which serves until the swap.
        case replacing(Active, by: Candidate)
        /// Restart mode: the port is still held by servers on their way out; `Launch` starts once
        /// every one of them has exited.
        case awaitingPort(Launch)

        var active: Active? {
            switch self {
            case .serving(let active), .replacing(let active, _): active
            case .idle, .starting, .awaitingPort: nil
            }
        }

        var candidate: Candidate? {
            switch self {
            case .starting(let candidate, _), .replacing(_, let candidate): candidate
            case .idle, .serving, .awaitingPort: nil
            }
        }

        /// The generations this state needs on disk.
        var generations: [Generation] {
            switch self {
            case .idle(let restart): [restart].compactMap { $0 }
            case .starting(let candidate, let restart): [candidate.generation, restart].compactMap { $0 }
            case .serving(let active): [active.generation]
            case .replacing(let active, let candidate): [active.generation, candidate.generation]
            case .awaitingPort(let launch): [launch.generation]
            }
        }
    }

    /// The supervisor's life: it runs until told to stop, then waits for everything to end.
    private enum Life: Equatable {
        case running(Serving)
        /// Told to stop: the build is being cancelled and every server was told to stop; waits
        /// for them to end (`exiting`).
        case shuttingDown
        case stopped
    }

    public private(set) var policy: SupervisorPolicy
    private var life: Life = .running(.idle(restart: nil))
    private var build: BuildState = .idle
    private var nextBuild: BuildID = 1
    private var nextGeneration: Generation = 1
    /// Generations that were told to stop and have not exited yet.
    private var exiting: Set<Generation> = []
    /// Staged generations still on disk, in the order they were made; the source of rollbacks.
    private var kept: [Generation] = []
    /// Generations that have served (were healthy and got the traffic): a rollback goes back to
    /// one of these, never to one that was discarded or blocked and so never ran for anyone.
    private var served: Set<Generation> = []
    /// Consecutive crashes of the active generation, for the restart backoff.
    private var crashes = 0
    /// A staged generation waiting for the migrations gate.
    private var gated: Generation?
    /// The generation the last `switchTraffic` went to (proxy and tcp mode): when a process of it
    /// exits, traffic is held.
    private var routed: Generation?

    public init(policy: SupervisorPolicy) {
        self.policy = policy
    }

    /// The generation serving traffic, if any.
    public var servingGeneration: Generation? {
        guard case .running(let serving) = self.life else { return nil }
        return serving.active?.generation
    }

    /// Whether a build runs (or is being cancelled).
    public var isBuilding: Bool { self.build != .idle }

    /// Whether safe-watch runs, as opposed to stopping or stopped.
    public var isRunning: Bool {
        if case .running = self.life { return true }
        return false
    }
}

// MARK: - Events

extension Supervisor {

    /// safe-watch has started: build the tree as it is.
    public mutating func started(at now: Moment) -> [SupervisorAction] {
        self.startBuild(reason: .initial, at: now)
    }

    /// The watcher saw build-relevant changes (already debounced and classified).
    public mutating func filesChanged(_ paths: [String], at now: Moment) -> [SupervisorAction] {
        self.requestBuild(reason: .filesChanged(paths), at: now)
    }

    /// Someone asked for a rebuild (control socket, or a configuration change that affects the build).
    public mutating func rebuildRequested(reason: BuildReason = .requested, at now: Moment) -> [SupervisorAction] {
        self.requestBuild(reason: reason, at: now)
    }

    /// Someone asked to go back to the generation before the active one (control socket). It is
    /// launched and health-checked like any candidate; the refusal says why when there is none.
    public mutating func rollbackRequested(at now: Moment) -> (actions: [SupervisorAction], refusal: String?) {
        switch self.rollBack(at: now) {
        case .refused(let why): ([], why)
        case .rollingBack(_, _, let actions): (actions, nil)
        }
    }

    public mutating func buildFinished(_ id: BuildID, _ outcome: BuildOutcome, at now: Moment) -> [SupervisorAction] {
        let running: RunningBuild
        let next: BuildReason?
        switch self.build {
        case .running(let build) where build.id == id:
            (running, next) = (build, nil)
        case .cancelling(let build, let cause) where build.id == id:
            running = build
            if case .superseded(let reason) = cause { next = reason } else { next = nil }
        case .idle, .running, .cancelling:
            return []  // a late report of a build we no longer track
        }
        self.build = .idle
        var actions: [SupervisorAction] = []
        switch outcome {
        case .succeeded:
            actions.append(.report(.buildSucceeded(id, took: now - running.startedAt)))
            // A build superseded before it finished is stale all the same.
            if self.isRunning, next == nil {
                let generation = self.nextGeneration
                self.nextGeneration += 1
                actions.append(.stage(id, generation))
            }
        case .failed(let failure):
            actions.append(.report(.buildFailed(id, took: now - running.startedAt, failure, stillServing: self.servingGeneration)))
        case .cancelled:
            let cause: BuildCancelCause = next.map { .superseded(by: $0) } ?? .stopping
            actions.append(.report(.buildCancelled(id, because: cause)))
        }
        switch self.life {
        case .running:
            if let next {
                actions += self.startBuild(reason: next, at: now)
            }
        case .shuttingDown:
            actions += self.exitIfDone()
        case .stopped:
            break
        }
        return actions
    }

    /// The build's binary is now generation `generation`.
    public mutating func staged(_ generation: Generation, at now: Moment) -> [SupervisorAction] {
        guard self.isRunning else { return [] }
        self.kept.append(generation)
        var actions: [SupervisorAction]
        if self.policy.gatesMigrations {
            self.gated = generation
            actions = [.checkMigrations(generation)]
        } else {
            actions = self.launch(generation, purpose: .newBuild, at: now)
        }
        var inUse = Set([self.gated].compactMap { $0 })
        if case .running(let serving) = self.life { inUse.formUnion(serving.generations) }
        var discarded: [Generation] = []
        while self.kept.count > self.policy.keepGenerations,
            let oldest = self.kept.first(where: { !inUse.contains($0) })
        {
            self.kept.removeAll { $0 == oldest }
            self.served.remove(oldest)
            discarded.append(oldest)
        }
        if !discarded.isEmpty {
            actions.append(.discardGenerations(discarded))
        }
        return actions
    }

    /// The migrations gate's answer for `generation`: nil lets it start, a reason blocks it.
    public mutating func migrationsChecked(_ generation: Generation, blockedBecause reason: String?, at now: Moment) -> [SupervisorAction] {
        guard self.gated == generation, self.isRunning else { return [] }
        self.gated = nil
        guard let reason else { return self.launch(generation, purpose: .newBuild, at: now) }
        return [.report(.migrationsBlocked(generation, reason: reason, stillServing: self.servingGeneration))]
    }

    public mutating func stagingFailed(_ build: BuildID, reason: String) -> [SupervisorAction] {
        [.report(.stagingFailed(build, reason: reason, stillServing: self.servingGeneration))]
    }

    public mutating func candidateHealthy(_ generation: Generation, at now: Moment) -> [SupervisorAction] {
        guard case .running(let serving) = self.life, let candidate = serving.candidate, candidate.generation == generation else {
            return []
        }
        let previous = serving.active
        var actions: [SupervisorAction] = [.switchTraffic(to: generation)]
        if self.policy.mode.forwardsToPrivatePort { self.routed = generation }
        if let previous, previous.generation != generation {
            actions.append(self.stopAction(previous.generation))
        }
        let swappedIn = previous?.generation != generation && candidate.purpose == .newBuild
        self.served.insert(generation)
        // A restart still armed for a crashed generation is moot: this one serves now.
        self.life = .running(.serving(Active(generation: generation, since: now, swappedAt: swappedIn ? now : nil)))
        if candidate.purpose != .restart {
            self.crashes = 0
        }
        actions.append(
            .report(.swapped(from: previous?.generation, to: generation, healthyAfter: now - candidate.launchedAt))
        )
        return actions
    }

    public mutating func candidateUnhealthy(_ generation: Generation, reason: String, at now: Moment) -> [SupervisorAction] {
        self.discardCandidate(generation, reason: reason, exited: false, at: now)
    }

    /// `diagnosis` says why a candidate that exited before it became healthy did (the runtime's
    /// reading of its last output, e.g. `PortHandoff.diagnoseExit`).
    public mutating func processExited(
        _ generation: Generation, _ status: ExitStatus, at now: Moment, diagnosis: String? = nil
    ) -> [SupervisorAction] {
        // First, before any launch: requests must not go to its port in the meantime.
        let hold: [SupervisorAction] = self.routed == generation ? [.holdTraffic(generation)] : []
        return hold + self.exited(generation, status, at: now, diagnosis: diagnosis)
    }

    private mutating func exited(_ generation: Generation, _ status: ExitStatus, at now: Moment, diagnosis: String?) -> [SupervisorAction] {
        if self.exiting.remove(generation) != nil {
            var actions: [SupervisorAction] = [.report(.serverStopped(generation, status: status))]
            switch self.life {
            case .running(.awaitingPort(let next)) where self.exiting.isEmpty:
                actions += self.launchCandidate(next.generation, purpose: next.purpose, restart: nil, at: now)
            case .running:
                break
            case .shuttingDown:
                actions += self.exitIfDone()
            case .stopped:
                break
            }
            return actions
        }
        guard case .running(let serving) = self.life else {
            return []  // every server was told to stop, so this one was known as exiting
        }
        if let candidate = serving.candidate, candidate.generation == generation {
            // Status 0 with nothing else to go on: a program that did its work and ended, such as
            // `swift package init`'s "Hello, world!", not a server.
            let ended = status == .exited(0) ? ": it ended by itself; a server keeps running and answers on the port safe-watch gives it" : ""
            let why = diagnosis.map { ": \($0)" } ?? ended
            return self.discardCandidate(generation, reason: "exited (\(status)) before it became healthy\(why)", exited: true, at: now)
        }
        guard let active = serving.active, active.generation == generation else { return [] }
        var actions: [SupervisorAction] = [.report(.serverCrashed(generation, status: status))]
        switch serving {
        case .replacing(_, let candidate):
            // A newer generation is already on its way in.
            self.life = .running(.starting(candidate, restart: nil))
            return actions
        case .serving:
            self.life = .running(.idle(restart: nil))
        case .idle, .starting, .awaitingPort:
            return actions  // no active server: unreachable, `active` matched
        }
        if let swappedAt = active.swappedAt, now - swappedAt <= self.policy.rollbackWindow,
            let previous = self.previousKept(before: generation)
        {
            actions.append(.report(.rollingBack(from: generation, to: previous, because: .crashedAfterSwap)))
            actions += self.launch(previous, purpose: .rollback, at: now)
            return actions
        }
        return actions + self.scheduleRestart(generation, ranFor: now - active.since)
    }

    public mutating func timerFired(_ timer: SupervisorTimer, at now: Moment) -> [SupervisorAction] {
        switch timer {
        case .restart(let generation):
            switch self.life {
            case .running(.idle(restart: generation)):
                self.life = .running(.idle(restart: nil))
                return self.launch(generation, purpose: .restart, at: now)
            case .running(.starting(let candidate, restart: generation)):
                // Something else starts already: the restart is off.
                self.life = .running(.starting(candidate, restart: nil))
                return []
            case .running, .shuttingDown, .stopped:
                return []
            }
        }
    }

    public mutating func signalReceived(_ signal: SupervisorSignal, at now: Moment) -> [SupervisorAction] {
        switch (signal, self.life) {
        case (.reload, .running):
            return [.reloadConfig]
        case (.reload, .shuttingDown), (.reload, .stopped), (.terminate, .stopped):
            return []
        case (.terminate, .running(let serving)):
            self.life = .shuttingDown
            // Under systemd the listening socket outlives safe-watch (socket unit, fd store): idle
            // keep-alive clients get a moment to send one last request, then reconnect to the next
            // safe-watch. In a terminal, stopping is stopping.
            let idleGrace: Duration = self.policy.runsAsService ? .seconds(1) : .zero
            var actions: [SupervisorAction] = [.armHardStop, .stopAcceptingTraffic(idleGrace: idleGrace), .report(.stopping)]
            // In order: the build, the candidate, the server.
            switch self.build {
            case .idle:
                break
            case .running(let build):
                self.build = .cancelling(build, because: .stopping)
                actions.append(.cancelBuild(build.id))
            case .cancelling(let build, _):
                self.build = .cancelling(build, because: .stopping)
            }
            if let candidate = serving.candidate {
                actions.append(self.stopAction(candidate.generation))
            }
            if let active = serving.active {
                actions.append(self.stopAction(active.generation))
            }
            return actions + self.exitIfDone()
        case (.terminate, .shuttingDown):
            // Asked twice: do not wait for draining any longer.
            return self.exiting.sorted().map { .stop($0, signal: 9, timeout: .zero) }
        }
    }

    /// The configuration was read again and is valid.
    public mutating func configReloaded(_ policy: SupervisorPolicy, rebuild: Bool, at now: Moment) -> [SupervisorAction] {
        self.policy = policy
        var actions: [SupervisorAction] = [.report(.configReloaded)]
        if rebuild && self.isRunning {
            actions += self.requestBuild(reason: .configChanged, at: now)
        }
        return actions
    }

    /// `.safe-watch` is gone, and with it every staged binary: no generation can be restarted or
    /// rolled back to. What runs keeps running (a process keeps its image); a build makes a new
    /// generation to launch.
    public mutating func stateDirectoryLost(at now: Moment) -> [SupervisorAction] {
        guard case .running(let serving) = self.life else { return [] }
        self.kept = []
        self.gated = nil
        var actions: [SupervisorAction] = [.report(.stateDirectoryLost(stillServing: self.servingGeneration))]
        switch serving {
        case .idle:
            self.life = .running(.idle(restart: nil))
        case .starting(let candidate, _):
            self.life = .running(.starting(candidate, restart: nil))
        case .awaitingPort(let waiting):
            // Restart mode: the old server was stopped for a binary that is gone.
            self.life = .running(.idle(restart: nil))
            actions.append(.report(.candidateDiscarded(waiting.generation, reason: "its staged binary was deleted", stillServing: nil)))
        case .serving, .replacing:
            break
        }
        return actions + self.requestBuild(reason: .stateDirectoryLost, at: now)
    }

    /// The configuration was read again and is invalid: keep the one in force.
    public mutating func configRejected(_ message: String) -> [SupervisorAction] {
        [.report(.configRejected(message, keeping: "the previous configuration stays in force"))]
    }
}

// MARK: - Control requests

extension Supervisor {

    /// `safe-watch rebuild`: what to do and what to answer.
    public mutating func rebuildAsked(at now: Moment) -> (actions: [SupervisorAction], reply: ControlReply) {
        guard self.isRunning else { return ([], .refused("safe-watch is stopping")) }
        let message: String
        switch self.build {
        case .idle: message = "build \(self.nextBuild) started"
        case .running(let build): message = "build \(build.id) is cancelled; a new build starts once it has stopped"
        case .cancelling: message = "a build is being cancelled already; a new one starts once it has stopped"
        }
        return (self.requestBuild(reason: .requested, at: now), ControlReply(ok: true, message: message))
    }

    /// `safe-watch rollback`: what to do and what to answer.
    public mutating func rollbackAsked(at now: Moment) -> (actions: [SupervisorAction], reply: ControlReply) {
        switch self.rollBack(at: now) {
        case .refused(let why):
            return ([], .refused(why))
        case .rollingBack(let from, let to, let actions):
            let how = self.policy.mode == .restart
                ? "gen \(from) stops, then gen \(to) starts" : "it starts beside gen \(from) and takes over once healthy"
            return (actions, ControlReply(ok: true, message: "rolling back from gen \(from) to gen \(to): \(how)"))
        }
    }

    /// `safe-watch stop`: the answer, and whether to stop as on SIGTERM. Under systemd, a stop
    /// behind its back would make the unit look failed, or be restarted.
    public func stopAsked(runsAsService: Bool) -> (reply: ControlReply, terminate: Bool) {
        guard self.isRunning else { return (ControlReply(ok: true, message: "stopping already"), false) }
        if runsAsService {
            return (.refused("safe-watch runs as a systemd service: stop it with `systemctl --user stop safe-watch.service`"), false)
        }
        return (ControlReply(ok: true, message: "stopping: the server finishes its requests first"), true)
    }
}

// MARK: - Decisions shared by several events

extension Supervisor {

    private enum Rollback {
        case refused(String)
        case rollingBack(from: Generation, to: Generation, [SupervisorAction])
    }

    private mutating func rollBack(at now: Moment) -> Rollback {
        guard case .running(let serving) = self.life else { return .refused("safe-watch is stopping") }
        let active: Active
        switch serving {
        case .serving(let serving):
            active = serving
        case .replacing(_, let candidate):
            return .refused("gen \(candidate.generation) is starting; roll back once it is healthy or discarded")
        case .idle, .starting, .awaitingPort:
            return .refused("nothing is serving, so there is nothing to roll back from")
        }
        guard let previous = self.previousKept(before: active.generation) else {
            return .refused("no generation older than gen \(active.generation) that served is kept (keep_generations); there is nothing to roll back to")
        }
        let actions: [SupervisorAction] = [.report(.rollingBack(from: active.generation, to: previous, because: .requested))]
        return .rollingBack(from: active.generation, to: previous, actions + self.launch(previous, purpose: .rollback, at: now))
    }

    private mutating func requestBuild(reason: BuildReason, at now: Moment) -> [SupervisorAction] {
        guard self.isRunning else { return [] }
        switch self.build {
        case .idle:
            return self.startBuild(reason: reason, at: now)
        case .running(let build):
            // Never two builds at once: interrupt this one and build again once it has ended.
            self.build = .cancelling(build, because: .superseded(by: reason))
            return [.cancelBuild(build.id)]
        case .cancelling(let build, .superseded(let queued)):
            self.build = .cancelling(build, because: .superseded(by: queued.merged(with: reason)))
            return []
        case .cancelling(_, .stopping):
            return []  // only while shutting down, which the guard excludes
        }
    }

    /// Drops the candidate (stopping it unless it has `exited`) and decides what serves next.
    private mutating func discardCandidate(_ generation: Generation, reason: String, exited: Bool, at now: Moment) -> [SupervisorAction] {
        guard case .running(let serving) = self.life, let candidate = serving.candidate, candidate.generation == generation else {
            return []
        }
        switch serving {
        case .replacing(let active, _):
            self.life = .running(.serving(active))
        case .starting(_, let armed):
            self.life = .running(.idle(restart: armed))
        case .idle, .serving, .awaitingPort:
            return []  // no candidate: unreachable, `candidate` matched
        }
        var actions: [SupervisorAction] = exited ? [] : [self.stopAction(generation)]
        actions.append(.report(.candidateDiscarded(generation, reason: reason, stillServing: self.servingGeneration)))
        guard serving.active == nil else { return actions }
        // Nothing serves: in restart mode the old server was stopped for this one, and after a
        // crash the restart failed. Fall back where that makes sense.
        switch candidate.purpose {
        case .newBuild:
            if self.policy.mode == .restart, let previous = self.previousKept(before: generation) {
                actions.append(.report(.rollingBack(from: generation, to: previous, because: .replacementFailed)))
                actions += self.launch(previous, purpose: .rollback, at: now)
            }
        case .restart:
            actions += self.scheduleRestart(generation, ranFor: .zero)
        case .rollback:
            break
        }
        return actions
    }

    private mutating func startBuild(reason: BuildReason, at now: Moment) -> [SupervisorAction] {
        let id = self.nextBuild
        self.nextBuild += 1
        self.build = .running(RunningBuild(id: id, startedAt: now, reason: reason))
        return [.startBuild(id), .report(.buildStarted(id, reason: reason))]
    }

    /// Launches `generation`: beside the active server in proxy mode, after stopping it in restart mode.
    private mutating func launch(_ generation: Generation, purpose: LaunchPurpose, at now: Moment) -> [SupervisorAction] {
        guard case .running(let serving) = self.life else { return [] }
        var actions: [SupervisorAction] = []
        let active = serving.active
        var restart: Generation?
        switch serving {
        case .idle(let armed):
            restart = armed
        case .serving, .awaitingPort:
            break  // a launch waiting for the port gives way to this newer one
        case .starting(let older, let armed):
            restart = armed
            actions += self.supersede(older, by: generation, stillServing: nil)
        case .replacing(let active, let older):
            actions += self.supersede(older, by: generation, stillServing: active.generation)
        }
        if self.policy.mode == .restart, let active {
            actions.append(self.stopAction(active.generation))
            self.life = .running(.awaitingPort(Launch(generation: generation, purpose: purpose)))
            return actions
        }
        if self.policy.mode == .restart, !self.exiting.isEmpty {
            // The port is still held by a server on its way out: launch once it has gone.
            self.life = .running(.awaitingPort(Launch(generation: generation, purpose: purpose)))
            return actions
        }
        self.life = .running(active.map { .serving($0) } ?? .idle(restart: restart))
        return actions + self.launchCandidate(generation, purpose: purpose, restart: restart, at: now)
    }

    /// A newer generation supersedes the one still starting.
    private mutating func supersede(_ older: Candidate, by generation: Generation, stillServing: Generation?) -> [SupervisorAction] {
        [
            self.stopAction(older.generation),
            .report(.candidateDiscarded(older.generation, reason: "superseded by generation \(generation)", stillServing: stillServing)),
        ]
    }

    /// Starts `generation` beside whatever serves now.
    private mutating func launchCandidate(
        _ generation: Generation, purpose: LaunchPurpose, restart: Generation?, at now: Moment
    ) -> [SupervisorAction] {
        let candidate = Candidate(generation: generation, purpose: purpose, launchedAt: now)
        if case .running(.serving(let active)) = self.life {
            self.life = .running(.replacing(active, by: candidate))
        } else {
            self.life = .running(.starting(candidate, restart: restart))
        }
        return [.launchCandidate(generation, purpose), .report(.candidateLaunched(generation, purpose))]
    }

    private mutating func stopAction(_ generation: Generation) -> SupervisorAction {
        self.exiting.insert(generation)
        return .stop(generation, signal: self.policy.stopSignal, timeout: self.policy.stopTimeout)
    }

    /// Arms the restart of `generation`, which crashed (or whose restart failed) and left nothing serving.
    private mutating func scheduleRestart(_ generation: Generation, ranFor: Duration) -> [SupervisorAction] {
        // Its binary went with the state directory: the build under way brings the next one.
        guard self.kept.contains(generation) else { return [] }
        if ranFor >= self.policy.stableAfter {
            self.crashes = 0
        }
        let delay = self.policy.restartBackoff.delay(afterFailures: self.crashes)
        self.crashes += 1
        self.life = .running(.idle(restart: generation))
        return [.schedule(.restart(generation), after: delay), .report(.restartScheduled(generation, after: delay))]
    }

    /// The newest kept generation older than `generation` that served, the one a rollback
    /// returns to.
    private func previousKept(before generation: Generation) -> Generation? {
        self.kept.last(where: { $0 < generation && self.served.contains($0) })
    }

    private mutating func exitIfDone() -> [SupervisorAction] {
        guard case .shuttingDown = self.life, self.build == .idle, self.exiting.isEmpty else { return [] }
        self.life = .stopped
        return [.report(.stopped), .exit(code: 0)]
    }
}
