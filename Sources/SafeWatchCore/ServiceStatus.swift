/// What safe-watch tells its service manager (systemd's `sd_notify` protocol), decided from the
/// same reports people read. Pure: it returns each datagram's text, the runtime sends it.
///
/// - `READY=1` once the first generation serves — or once the first attempt has failed (a broken
///   tree must not make systemd restart-loop the supervisor), with `STATUS=` saying so;
/// - `STATUS=` on every change, readable in `systemctl --user status`;
/// - `EXTEND_TIMEOUT_USEC=` while the first build and the first candidate run, so a slow first
///   build does not hit `TimeoutStartSec=`;
/// - `RELOADING=1` + `MONOTONIC_USEC=` on reload, then `READY=1`; `STOPPING=1` on stop.
public struct ServiceStatus: Sendable {
    /// The longest the first build may take (`build.timeout`).
    public var buildTimeout: Duration
    /// The longest a candidate may take to become healthy (`health.startup_timeout`).
    public var startupTimeout: Duration

    public private(set) var isReady = false
    private var serving: Generation?
    private var building: BuildID?
    private var starting: Generation?
    /// The last thing that went wrong, until something serves again.
    private var problem: String?
    private var reloading = false
    private var stopping = false

    /// STATUS= is one line; systemd shows it whole, so keep it short enough to read.
    static let maximumStatusLength = 200

    public init(buildTimeout: Duration, startupTimeout: Duration) {
        self.buildTimeout = buildTimeout
        self.startupTimeout = startupTimeout
    }

    /// The one-line state: "serving gen 7 · build 8 failed: 2 errors (Sources/App/routes.swift:12)".
    public var statusText: String {
        if self.stopping { return "stopping" }
        var parts = [self.serving.map { "serving gen \($0)" } ?? "nothing serving yet"]
        if let building { parts.append("build \(building) running") }
        if let starting { parts.append("starting gen \(starting)") }
        if let problem { parts.append(problem) }
        var text = parts.joined(separator: " · ").map { $0.isNewline ? " " : $0 }.reduce(into: "") { $0.append($1) }
        if text.count > Self.maximumStatusLength {
            text = String(text.prefix(Self.maximumStatusLength - 1)) + "…"
        }
        return text
    }

    /// The datagram to send for `report`, or nil when nothing changed for the manager.
    public mutating func record(_ report: Report) -> String? {
        var lines: [String] = []
        // The first attempt to serve has an outcome (served, or failed): the moment for READY=1.
        var settled = false
        switch report {
        case .buildStarted(let id, _):
            self.building = id
            if !self.isReady { lines.append(self.extendTimeout(by: self.buildTimeout + self.startupTimeout)) }
        case .buildSucceeded:
            self.building = nil
        case .buildCancelled:
            self.building = nil
        case .buildFailed(let id, _, let failure, _):
            self.building = nil
            self.problem = "build \(id) failed: \(failure.summary)\(Self.firstLocation(failure))"
            settled = true
        case .stagingFailed(let id, let reason, _):
            self.problem = "build \(id) could not be staged: \(reason)"
            settled = true
        case .candidateLaunched(let generation, _):
            self.starting = generation
            if !self.isReady { lines.append(self.extendTimeout(by: self.startupTimeout)) }
        case .migrationsBlocked(let generation, let reason, _):
            self.problem = "gen \(generation) not started: migrations \(reason)"
            settled = true
        case .swapped(_, let generation, _):
            self.serving = generation
            self.starting = nil
            self.problem = nil
            settled = true
        case .candidateDiscarded(let generation, let reason, _):
            if self.starting == generation { self.starting = nil }
            self.problem = "gen \(generation) discarded: \(reason)"
            settled = true
        case .serverCrashed(let generation, let status):
            if self.serving == generation { self.serving = nil }
            if self.starting == generation { self.starting = nil }
            self.problem = "gen \(generation) exited unexpectedly (\(status))"
        case .restartScheduled(let generation, let delay):
            self.problem = (self.problem.map { $0 + "; " } ?? "") + "restarting gen \(generation) in \(delay.humanReadable)"
        case .rollingBack(let from, let to, let cause):
            self.problem = "rolling back from gen \(from) to gen \(to) (\(cause.explanation(from: from)))"
        case .serverStopped:
            return nil
        case .configReloaded:
            if self.reloading {
                self.reloading = false
                lines.append("READY=1")
            }
        case .configRejected(let message, _):
            self.problem = "configuration not reloaded: \(message)"
            if self.reloading {
                self.reloading = false
                lines.append("READY=1")
            }
        case .stateDirectoryLost:
            self.problem = ".safe-watch was deleted; building again"
        case .stopping:
            self.stopping = true
            lines.append("STOPPING=1")
        case .stopped:
            return nil
        }
        if settled && !self.isReady {
            self.isReady = true
            lines.append("READY=1")
        }
        lines.append("STATUS=\(self.statusText)")
        return lines.joined(separator: "\n")
    }

    /// A reload begins (SIGHUP, or the configuration file changed). systemd 253+ wants the
    /// CLOCK_MONOTONIC time with RELOADING=1; older ones ignore it.
    public mutating func reloadStarted(monotonicMicroseconds: UInt64) -> String {
        self.reloading = true
        return "RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds)\nSTATUS=reloading the configuration · \(self.statusText)"
    }

    private func extendTimeout(by duration: Duration) -> String {
        // A margin for staging and launching on a busy machine.
        let total = duration + .seconds(10)
        let (seconds, attoseconds) = total.components
        return "EXTEND_TIMEOUT_USEC=\(seconds * 1_000_000 + attoseconds / 1_000_000_000_000)"
    }

    private static func firstLocation(_ failure: BuildFailure) -> String {
        guard let first = failure.diagnostics.first(where: { $0.severity == .error }) ?? failure.diagnostics.first else { return "" }
        return " (\(first.file):\(first.line))"
    }
}

/// `WATCHDOG_USEC` / `WATCHDOG_PID`: how often to send WATCHDOG=1 (half the manager's timeout).
public struct WatchdogSetting: Equatable, Sendable {
    /// The keep-alive period, nil when no watchdog is asked for (or it is for another process).
    public var period: Duration?
    /// Said once at start when the variables are present but unusable.
    public var warning: String?

    public init(usec: String?, pid: String?, ownPID: Int32) {
        guard let usec else { return }
        if let pid, Int32(pid) != ownPID {
            self.warning = "WATCHDOG_PID=\(pid) names another process (safe-watch is \(ownPID)); not sending WATCHDOG=1"
            return
        }
        guard let microseconds = UInt64(usec), microseconds > 0 else {
            self.warning = "WATCHDOG_USEC=\"\(usec)\" is not a positive number of microseconds; not sending WATCHDOG=1 — "
                + "if the unit sets WatchdogSec=, systemd will restart safe-watch when it runs out"
            return
        }
        self.period = .microseconds(Int64(clamping: microseconds / 2))
    }
}
