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
    /// Send `signal` to the generation's process group, SIGKILL it after `timeout`. In proxy and
    /// tcp mode the runtime first lets the generation's in-flight requests (tcp mode: its open
    /// connections) finish, within the same timeout.
    case stop(Generation, signal: Int32, timeout: Duration)
    case schedule(SupervisorTimer, after: Duration)
    /// Delete staged generations that fell out of the kept window (their processes, if any, are gone).
    case discardGenerations([Generation])
    /// Read the configuration again and answer `configReloaded` or `configRejected`.
    case reloadConfig
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

/// How a process ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    public var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signalled(let signal): return "signal \(signalName(signal))"
        }
    }
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

    public init(
        mode: ServeMode = .proxy,
        stopSignal: Int32 = 15,
        stopTimeout: Duration = .seconds(5),
        rollbackWindow: Duration = .seconds(10),
        restartBackoff: Backoff = Backoff(),
        stableAfter: Duration = .seconds(10),
        keepGenerations: Int = 3,
        gatesMigrations: Bool = false
    ) {
        self.mode = mode
        self.stopSignal = stopSignal
        self.stopTimeout = stopTimeout
        self.rollbackWindow = rollbackWindow
        self.restartBackoff = restartBackoff
        self.stableAfter = stableAfter
        self.keepGenerations = max(2, keepGenerations)
        self.gatesMigrations = gatesMigrations
    }
}

/// The supervise loop's decisions, with no I/O, no clocks and no processes.
///
/// One `mutating func` per event returns the actions to carry out, in order. The runtime actor
/// feeds it events from the watcher, the builder, the launcher, the reaper, timers and signals.
public struct Supervisor: Sendable {

    /// The build side: at most one build runs; at most one more is queued.
    private enum BuildState: Equatable {
        /// No build runs.
        case idle
        /// `id` runs since `startedAt`. `queued` is the reason for the build that follows it (files
        /// changed after it started, a rebuild was asked for); `cancelRequested` once we asked it to stop.
        case running(id: BuildID, startedAt: Moment, reason: BuildReason, queued: BuildReason?, cancelRequested: Bool)
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

    /// The supervisor's life: it runs until told to stop, then waits for everything to end.
    private enum Phase: Equatable {
        case running
        case stopping
        case stopped
    }

    public private(set) var policy: SupervisorPolicy
    private var phase: Phase = .running
    private var build: BuildState = .idle
    private var nextBuild: BuildID = 1
    private var nextGeneration: Generation = 1
    private var active: Active?
    private var candidate: Candidate?
    /// Restart mode: a staged generation that launches once the old server has exited.
    private var launchAfterStop: (generation: Generation, purpose: LaunchPurpose)?
    /// Generations that were told to stop and have not exited yet.
    private var stopping: Set<Generation> = []
    /// Staged generations in the order they were made; the source of rollbacks.
    private var staged: [Generation] = []
    /// Consecutive crashes of the active generation, for the restart backoff.
    private var crashes = 0
    /// The generation whose crash restart is scheduled.
    private var pendingRestart: Generation?
    /// A staged generation waiting for the migrations gate.
    private var gated: Generation?

    public init(policy: SupervisorPolicy) {
        self.policy = policy
    }

    /// The generation serving traffic, if any.
    public var servingGeneration: Generation? { self.active?.generation }

    /// Whether a build runs (or is being cancelled).
    public var isBuilding: Bool { self.build != .idle }

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
        guard self.phase == .running else { return ([], "safe-watch is stopping") }
        guard let active = self.active else { return ([], "nothing is serving, so there is nothing to roll back from") }
        if let candidate = self.candidate {
            return ([], "gen \(candidate.generation) is starting; roll back once it is healthy or discarded")
        }
        guard let previous = self.previousStaged(before: active.generation) else {
            return ([], "gen \(active.generation) is the oldest generation kept (keep_generations); there is nothing older to roll back to")
        }
        self.pendingRestart = nil
        let actions: [SupervisorAction] = [.report(.rollingBack(from: active.generation, to: previous, because: .requested))]
        return (actions + self.launch(previous, purpose: .rollback, at: now), nil)
    }

    public mutating func buildFinished(_ id: BuildID, _ outcome: BuildOutcome, at now: Moment) -> [SupervisorAction] {
        guard case .running(let running, let startedAt, _, let queued, _) = self.build, running == id else {
            return []  // a late report of a build we no longer track
        }
        self.build = .idle
        var actions: [SupervisorAction] = []
        switch outcome {
        case .succeeded:
            actions.append(.report(.buildSucceeded(id, took: now - startedAt)))
            if self.phase == .running && queued == nil {
                let generation = self.nextGeneration
                self.nextGeneration += 1
                actions.append(.stage(id, generation))
            }
        case .failed(let failure):
            actions.append(.report(.buildFailed(id, took: now - startedAt, failure, stillServing: self.servingGeneration)))
        case .cancelled:
            let cause: BuildCancelCause = queued.map { .superseded(by: $0) } ?? .stopping
            actions.append(.report(.buildCancelled(id, because: cause)))
        }
        switch self.phase {
        case .running:
            if let queued {
                actions += self.startBuild(reason: queued, at: now)
            }
        case .stopping:
            actions += self.exitIfDone()
        case .stopped:
            break
        }
        return actions
    }

    /// The build's binary is now generation `generation`.
    public mutating func staged(_ generation: Generation, at now: Moment) -> [SupervisorAction] {
        guard self.phase == .running else { return [] }
        self.staged.append(generation)
        var actions: [SupervisorAction]
        if self.policy.gatesMigrations {
            self.gated = generation
            actions = [.checkMigrations(generation)]
        } else {
            actions = self.launch(generation, purpose: .newBuild, at: now)
        }
        let inUse = Set([self.active?.generation, self.candidate?.generation, self.launchAfterStop?.generation, self.gated].compactMap { $0 })
        var discarded: [Generation] = []
        while self.staged.count > self.policy.keepGenerations,
            let oldest = self.staged.first(where: { !inUse.contains($0) })
        {
            self.staged.removeAll { $0 == oldest }
            discarded.append(oldest)
        }
        if !discarded.isEmpty {
            actions.append(.discardGenerations(discarded))
        }
        return actions
    }

    /// The migrations gate's answer for `generation`: nil lets it start, a reason blocks it.
    public mutating func migrationsChecked(_ generation: Generation, blockedBecause reason: String?, at now: Moment) -> [SupervisorAction] {
        guard self.gated == generation, self.phase == .running else { return [] }
        self.gated = nil
        guard let reason else { return self.launch(generation, purpose: .newBuild, at: now) }
        return [.report(.migrationsBlocked(generation, reason: reason, stillServing: self.servingGeneration))]
    }

    public mutating func stagingFailed(_ build: BuildID, reason: String) -> [SupervisorAction] {
        [.report(.stagingFailed(build, reason: reason, stillServing: self.servingGeneration))]
    }

    public mutating func candidateHealthy(_ generation: Generation, at now: Moment) -> [SupervisorAction] {
        guard let candidate = self.candidate, candidate.generation == generation, self.phase == .running else {
            return []
        }
        self.candidate = nil
        let previous = self.active
        var actions: [SupervisorAction] = [.switchTraffic(to: generation)]
        if let previous, previous.generation != generation {
            actions.append(self.stopAction(previous.generation))
        }
        let swappedIn = previous?.generation != generation && candidate.purpose == .newBuild
        self.active = Active(generation: generation, since: now, swappedAt: swappedIn ? now : nil)
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
        if self.stopping.remove(generation) != nil {
            var actions: [SupervisorAction] = [.report(.serverStopped(generation, status: status))]
            if let next = self.launchAfterStop, self.phase == .running, self.active == nil, self.stopping.isEmpty {
                self.launchAfterStop = nil
                actions += self.launchCandidate(next.generation, purpose: next.purpose, at: now)
            }
            if self.phase == .stopping {
                actions += self.exitIfDone()
            }
            return actions
        }
        if let candidate = self.candidate, candidate.generation == generation {
            let why = diagnosis.map { ": \($0)" } ?? ""
            return self.discardCandidate(generation, reason: "exited (\(status)) before it became healthy\(why)", exited: true, at: now)
        }
        guard let active = self.active, active.generation == generation else { return [] }
        self.active = nil
        var actions: [SupervisorAction] = [.report(.serverCrashed(generation, status: status))]
        guard self.phase == .running else {
            return actions + self.exitIfDone()
        }
        if let swappedAt = active.swappedAt, now - swappedAt <= self.policy.rollbackWindow,
            let previous = self.previousStaged(before: generation), self.candidate == nil
        {
            actions.append(.report(.rollingBack(from: generation, to: previous, because: .crashedAfterSwap)))
            actions += self.launch(previous, purpose: .rollback, at: now)
            return actions
        }
        if self.candidate != nil {
            return actions  // a newer generation is already on its way in
        }
        return actions + self.scheduleRestart(generation, ranFor: now - active.since)
    }

    public mutating func timerFired(_ timer: SupervisorTimer, at now: Moment) -> [SupervisorAction] {
        switch timer {
        case .restart(let generation):
            guard self.pendingRestart == generation else { return [] }
            self.pendingRestart = nil
            guard self.phase == .running, self.active == nil, self.candidate == nil else { return [] }
            return self.launch(generation, purpose: .restart, at: now)
        }
    }

    public mutating func signalReceived(_ signal: SupervisorSignal, at now: Moment) -> [SupervisorAction] {
        switch (signal, self.phase) {
        case (.reload, .running):
            return [.reloadConfig]
        case (.reload, .stopping), (.reload, .stopped), (.terminate, .stopped):
            return []
        case (.terminate, .running):
            self.phase = .stopping
            self.pendingRestart = nil
            self.launchAfterStop = nil
            var actions: [SupervisorAction] = [.report(.stopping)]
            // In order: the build, the candidate, the server.
            if case .running(let id, let startedAt, let reason, _, let cancelRequested) = self.build {
                self.build = .running(id: id, startedAt: startedAt, reason: reason, queued: nil, cancelRequested: true)
                if !cancelRequested { actions.append(.cancelBuild(id)) }
            }
            if let candidate = self.candidate {
                self.candidate = nil
                actions.append(self.stopAction(candidate.generation))
            }
            if let active = self.active {
                self.active = nil
                actions.append(self.stopAction(active.generation))
            }
            return actions + self.exitIfDone()
        case (.terminate, .stopping):
            // Asked twice: do not wait for draining any longer.
            var actions: [SupervisorAction] = []
            for generation in self.stopping.sorted() {
                actions.append(.stop(generation, signal: 9, timeout: .zero))
            }
            return actions
        }
    }

    /// The configuration was read again and is valid.
    public mutating func configReloaded(_ policy: SupervisorPolicy, rebuild: Bool, at now: Moment) -> [SupervisorAction] {
        self.policy = policy
        var actions: [SupervisorAction] = [.report(.configReloaded)]
        if rebuild && self.phase == .running {
            actions += self.requestBuild(reason: .configChanged, at: now)
        }
        return actions
    }

    /// `.safe-watch` is gone, and with it every staged binary: no generation can be restarted or
    /// rolled back to. What runs keeps running (a process keeps its image); a build makes a new
    /// generation to launch.
    public mutating func stateDirectoryLost(at now: Moment) -> [SupervisorAction] {
        guard self.phase == .running else { return [] }
        self.staged = []
        self.pendingRestart = nil
        self.gated = nil
        var actions: [SupervisorAction] = [.report(.stateDirectoryLost(stillServing: self.servingGeneration))]
        if let waiting = self.launchAfterStop {
            // Restart mode: the old server was stopped for a binary that is gone.
            self.launchAfterStop = nil
            actions.append(.report(.candidateDiscarded(waiting.generation, reason: "its staged binary was deleted", stillServing: nil)))
        }
        return actions + self.requestBuild(reason: .stateDirectoryLost, at: now)
    }

    /// The configuration was read again and is invalid: keep the one in force.
    public mutating func configRejected(_ message: String) -> [SupervisorAction] {
        [.report(.configRejected(message, keeping: "the previous configuration stays in force"))]
    }
}

// MARK: - Decisions shared by several events

extension Supervisor {

    private mutating func requestBuild(reason: BuildReason, at now: Moment) -> [SupervisorAction] {
        guard self.phase == .running else { return [] }
        switch self.build {
        case .idle:
            return self.startBuild(reason: reason, at: now)
        case .running(let id, let startedAt, let running, let queued, let cancelRequested):
            // Never two builds at once: interrupt this one and build again once it has ended.
            self.build = .running(
                id: id, startedAt: startedAt, reason: running, queued: queued.map { $0.merged(with: reason) } ?? reason,
                cancelRequested: true)
            return cancelRequested ? [] : [.cancelBuild(id)]
        }
    }

    /// Drops the candidate (stopping it unless it has `exited`) and decides what serves next.
    private mutating func discardCandidate(_ generation: Generation, reason: String, exited: Bool, at now: Moment) -> [SupervisorAction] {
        guard let candidate = self.candidate, candidate.generation == generation else { return [] }
        self.candidate = nil
        var actions: [SupervisorAction] = exited ? [] : [self.stopAction(generation)]
        actions.append(.report(.candidateDiscarded(generation, reason: reason, stillServing: self.servingGeneration)))
        guard self.phase == .running, self.active == nil else { return actions }
        // Nothing serves: in restart mode the old server was stopped for this one, and after a
        // crash the restart failed. Fall back where that makes sense.
        switch candidate.purpose {
        case .newBuild:
            if self.policy.mode == .restart, let previous = self.previousStaged(before: generation) {
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
        self.build = .running(id: id, startedAt: now, reason: reason, queued: nil, cancelRequested: false)
        return [.startBuild(id), .report(.buildStarted(id, reason: reason))]
    }

    /// Launches `generation`: beside the active server in proxy mode, after stopping it in restart mode.
    private mutating func launch(_ generation: Generation, purpose: LaunchPurpose, at now: Moment) -> [SupervisorAction] {
        var actions: [SupervisorAction] = []
        if let older = self.candidate {
            // A newer generation supersedes the one still starting.
            self.candidate = nil
            actions.append(self.stopAction(older.generation))
            actions.append(
                .report(.candidateDiscarded(older.generation, reason: "superseded by generation \(generation)",
                                            stillServing: self.servingGeneration)))
        }
        if self.policy.mode == .restart, let active = self.active {
            self.active = nil
            self.launchAfterStop = (generation, purpose)
            actions.append(self.stopAction(active.generation))
            return actions
        }
        if self.policy.mode == .restart, !self.stopping.isEmpty {
            // The port is still held by a server on its way out: launch once it has gone.
            self.launchAfterStop = (generation, purpose)
            return actions
        }
        return actions + self.launchCandidate(generation, purpose: purpose, at: now)
    }

    private mutating func launchCandidate(_ generation: Generation, purpose: LaunchPurpose, at now: Moment) -> [SupervisorAction] {
        self.candidate = Candidate(generation: generation, purpose: purpose, launchedAt: now)
        return [.launchCandidate(generation, purpose), .report(.candidateLaunched(generation, purpose))]
    }

    private mutating func stopAction(_ generation: Generation) -> SupervisorAction {
        self.stopping.insert(generation)
        return .stop(generation, signal: self.policy.stopSignal, timeout: self.policy.stopTimeout)
    }

    private mutating func scheduleRestart(_ generation: Generation, ranFor: Duration) -> [SupervisorAction] {
        // Its binary went with the state directory: the build under way brings the next one.
        guard self.staged.contains(generation) else { return [] }
        if ranFor >= self.policy.stableAfter {
            self.crashes = 0
        }
        let delay = self.policy.restartBackoff.delay(afterFailures: self.crashes)
        self.crashes += 1
        self.pendingRestart = generation
        return [.schedule(.restart(generation), after: delay), .report(.restartScheduled(generation, after: delay))]
    }

    /// The newest staged generation older than `generation`, the one a rollback returns to.
    private func previousStaged(before generation: Generation) -> Generation? {
        self.staged.last(where: { $0 < generation })
    }

    private mutating func exitIfDone() -> [SupervisorAction] {
        guard self.phase == .stopping, self.build == .idle, self.candidate == nil, self.active == nil,
            self.stopping.isEmpty
        else { return [] }
        self.phase = .stopped
        return [.report(.stopped), .exit(code: 0)]
    }
}
