import Logging
import SafeWatchCore

/// Tells people about each transition: one log line (with metadata for structured sinks) per report,
/// and the servers' output prefixed with their generation.
public struct Reporter: Sendable {
    public var logger: Logger
    /// Shown when the first generation starts serving.
    public var publicAddress: String?
    /// How many diagnostics of a failed build to print.
    public var diagnosticsShown = 5

    public init(logger: Logger, publicAddress: String?) {
        self.logger = logger
        self.publicAddress = publicAddress
    }

    public func report(_ report: Report) {
        let (level, message, event) = self.describe(report)
        var metadata: Logger.Metadata = ["event": .string(event)]
        switch report {
        case .buildStarted(let id, _), .buildSucceeded(let id, _), .buildFailed(let id, _, _, _), .buildCancelled(let id, _),
            .stagingFailed(let id, _, _):
            metadata["build"] = .stringConvertible(id)
        case .candidateLaunched(let generation, _), .swapped(_, let generation, _), .candidateDiscarded(let generation, _, _),
            .migrationsBlocked(let generation, _, _),
            .serverCrashed(let generation, _), .restartScheduled(let generation, _), .rollingBack(let generation, _, _),
            .serverStopped(let generation, _):
            metadata["generation"] = .stringConvertible(generation)
        case .configReloaded, .configRejected, .stateDirectoryLost, .stopping, .stopped:
            break
        }
        if case .buildFailed(_, _, let failure, _) = report {
            // All of them, structured, for the browser's overlay and `safe-watch events`.
            metadata["diagnostics"] = Self.diagnosticsMetadata(failure.diagnostics)
        }
        self.logger.log(level: level, "\(message)", metadata: metadata)
        if case .buildFailed(_, _, let failure, _) = report {
            for diagnostic in failure.diagnostics.prefix(self.diagnosticsShown) {
                self.logger.log(level: level, "    \(diagnostic)", metadata: ["event": "diagnostic"])
            }
            if failure.diagnostics.count > self.diagnosticsShown {
                self.logger.log(level: level, "    … \(failure.diagnostics.count - self.diagnosticsShown) more", metadata: ["event": "diagnostic"])
            }
        }
    }

    /// One line of a server's output.
    public func serverOutput(_ generation: Generation, _ line: String) {
        self.logger.info("[gen \(generation)] \(line)", metadata: ["event": "output", "generation": .stringConvertible(generation)])
    }

    /// A file under `[browser] assets` changed: the browser restyles or reloads, nothing builds.
    public func assetChanged(_ path: String, kind: AssetKind) {
        let what = kind == .css ? "restyling the browser's pages" : "reloading the browser's pages"
        self.logger.info("↻ \(path) changed: \(what), no build", metadata: ["event": "asset_changed", "path": .string(path)])
    }

    /// A message with its own event name (for `safe-watch events` and the browser).
    public func log(_ level: Logger.Level, _ message: String, event: String) {
        self.logger.log(level: level, "\(message)", metadata: ["event": .string(event)])
    }

    static func diagnosticsMetadata(_ diagnostics: [Diagnostic]) -> Logger.Metadata.Value {
        .array(
            diagnostics.map { diagnostic in
                var fields: Logger.Metadata = [
                    "file": .string(diagnostic.file), "line": .stringConvertible(diagnostic.line),
                    "severity": .string(diagnostic.severity.rawValue), "message": .string(diagnostic.message),
                ]
                if let column = diagnostic.column { fields["column"] = .stringConvertible(column) }
                return .dictionary(fields)
            })
    }

    public func info(_ message: String) {
        self.logger.info("\(message)")
    }

    public func warning(_ message: String) {
        self.logger.warning("\(message)")
    }

    private func describe(_ report: Report) -> (Logger.Level, String, String) {
        func serving(_ generation: Generation?) -> String {
            generation.map { "; still serving gen \($0)" } ?? "; nothing is serving yet"
        }
        switch report {
        case .buildStarted(let id, let reason):
            let why = reason == .initial ? "" : " (\(reason.summary))"
            return (.info, "▸ build \(id) started\(why)", "build_started")
        case .buildSucceeded(let id, let took):
            return (.info, "✓ build \(id) succeeded in \(took.humanReadable)", "build_succeeded")
        case .buildFailed(let id, let took, let failure, let still):
            return (.error, "✗ build \(id) failed in \(took.humanReadable) — \(failure.summary)\(serving(still))", "build_failed")
        case .buildCancelled(let id, let cause):
            let why: String
            switch cause {
            case .stopping: why = "safe-watch is stopping"
            case .superseded(let reason): why = "\(reason.summary); building again"
            }
            return (.info, "· build \(id) cancelled: \(why)", "build_cancelled")
        case .stagingFailed(let id, let reason, let still):
            return (.error, "✗ build \(id) could not be staged: \(reason)\(serving(still))", "staging_failed")
        case .candidateLaunched(let generation, let purpose):
            let why: String
            switch purpose {
            case .newBuild: why = ""
            case .restart: why = " (restart)"
            case .rollback: why = " (rollback)"
            }
            return (.info, "▸ gen \(generation) starting\(why)", "candidate_launched")
        case .swapped(let from, let to, let after):
            if let from {
                return (.notice, "✓ gen \(to) healthy in \(after.humanReadable), swapped (gen \(from) draining)", "swapped")
            }
            let address = self.publicAddress.map { ", serving on \($0)" } ?? ""
            return (.notice, "✓ gen \(to) healthy in \(after.humanReadable)\(address)", "swapped")
        case .migrationsBlocked(let generation, let reason, let still):
            return (.error, "✗ gen \(generation) not started: migrations \(reason)\(serving(still))", "migrations_blocked")
        case .candidateDiscarded(let generation, let reason, let still):
            return (.error, "✗ gen \(generation) discarded: \(reason)\(serving(still))", "candidate_discarded")
        case .serverCrashed(let generation, let status):
            return (.error, "✗ gen \(generation) exited unexpectedly (\(status))", "server_crashed")
        case .restartScheduled(let generation, let delay):
            return (.warning, "▸ restarting gen \(generation) in \(delay.humanReadable)", "restart_scheduled")
        case .rollingBack(let from, let to, let cause):
            return (.warning, "↺ rolling back from gen \(from) to gen \(to) (\(cause.explanation(from: from)))", "rolling_back")
        case .serverStopped(let generation, let status):
            return (.info, "· gen \(generation) stopped (\(status))", "server_stopped")
        case .configReloaded:
            return (.notice, "✓ configuration reloaded", "config_reloaded")
        case .configRejected(let message, let keeping):
            return (.error, "✗ configuration not reloaded: \(message); \(keeping)", "config_rejected")
        case .stateDirectoryLost(let still):
            return (
                .warning,
                "! .safe-watch was deleted while safe-watch ran (git clean -fdx?): the staged generations are gone; "
                    + "recreated it, building again\(serving(still))", "state_directory_lost"
            )
        case .stopping:
            return (.info, "▸ stopping", "stopping")
        case .stopped:
            return (.info, "✓ stopped", "stopped")
        }
    }
}
