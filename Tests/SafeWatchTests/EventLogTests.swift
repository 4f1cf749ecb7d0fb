import Foundation
import Logging
import SafeWatchCore
import Synchronization
import Testing

@testable import SafeWatch

/// The event log behind `safe-watch events` and `--log-format json`.
@Suite struct EventLogTests {
    func decode(_ line: String) throws -> EventRecord {
        try JSONDecoder.controlLine.decode(EventRecord.self, from: Data(line.utf8))
    }

    @Test func keepsTheLastEventsAndReplaysThemBeforeTheNewOnes() throws {
        let log = EventLog(capacity: 3)
        for number in 1...5 { log.append(level: .info, event: "log", message: "m\(number)", generation: nil, build: nil) }
        let received = Mutex<[String]>([])
        let (backlog, id) = log.subscribe(since: 10) { line in received.withLock { $0.append(line) } }
        #expect(try backlog.map { try decode($0).message } == ["m3", "m4", "m5"])
        log.append(level: .notice, event: "swapped", message: "m6", generation: 2, build: nil)
        log.unsubscribe(id)
        log.append(level: .info, event: "log", message: "m7", generation: nil, build: nil)
        let live = try received.withLock { $0 }.map(decode)
        #expect(live.map(\.message) == ["m6"])
        #expect(live.first?.seq == 6 && live.first?.generation == 2 && live.first?.level == "notice")
        #expect(log.subscribe(since: 0) { _ in }.backlog.isEmpty)
    }

    @Test func subscribersSeeEventsInTheOrderOfTheirNumbersWhateverThreadLogs() async throws {
        let log = EventLog()
        let received = Mutex<[Int]>([])
        _ = log.subscribe(since: 0) { line in
            let seq = (try? JSONDecoder.controlLine.decode(EventRecord.self, from: Data(line.utf8)))?.seq ?? -1
            received.withLock { $0.append(seq) }
        }
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for number in 0..<200 { log.append(level: .info, event: "output", message: "\(writer)-\(number)", generation: writer, build: nil) }
                }
            }
        }
        #expect(received.withLock { $0 } == Array(1...1600))
    }

    @Test func aHugeMessageIsCut() throws {
        let log = EventLog()
        log.append(level: .info, event: "output", message: String(repeating: "x", count: 100_000), generation: 1, build: nil)
        let message = try decode(log.subscribe(since: 1) { _ in }.backlog[0]).message
        #expect(message.utf8.count <= EventLog.maximumMessageLength + 3 && message.hasSuffix("…"))
    }

    @Test func theLoggerFillsEventBuildAndGenerationFromMetadata() throws {
        let log = EventLog()
        let logger = Logger(label: "test") { _ in EventLogHandler(log: log) }
        logger.error("✗ build 4 failed", metadata: ["event": "build_failed", "build": "4"])
        logger.info("plain")
        let records = try log.subscribe(since: 2) { _ in }.backlog.map(decode)
        #expect(records.map(\.event) == ["build_failed", "log"])
        #expect(records[0].build == 4 && records[0].level == "error" && records[0].generation == nil)
    }

    @Test func aFailedBuildCarriesAllItsDiagnosticsAndAnAssetItsPath() throws {
        let log = EventLog()
        let reporter = Reporter(logger: Logger(label: "test") { _ in EventLogHandler(log: log) }, publicAddress: nil)
        let diagnostics = [
            Diagnostic(file: "Sources/App/a.swift", line: 3, column: 7, severity: .error, message: "no \"x\""),
            Diagnostic(file: "Sources/App/b.swift", line: 9, severity: .error, message: "link"),
        ]
        reporter.report(.buildFailed(2, took: .seconds(1), BuildFailure(summary: "2 errors", diagnostics: diagnostics, errorCount: 2), stillServing: 1))
        reporter.assetChanged("Public/site.css", kind: .css)
        let records = try log.subscribe(since: 10) { _ in }.backlog.map(decode)
        let failed = try #require(records.first { $0.event == "build_failed" })
        #expect(failed.diagnostics?.map(\.file) == ["Sources/App/a.swift", "Sources/App/b.swift"])
        #expect(failed.diagnostics?[0].column == 7 && failed.diagnostics?[0].message == "no \"x\"" && failed.diagnostics?[1].column == nil)
        #expect(records.last?.event == "asset_changed" && records.last?.path == "Public/site.css")
        // Other events keep their lines as they were: no empty keys.
        #expect(log.subscribe(since: 1) { _ in }.backlog[0].contains("diagnostics") == false)
    }
}
