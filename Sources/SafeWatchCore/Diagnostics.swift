import enum SafeWatchProcesses.ExitStatus

/// One compiler message worth showing: `file:line: message`.
public struct Diagnostic: Equatable, Sendable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public var file: String
    public var line: Int
    public var column: Int?
    public var severity: Severity
    public var message: String

    public init(file: String, line: Int, column: Int? = nil, severity: Severity, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.severity = severity
        self.message = message
    }

    public var description: String { "\(self.file):\(self.line): \(self.message)" }
}

/// Reads build output (swift build, clang, go build, cargo) into diagnostics.
///
/// `swift build` prints its diagnostics on stdout as `/abs/path:LINE:COL: error: message`
/// followed by a source excerpt; link errors have no column; the same diagnostic can be printed
/// twice (once per compile job), so duplicates are dropped.
public struct DiagnosticsParser: Sendable {
    /// Paths are shown relative to this directory when they are inside it.
    public var root: String

    public init(root: String) {
        self.root = root.hasSuffix("/") ? root : root + "/"
    }

    public func errors(in output: String) -> (diagnostics: [Diagnostic], errorCount: Int, otherErrors: [String]) {
        var seen = Set<String>()
        var diagnostics: [Diagnostic] = []
        var otherErrors: [String] = []
        var pendingRustError: String?
        for rawLine in output.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = String(rawLine).trimmingWhitespace()
            if let diagnostic = self.located(line) {
                pendingRustError = nil
                guard diagnostic.severity == .error, seen.insert(diagnostic.description).inserted else { continue }
                diagnostics.append(diagnostic)
            } else if line.hasPrefix("error"), let colon = line.firstIndex(of: ":") {
                // `error: link command failed…` (swift), `error[E0425]: cannot find…` (rust: its
                // location follows on a `-->` line).
                let message = line[line.index(after: colon)...].trimmingWhitespace()
                if line.hasPrefix("error[") {
                    pendingRustError = message
                } else if !message.hasPrefix("fatalError"), seen.insert(message).inserted {
                    otherErrors.append(message)
                }
            } else if line.hasPrefix("--> "), let message = pendingRustError,
                let location = self.location(String(line.dropFirst(4)))
            {
                pendingRustError = nil
                let diagnostic = Diagnostic(
                    file: location.file, line: location.line, column: location.column, severity: .error,
                    message: message)
                if seen.insert(diagnostic.description).inserted { diagnostics.append(diagnostic) }
            }
        }
        return (diagnostics, diagnostics.count, otherErrors)
    }

    /// `path:line:col: error: message`, `path:line: error: message`, or go's `path:line:col: message`.
    private func located(_ line: String) -> Diagnostic? {
        let parts = line.split(separator: ":", maxSplits: 4, omittingEmptySubsequences: false).map(String.init)
        // A space rules out excerpt lines (`12 | …`), except in a path inside the root (`/home/me/My App/…`).
        guard parts.count >= 3, !parts[0].isEmpty, !parts[0].contains(" ") || parts[0].hasPrefix(self.root),
            let lineNumber = Int(parts[1])
        else {
            return nil
        }
        var rest: ArraySlice<String>
        var column: Int?
        if let col = Int(parts[2].trimmingWhitespace()) {
            column = col
            rest = parts.dropFirst(3)
        } else {
            rest = parts.dropFirst(2)
        }
        guard let first = rest.first?.trimmingWhitespace() else { return nil }
        let severity: Diagnostic.Severity
        var message: String
        switch first {
        case "error", "fatal error":
            severity = .error
            message = rest.dropFirst().joined(separator: ":").trimmingWhitespace()
        case "warning", "note", "remark":
            severity = .warning
            message = rest.dropFirst().joined(separator: ":").trimmingWhitespace()
        default:
            // go: `./main.go:12:3: undefined: x` has no severity word and every line is an error.
            guard column != nil, parts[0].hasSuffix(".go") else { return nil }
            severity = .error
            message = rest.joined(separator: ":").trimmingWhitespace()
        }
        guard !message.isEmpty else { return nil }
        return Diagnostic(file: self.relative(parts[0]), line: lineNumber, column: column, severity: severity, message: message)
    }

    private func location(_ text: String) -> (file: String, line: Int, column: Int?)? {
        let parts = text.trimmingWhitespace().split(separator: ":").map(String.init)
        guard parts.count >= 2, let line = Int(parts[1]) else { return nil }
        return (self.relative(parts[0]), line, parts.count > 2 ? Int(parts[2]) : nil)
    }

    private func relative(_ path: String) -> String {
        var path = path
        if path.hasPrefix(self.root) { path.removeFirst(self.root.count) }
        if path.hasPrefix("./") { path.removeFirst(2) }
        return path
    }
}

extension BuildFailure {
    /// Summarises a failed build's output and exit status for people.
    public static func from(output: String, status: ExitStatus, parser: DiagnosticsParser) -> BuildFailure {
        let parsed = parser.errors(in: output)
        let summary: String
        switch (status, parsed.errorCount) {
        case (.exited(127), _):
            summary = "build command not found (exit status 127)"
        case (_, 0) where !parsed.otherErrors.isEmpty:
            summary = parsed.otherErrors.first ?? "failed"
        case (_, 0):
            let lastLine = output.split(separator: "\n").last.map { String($0).trimmingWhitespace() } ?? ""
            summary = lastLine.isEmpty ? "\(status)" : "\(status): \(lastLine)"
        case (_, 1):
            summary = "1 error"
        case (_, let count):
            summary = "\(count) errors"
        }
        return BuildFailure(summary: summary, diagnostics: parsed.diagnostics, errorCount: max(parsed.errorCount, 1))
    }
}
