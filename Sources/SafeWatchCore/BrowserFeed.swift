import Foundation

/// One Server-Sent Event of `/_safe-watch/events`. Names and data (one JSON object each):
/// - `hello` `{"run","generation","state"}`: first on every connection; `run` changes when
///   safe-watch restarts, `generation` is the one serving (null: none yet).
/// - `reload` `{"generation"}`: a swap to that generation; a page served by another one reloads.
/// - `build-started` `{"build","message"}`; `build-failed` `{"build","summary","message","diagnostics":
///   [{"file","line","column","severity","message","source","caret"}]}`: the overlay.
/// - `migrations-blocked` `{"generation","message","verdict","findings":[{"text","fix"}]}`: the overlay.
/// - `css` `{"path","url_path"}`: restyle in place; `page` `{"path"}`: reload.
/// - `progress` `{"event","message"}`: other steps (build succeeded, gen starting, discarded…).
/// `id` is the event log's `seq`.
public struct BrowserEvent: Equatable, Sendable {
    public var name: String
    public var id: Int?
    /// One line of JSON.
    public var data: String

    public init(name: String, id: Int?, data: String) {
        self.name = name
        self.id = id
        self.data = data
    }

    /// The event as the stream sends it.
    public var serverSentEvent: String {
        (self.id.map { "id: \($0)\n" } ?? "") + "event: \(self.name)\ndata: \(self.data)\n\n"
    }
}

/// Folds the event log (`safe-watch events`) into what the browser needs: the events to send,
/// the overlay a newly connected page must show, and the history the status page lists. Pure:
/// source lines come through `sourceLine`.
public struct BrowserFeed: Sendable {
    public struct DiagnosticLine: Codable, Equatable, Sendable {
        public var file: String
        public var line: Int
        public var column: Int?
        public var severity: String
        public var message: String
        /// The source line as it is in the file now, if it could be read.
        public var source: String?
        /// Spaces (tabs kept) up to the column, then `^`.
        public var caret: String?
    }

    public struct BuildFailed: Codable, Equatable, Sendable {
        public var build: BuildID?
        public var summary: String
        public var message: String
        public var diagnostics: [DiagnosticLine]
    }

    public struct Finding: Codable, Equatable, Sendable {
        public var text: String
        public var fix: String?
    }

    public struct MigrationsBlocked: Codable, Equatable, Sendable {
        public var generation: Generation?
        public var message: String
        public var verdict: String?
        public var findings: [Finding]
    }

    /// What covers the page until the next good swap.
    public enum Overlay: Equatable, Sendable {
        case buildFailed(BuildFailed, seq: Int)
        case migrationsBlocked(MigrationsBlocked, seq: Int)
    }

    public struct BuildRow: Equatable, Sendable {
        public var id: BuildID
        public var startedAt: Date?
        public var finishedAt: Date?
        /// running, succeeded, failed, cancelled, staging failed.
        public var result: String
        public var message: String
        public var seconds: Double? {
            guard let startedAt, let finishedAt else { return nil }
            return finishedAt.timeIntervalSince(startedAt)
        }
    }

    public struct SwapRow: Equatable, Sendable {
        public var generation: Generation
        public var at: Date
        /// "✓ gen 3 healthy in 180 ms, swapped (gen 2 draining)".
        public var message: String
    }

    /// Rows kept for the status page.
    public static let historyKept = 10

    public private(set) var generation: Generation?
    public private(set) var overlay: Overlay?
    public private(set) var builds: [BuildRow] = []
    public private(set) var swaps: [SwapRow] = []
    /// The last step, for the nothing-serving page: "▸ build 1 started".
    public private(set) var progress: String?
    public private(set) var lastSeq = 0
    private var verdict: String?
    private var findings: [Finding] = []
    private let assetDirectories: [String]

    public init(assetDirectories: [String]) {
        self.assetDirectories = assetDirectories
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }()

    static func json(_ value: some Encodable) -> String {
        (try? Self.encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// Takes the next event of the log; returns what the browser hears of it, if anything.
    public mutating func take(_ record: EventRecord, sourceLine: (String, Int) -> String?) -> BrowserEvent? {
        self.lastSeq = max(self.lastSeq, record.seq)
        let message = record.message.trimmingWhitespace()
        switch record.event {
        case "swapped":
            guard let generation = record.generation else { return nil }
            self.generation = generation
            self.overlay = nil
            self.progress = message
            self.swaps.append(SwapRow(generation: generation, at: record.time, message: message))
            if self.swaps.count > Self.historyKept { self.swaps.removeFirst() }
            struct Data: Encodable { var generation: Generation }
            return BrowserEvent(name: "reload", id: record.seq, data: Self.json(Data(generation: generation)))
        case "build_started":
            self.progress = message
            if let build = record.build {
                self.builds.append(BuildRow(id: build, startedAt: record.time, result: "running", message: message))
                if self.builds.count > Self.historyKept { self.builds.removeFirst() }
            }
            struct Data: Encodable { var build: BuildID?, message: String }
            return BrowserEvent(name: "build-started", id: record.seq, data: Self.json(Data(build: record.build, message: message)))
        case "build_failed":
            self.finish(record, result: "failed", message: message)
            self.progress = message
            let failure = BuildFailed(
                build: record.build, summary: Self.summary(of: message), message: message,
                diagnostics: (record.diagnostics ?? []).map { Self.line($0, sourceLine: sourceLine) })
            self.overlay = .buildFailed(failure, seq: record.seq)
            return BrowserEvent(name: "build-failed", id: record.seq, data: Self.json(failure))
        case "build_succeeded", "build_cancelled", "staging_failed":
            let result = ["build_succeeded": "succeeded", "build_cancelled": "cancelled", "staging_failed": "staging failed"][record.event]!
            self.finish(record, result: result, message: message)
            return self.progressEvent(record, message)
        case "migrations_verdict":
            self.verdict = message
            self.findings = []
            return nil
        case "migrations_finding":
            guard record.level == "warning" else { return nil }
            let parts = record.message.components(separatedBy: "\n    fix: ")
            self.findings.append(Finding(text: parts[0].trimmingWhitespace(), fix: parts.count > 1 ? parts[1].trimmingWhitespace() : nil))
            return nil
        case "migrations_blocked":
            self.progress = message
            let blocked = MigrationsBlocked(generation: record.generation, message: message, verdict: self.verdict, findings: self.findings)
            self.overlay = .migrationsBlocked(blocked, seq: record.seq)
            return BrowserEvent(name: "migrations-blocked", id: record.seq, data: Self.json(blocked))
        case "asset_changed":
            guard let path = record.path else { return nil }
            struct Data: Encodable { var path: String, urlPath: String }
            let name = path.lowercased().hasSuffix(".css") ? "css" : "page"
            return BrowserEvent(name: name, id: record.seq, data: Self.json(Data(path: path, urlPath: self.urlPath(of: path))))
        case "candidate_launched", "candidate_discarded", "server_crashed", "rolling_back", "restart_scheduled", "server_stopped",
            "config_rejected", "stopping":
            return self.progressEvent(record, message)
        default:
            return nil
        }
    }

    /// As `safe-watch status` says it, from what the browser knows: serving, or, before anything
    /// serves, starting or failing.
    public var state: String {
        if self.generation != nil { return "serving" }
        return self.overlay == nil ? "starting" : "failing"
    }

    /// What a page that just connected hears first: `hello`, then the overlay if one is up.
    public func greeting(run: String) -> [BrowserEvent] {
        let state = self.state
        struct Hello: Encodable {
            var run: String
            var generation: Generation?
            var state: String
            // Encoded explicitly so that `generation` is `null`, not left out, before the first swap.
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(self.run, forKey: .run)
                try container.encode(self.generation, forKey: .generation)
                try container.encode(self.state, forKey: .state)
            }
            enum CodingKeys: String, CodingKey { case run, generation, state }
        }
        var events = [BrowserEvent(name: "hello", id: nil, data: Self.json(Hello(run: run, generation: self.generation, state: state)))]
        switch self.overlay {
        case .buildFailed(let failure, let seq): events.append(BrowserEvent(name: "build-failed", id: seq, data: Self.json(failure)))
        case .migrationsBlocked(let blocked, let seq):
            events.append(BrowserEvent(name: "migrations-blocked", id: seq, data: Self.json(blocked)))
        case nil: break
        }
        return events
    }

    /// The path a browser fetches an asset by: its path below the asset directory
    /// (`Public/css/site.css` → `/css/site.css`; Vapor's FileMiddleware serves `Public` at the root).
    func urlPath(of path: String) -> String {
        for directory in self.assetDirectories where path.hasPrefix(directory + "/") {
            return "/" + path.dropFirst(directory.count + 1)
        }
        return "/" + path
    }

    private func progressEvent(_ record: EventRecord, _ message: String) -> BrowserEvent {
        struct Data: Encodable { var event: String, message: String }
        return BrowserEvent(name: "progress", id: record.seq, data: Self.json(Data(event: record.event, message: message)))
    }

    private mutating func finish(_ record: EventRecord, result: String, message: String) {
        guard let build = record.build else { return }
        if let index = self.builds.lastIndex(where: { $0.id == build }) {
            self.builds[index].finishedAt = record.time
            self.builds[index].result = result
            self.builds[index].message = message
        } else {
            self.builds.append(BuildRow(id: build, finishedAt: record.time, result: result, message: message))
            if self.builds.count > Self.historyKept { self.builds.removeFirst() }
        }
    }

    /// "✗ build 3 failed in 1.2 s — 2 errors; still serving gen 2" → "2 errors".
    static func summary(of message: String) -> String {
        guard let dash = message.range(of: " — ") else { return message }
        let rest = message[dash.upperBound...]
        return String(rest.range(of: "; ").map { rest[..<$0.lowerBound] } ?? rest)
    }

    static func line(_ diagnostic: StatusSnapshot.Diagnostic, sourceLine: (String, Int) -> String?) -> DiagnosticLine {
        let source = sourceLine(diagnostic.file, diagnostic.line)
        var caret: String?
        if let source, let column = diagnostic.column, column >= 1 {
            // Tabs stay tabs so that the caret lines up however wide the browser draws them.
            let lead = source.prefix(column - 1).map { $0 == "\t" ? "\t" : " " }.joined()
            caret = lead + "^"
        }
        return DiagnosticLine(
            file: diagnostic.file, line: diagnostic.line, column: diagnostic.column, severity: diagnostic.severity,
            message: diagnostic.message, source: source, caret: caret)
    }
}
