import Foundation

/// What `safe-watch status` shows: folded from the same reports people read, plus the facts only
/// the runtime knows (pids, ports, watches), which it passes in when asked. Pure.
public struct StatusBoard: Sendable {
    public private(set) var serving: (generation: Generation, since: Date)?
    public private(set) var building: StatusSnapshot.RunningBuild?
    public private(set) var starting: Generation?
    public private(set) var lastBuild: StatusSnapshot.BuildResult?
    public private(set) var lastSwap: StatusSnapshot.Swap?
    /// The last thing that went wrong, until something serves again.
    public private(set) var problem: String?
    public private(set) var migrations: String
    private let gatesMigrations: Bool
    private var stopping = false

    /// - Parameter gatesMigrations: the project has a migrations directory.
    public init(gatesMigrations: Bool) {
        self.gatesMigrations = gatesMigrations
        self.migrations = gatesMigrations ? "not checked yet" : "no migrations directory"
    }

    public mutating func record(_ report: Report, at now: Date) {
        switch report {
        case .buildStarted(let id, let reason):
            self.building = StatusSnapshot.RunningBuild(id: id, reason: reason.summary, startedAt: now)
        case .buildSucceeded(let id, let took):
            self.finishBuild(id, result: "succeeded", took: took, summary: "succeeded", diagnostics: [], at: now)
        case .buildFailed(let id, let took, let failure, _):
            self.finishBuild(
                id, result: "failed", took: took, summary: failure.summary,
                diagnostics: failure.diagnostics.map(StatusSnapshot.Diagnostic.init), at: now)
            self.problem = "build \(id) failed: \(failure.summary)"
        case .buildCancelled(let id, _):
            if self.building?.id == id { self.building = nil }
        case .stagingFailed(let id, let reason, _):
            // The build itself succeeded; the result says what happened next.
            self.lastBuild?.result = "staging_failed"
            self.lastBuild?.summary = reason
            self.problem = "build \(id) could not be staged: \(reason)"
        case .candidateLaunched(let generation, _):
            self.starting = generation
        case .migrationsBlocked(let generation, let reason, _):
            self.migrations = "blocked gen \(generation): \(reason)"
            self.problem = "gen \(generation) not started: migrations \(reason)"
        case .swapped(let from, let to, let after):
            self.serving = (to, now)
            if self.starting == to { self.starting = nil }
            self.lastSwap = StatusSnapshot.Swap(from: from, to: to, at: now, healthyAfterSeconds: after.seconds)
            self.problem = nil
            if self.gatesMigrations { self.migrations = "passed (gen \(to) was allowed to start)" }
        case .candidateDiscarded(let generation, let reason, _):
            if self.starting == generation { self.starting = nil }
            self.problem = "gen \(generation) discarded: \(reason)"
        case .serverCrashed(let generation, let status):
            if self.serving?.generation == generation { self.serving = nil }
            if self.starting == generation { self.starting = nil }
            self.problem = "gen \(generation) exited unexpectedly (\(status))"
        case .serverStopped(let generation, _):
            // Restart mode stops the serving generation before its replacement starts.
            if self.serving?.generation == generation { self.serving = nil }
        case .rollingBack(let from, let to, _):
            self.problem = "rolling back from gen \(from) to gen \(to)"
        case .restartScheduled:
            break
        case .configReloaded:
            if self.problem?.hasPrefix(Self.configurationProblem) == true { self.problem = nil }
        case .configRejected(let message, _):
            self.problem = Self.configurationProblem + message
        case .stateDirectoryLost:
            self.problem = ".safe-watch was deleted; building again to restore the staged generations"
        case .stopping, .stopped:
            self.stopping = true
        }
    }

    private static let configurationProblem = "configuration not reloaded: "

    private mutating func finishBuild(
        _ id: BuildID, result: String, took: Duration, summary: String, diagnostics: [StatusSnapshot.Diagnostic], at now: Date
    ) {
        if self.building?.id == id { self.building = nil }
        self.lastBuild = StatusSnapshot.BuildResult(
            id: id, result: result, finishedAt: now, seconds: took.seconds, summary: summary, diagnostics: diagnostics)
    }

    /// One word for scripts: starting (nothing served yet), serving, building, swapping, failing
    /// (nothing serves and the last attempt failed), stopping.
    public var state: String {
        if self.stopping { return "stopping" }
        if self.starting != nil { return "swapping" }
        if self.building != nil { return self.serving == nil && self.problem == nil ? "starting" : "building" }
        if self.serving != nil { return "serving" }
        return self.problem == nil ? "starting" : "failing"
    }

    public func snapshot(_ facts: StatusSnapshot.Facts, at now: Date) -> StatusSnapshot {
        StatusSnapshot(
            state: self.state, pid: facts.pid, project: facts.project, startedAt: facts.startedAt,
            uptimeSeconds: now.timeIntervalSince(facts.startedAt),
            serve: facts.serve,
            active: self.serving.map { serving in
                StatusSnapshot.Server(generation: serving.generation, pid: facts.pidOf(serving.generation), since: serving.since)
            },
            starting: self.starting, build: self.building, lastBuild: self.lastBuild, lastSwap: self.lastSwap,
            problem: self.problem, migrations: self.migrations, watching: facts.watching)
    }
}

/// `safe-watch status --json`: one object; its keys are part of the interface.
public struct StatusSnapshot: Codable, Equatable, Sendable {
    public struct Serve: Codable, Equatable, Sendable {
        public var mode: String
        /// The public addresses, e.g. ["http://127.0.0.1:8080"].
        public var addresses: [String]
        /// Client connections the proxy accepted but could not set up (each was closed).
        public var failedConnections: Int
        public var lastFailedConnection: String?
        public init(mode: String, addresses: [String], failedConnections: Int = 0, lastFailedConnection: String? = nil) {
            self.mode = mode
            self.addresses = addresses
            self.failedConnections = failedConnections
            self.lastFailedConnection = lastFailedConnection
        }
    }

    public struct Server: Codable, Equatable, Sendable {
        public var generation: Generation
        public var pid: Int32?
        public var since: Date
        public init(generation: Generation, pid: Int32?, since: Date) {
            self.generation = generation
            self.pid = pid
            self.since = since
        }
    }

    public struct RunningBuild: Codable, Equatable, Sendable {
        public var id: BuildID
        public var reason: String
        public var startedAt: Date
    }

    public struct Diagnostic: Codable, Equatable, Sendable {
        public var file: String
        public var line: Int
        public var column: Int?
        public var severity: String
        public var message: String

        public init(file: String, line: Int, column: Int?, severity: String, message: String) {
            self.file = file
            self.line = line
            self.column = column
            self.severity = severity
            self.message = message
        }

        public init(_ diagnostic: SafeWatchCore.Diagnostic) {
            self.file = diagnostic.file
            self.line = diagnostic.line
            self.column = diagnostic.column
            self.severity = diagnostic.severity.rawValue
            self.message = diagnostic.message
        }
    }

    public struct BuildResult: Codable, Equatable, Sendable {
        public var id: BuildID
        /// succeeded, failed or staging_failed.
        public var result: String
        public var finishedAt: Date
        public var seconds: Double
        public var summary: String
        public var diagnostics: [Diagnostic]
    }

    public struct Swap: Codable, Equatable, Sendable {
        public var from: Generation?
        public var to: Generation
        public var at: Date
        public var healthyAfterSeconds: Double
        public init(from: Generation?, to: Generation, at: Date, healthyAfterSeconds: Double) {
            self.from = from
            self.to = to
            self.at = at
            self.healthyAfterSeconds = healthyAfterSeconds
        }
    }

    public struct Watching: Codable, Equatable, Sendable {
        /// Directories with an inotify watch.
        public var directories: Int
        /// Trees scanned with stat instead, e.g. ["src (every 500 ms)"].
        public var polled: [String]
        public init(directories: Int, polled: [String]) {
            self.directories = directories
            self.polled = polled
        }
    }

    /// What the runtime knows and the reports do not say.
    public struct Facts: Sendable {
        public var pid: Int32
        public var project: String
        public var startedAt: Date
        public var serve: Serve
        public var watching: Watching
        public var pidOf: @Sendable (Generation) -> Int32?

        public init(
            pid: Int32, project: String, startedAt: Date, serve: Serve, watching: Watching,
            pidOf: @escaping @Sendable (Generation) -> Int32?
        ) {
            self.pid = pid
            self.project = project
            self.startedAt = startedAt
            self.serve = serve
            self.watching = watching
            self.pidOf = pidOf
        }
    }

    public var state: String
    /// safe-watch's own pid.
    public var pid: Int32
    public var project: String
    public var startedAt: Date
    public var uptimeSeconds: Double
    public var serve: Serve
    public var active: Server?
    /// A generation being health-checked.
    public var starting: Generation?
    public var build: RunningBuild?
    public var lastBuild: BuildResult?
    public var lastSwap: Swap?
    public var problem: String?
    public var migrations: String
    public var watching: Watching
}

extension StatusSnapshot {
    /// The human form, one fact per line.
    public func text(now: Date, clock: (Date) -> String) -> String {
        func seconds(_ value: Double) -> String { Duration.milliseconds(Int64((value * 1000).rounded())).humanReadable }
        var lines = ["safe-watch · \(self.project) · pid \(self.pid) · up \(seconds(self.uptimeSeconds))"]
        func row(_ label: String, _ value: String) { lines.append(label.padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
        var state = self.state
        if let active = self.active {
            state += " · gen \(active.generation)" + (active.pid.map { " (pid \($0))" } ?? "") + " since \(clock(active.since))"
        }
        if let starting = self.starting { state += " · gen \(starting) starting" }
        row("state", state)
        if let problem = self.problem { row("problem", problem) }
        row("serve", "\(self.serve.mode) mode on \(self.serve.addresses.joined(separator: ", "))")
        if self.serve.failedConnections > 0 {
            row("connections", "\(self.serve.failedConnections) could not be set up and were closed; last: \(self.serve.lastFailedConnection ?? "?")")
        }
        if let build = self.build {
            row("build", "build \(build.id) running for \(seconds(now.timeIntervalSince(build.startedAt))) (\(build.reason))")
        }
        if let last = self.lastBuild {
            let outcome = last.result == "succeeded" ? "succeeded" : "\(last.result.replacingOccurrences(of: "_", with: " ")): \(last.summary)"
            row("last build", "build \(last.id) \(outcome) in \(seconds(last.seconds)) at \(clock(last.finishedAt))")
            for diagnostic in last.diagnostics.prefix(10) {
                let column = diagnostic.column.map { ":\($0)" } ?? ""
                lines.append("              \(diagnostic.file):\(diagnostic.line)\(column): \(diagnostic.severity): \(diagnostic.message)")
            }
        } else {
            row("last build", "none finished yet")
        }
        if let swap = self.lastSwap {
            let from = swap.from.map { "gen \($0) → " } ?? ""
            row("last swap", "\(from)gen \(swap.to) at \(clock(swap.at)), healthy after \(seconds(swap.healthyAfterSeconds))")
        } else {
            row("last swap", "none yet")
        }
        row("migrations", self.migrations)
        let polled = self.watching.polled.isEmpty ? "" : "; polling \(self.watching.polled.joined(separator: ", "))"
        row("watching", "\(self.watching.directories) directories with inotify\(polled)")
        return lines.joined(separator: "\n")
    }
}

extension BuildReason {
    /// Why a build started, in a few words: "first build", "Sources/App/main.swift changed".
    public var summary: String {
        switch self {
        case .initial: return "first build"
        case .filesChanged(let paths) where paths.isEmpty: return "files changed"
        case .filesChanged(let paths):
            return paths.count == 1 ? "\(paths[0]) changed" : "\(paths[0]) and \(paths.count - 1) more changed"
        case .configChanged: return "configuration changed"
        case .requested: return "requested"
        case .stateDirectoryLost: return ".safe-watch was deleted"
        }
    }
}
