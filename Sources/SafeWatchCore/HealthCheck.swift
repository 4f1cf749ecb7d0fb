/// How a candidate proves it is healthy (the `[health]` table).
public struct HealthCheck: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// GET `path` on the candidate's private port; 200–399 is healthy.
        case http(path: String)
        /// A TCP connection to the candidate's private port is accepted.
        case tcp
        /// `command` (run with /bin/sh -c, `PORT` set) exits 0.
        case exec(command: String)
        /// The candidate sends READY=1 to the NOTIFY_SOCKET safe-watch gives it.
        case notify
        /// Healthy as soon as it has started.
        case none
    }

    public var kind: Kind
    /// Whether `kind` is left to the serve mode: no `[health] type` (or `path`) was written and no
    /// framework chose one, so `Configuration.settleModeDefaults` makes it the mode's default.
    /// Not part of equality: two checks that probe alike are the same check.
    public var kindFollowsMode: Bool

    /// Whether the check talks to the server's port (http, tcp).
    public var needsPort: Bool {
        switch self.kind {
        case .http, .tcp: true
        case .exec, .notify, .none: false
        }
    }
    /// Time between probes.
    public var interval: Duration
    /// Longest a single probe may take.
    public var timeout: Duration
    /// Consecutive successes needed to be healthy.
    public var successThreshold: Int
    /// Consecutive failed probes (answers that are wrong, not refusals) that make it unhealthy.
    public var failureThreshold: Int
    /// Longest a candidate may take to become healthy.
    public var startupTimeout: Duration

    /// With no `kind`, the check follows the serve mode (an HTTP GET of /health until it is settled).
    public init(
        kind: Kind? = nil,
        interval: Duration = .milliseconds(100),
        timeout: Duration = .seconds(2),
        successThreshold: Int = 1,
        failureThreshold: Int = 3,
        startupTimeout: Duration = .seconds(30)
    ) {
        self.kind = kind ?? .http(path: "/health")
        self.kindFollowsMode = kind == nil
        self.interval = interval
        self.timeout = timeout
        self.successThreshold = successThreshold
        self.failureThreshold = failureThreshold
        self.startupTimeout = startupTimeout
    }

    public static func == (lhs: HealthCheck, rhs: HealthCheck) -> Bool {
        lhs.kind == rhs.kind && lhs.interval == rhs.interval && lhs.timeout == rhs.timeout
            && lhs.successThreshold == rhs.successThreshold && lhs.failureThreshold == rhs.failureThreshold
            && lhs.startupTimeout == rhs.startupTimeout
    }
}

/// What one probe found.
public enum ProbeResult: Equatable, Sendable {
    case success
    /// Nothing listens yet (connection refused): expected while the server starts.
    case notReady(String)
    /// The server answered wrongly (HTTP 404, a failing exec check, a timeout).
    case failure(String)
}

/// Turns a candidate's probe results into a verdict.
public struct HealthTracker: Sendable {
    public enum Verdict: Equatable, Sendable {
        case pending
        case healthy
        case unhealthy(String)
    }

    public let check: HealthCheck
    private let startedAt: Moment
    private var successes = 0
    private var failures = 0
    private var lastProblem: String?

    public init(check: HealthCheck, startedAt: Moment) {
        self.check = check
        self.startedAt = startedAt
    }

    public mutating func record(_ result: ProbeResult, at now: Moment) -> Verdict {
        switch result {
        case .success:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.check.successThreshold { return .healthy }
            return .pending
        case .notReady(let problem):
            // Refused again: the server is (re)starting, which breaks a run of wrong answers.
            self.successes = 0
            self.failures = 0
            self.lastProblem = problem
        case .failure(let problem):
            self.successes = 0
            self.failures += 1
            self.lastProblem = problem
            if self.failures >= self.check.failureThreshold {
                return .unhealthy("health check failed \(self.failures) times in a row: \(problem)")
            }
        }
        return self.deadlineVerdict(at: now)
    }

    /// Unhealthy once the startup timeout has passed without a verdict.
    public func deadlineVerdict(at now: Moment) -> Verdict {
        guard now - self.startedAt >= self.check.startupTimeout else { return .pending }
        let last = self.lastProblem.map { " (last: \($0))" } ?? ""
        return .unhealthy("not healthy within startup_timeout \(self.check.startupTimeout.humanReadable)\(last)")
    }
}
