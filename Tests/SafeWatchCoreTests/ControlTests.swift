import Foundation
import SafeWatchCore
import Testing

/// The control socket's pure parts: the request line, the status board, rollback on request, the
/// JSON shapes and where the socket lives.
@Suite struct ControlRequestTests {
    @Test func requestsAsJSONAndAsWords() throws {
        #expect(try ControlRequest(parsing: #"{"command":"status"}"#) == .status)
        #expect(try ControlRequest(parsing: #" {"command": "events", "since": 20} "#) == .events(since: 20))
        #expect(try ControlRequest(parsing: "rebuild") == .rebuild)
        #expect(try ControlRequest(parsing: "rollback\r") == .rollback)
        #expect(try ControlRequest(parsing: "stop") == .stop)
        #expect(try ControlRequest(parsing: "events") == .events(since: nil))
        #expect(try ControlRequest(parsing: "events 5") == .events(since: 5))
        // Every request's own line parses back to it.
        for request in [ControlRequest.status, .rebuild, .rollback, .stop, .events(since: nil), .events(since: 3)] {
            #expect(try ControlRequest(parsing: request.line) == request)
        }
    }

    @Test func garbageGetsAnAnswerThatSaysWhatToSend() {
        #expect(throws: ControlProtocolError("unknown command \"garbage\": use status, rebuild, rollback, stop or events")) {
            try ControlRequest(parsing: "garbage")
        }
        #expect(throws: ControlProtocolError("empty request: send a command such as status")) { try ControlRequest(parsing: "  ") }
        #expect(throws: ControlProtocolError(#"not a request: expected a JSON object with a "command" string, e.g. {"command":"status"}"#)) {
            try ControlRequest(parsing: #"{"command": 3}"#)
        }
        #expect(throws: ControlProtocolError(#"not a request: expected a JSON object with a "command" string, e.g. {"command":"status"}"#)) {
            try ControlRequest(parsing: "{\u{0}\u{FF}")
        }
        #expect(throws: ControlProtocolError("status takes no argument")) { try ControlRequest(parsing: "status 3") }
        #expect(throws: ControlProtocolError("events: since must be 0 or more, got -1")) { try ControlRequest(parsing: "events -1") }
        #expect(throws: ControlProtocolError("\"events x\": events takes one argument, a number")) { try ControlRequest(parsing: "events x") }
        #expect(throws: ControlProtocolError("unknown command \"hello\": use status, rebuild, rollback, stop or events")) {
            try ControlRequest(parsing: "hello there")
        }
    }

    @Test func longProjectPathsGetAStableSocketInTheRuntimeDirectory() {
        #expect(ControlSocketLocation.path(forProject: "/home/me/app") == "/home/me/app/.safe-watch/control.sock")
        let deep = "/home/me/" + String(repeating: "nested/", count: 20) + "app"
        let path = ControlSocketLocation.path(forProject: deep, runtimeDirectory: "/run/user/1000")
        #expect(path.hasPrefix("/run/user/1000/safe-watch-") && path.hasSuffix(".sock") && path.utf8.count < 108)
        #expect(ControlSocketLocation.path(forProject: deep, runtimeDirectory: "/run/user/1000") == path)
        #expect(ControlSocketLocation.path(forProject: deep + "2", runtimeDirectory: "/run/user/1000") != path)
    }

    @Test func eventRecordsAndRepliesAreSnakeCaseJSONWithISOTimes() throws {
        let time = Date(timeIntervalSince1970: 1_795_000_000.25)
        let record = EventRecord(seq: 7, time: time, level: "notice", event: "swapped", message: "✓ gen 2 healthy", generation: 2, build: nil)
        let line = String(decoding: try JSONEncoder.controlLine.encode(record), as: UTF8.self)
        #expect(line == #"{"event":"swapped","generation":2,"level":"notice","message":"✓ gen 2 healthy","seq":7,"time":"2026-11-18T11:06:40.250Z"}"#)
        #expect(try JSONDecoder.controlLine.decode(EventRecord.self, from: Data(line.utf8)) == record)
        let refusal = String(decoding: try JSONEncoder.controlLine.encode(ControlReply.refused("no")), as: UTF8.self)
        #expect(refusal == #"{"error":"no","ok":false}"#)
    }
}

@Suite struct StatusBoardTests {
    let start = Date(timeIntervalSince1970: 1_795_000_000)

    func facts(_ pid: Int32? = 4242) -> StatusSnapshot.Facts {
        StatusSnapshot.Facts(
            pid: 100, project: "/p", startedAt: self.start, serve: .init(mode: "proxy", addresses: ["http://127.0.0.1:8080"]),
            watching: .init(directories: 12, polled: []), pidOf: { _ in pid })
    }

    @Test func showsConnectionsTheProxyCouldNotSetUpOnlyWhenThereAreAny() throws {
        let board = StatusBoard(gatesMigrations: false)
        let clock: (Date) -> String = { _ in "T" }
        #expect(!board.snapshot(self.facts(), at: self.start).text(now: self.start, clock: clock).contains("connections"))
        var facts = self.facts()
        facts.serve = .init(
            mode: "proxy", addresses: ["http://127.0.0.1:8080"], failedConnections: 3,
            lastFailedConnection: "setsockopt: Permission denied")
        let snapshot = board.snapshot(facts, at: self.start)
        #expect(snapshot.text(now: self.start, clock: clock).contains(
            "connections 3 could not be set up and were closed; last: setsockopt: Permission denied"))
        let json = String(decoding: try JSONEncoder.controlLine.encode(snapshot), as: UTF8.self)
        #expect(json.contains(#""failed_connections":3"#), "\(json)")
    }

    @Test func followsABuildASwapAFailureAndAStop() {
        var board = StatusBoard(gatesMigrations: true)
        #expect(board.state == "starting")
        #expect(board.migrations == "not checked yet")
        board.record(.buildStarted(1, reason: .initial), at: self.start)
        #expect(board.state == "starting")
        #expect(board.snapshot(self.facts(), at: self.start).build?.reason == "first build")
        board.record(.buildSucceeded(1, took: .seconds(2)), at: self.start + 2)
        board.record(.candidateLaunched(1, .newBuild), at: self.start + 2)
        #expect(board.state == "swapping")
        board.record(.swapped(from: nil, to: 1, healthyAfter: .milliseconds(250)), at: self.start + 3)
        var snapshot = board.snapshot(self.facts(), at: self.start + 10)
        #expect(snapshot.state == "serving")
        #expect(snapshot.active == StatusSnapshot.Server(generation: 1, pid: 4242, since: self.start + 3))
        #expect(snapshot.lastSwap == StatusSnapshot.Swap(from: nil, to: 1, at: self.start + 3, healthyAfterSeconds: 0.25))
        #expect(snapshot.lastBuild?.result == "succeeded" && snapshot.lastBuild?.seconds == 2)
        #expect(snapshot.uptimeSeconds == 10)
        #expect(snapshot.migrations == "passed (gen 1 was allowed to start)")

        board.record(.buildStarted(2, reason: .filesChanged(["Sources/App/main.swift", "b.swift"])), at: self.start + 20)
        #expect(board.state == "building")
        #expect(board.snapshot(self.facts(), at: self.start + 20).build?.reason == "Sources/App/main.swift and 1 more changed")
        let failure = BuildFailure(
            summary: "1 error", diagnostics: [Diagnostic(file: "Sources/App/main.swift", line: 3, column: 7, severity: .error, message: "cannot find 'x' in scope")],
            errorCount: 1)
        board.record(.buildFailed(2, took: .seconds(4), failure, stillServing: 1), at: self.start + 24)
        snapshot = board.snapshot(self.facts(), at: self.start + 25)
        #expect(snapshot.state == "serving")
        #expect(snapshot.build == nil)
        #expect(snapshot.problem == "build 2 failed: 1 error")
        #expect(snapshot.lastBuild?.result == "failed")
        #expect(snapshot.lastBuild?.diagnostics.first?.file == "Sources/App/main.swift")
        #expect(snapshot.lastBuild?.diagnostics.first?.line == 3)
        let text = snapshot.text(now: self.start + 25, clock: { "T+\(Int($0.timeIntervalSince(self.start)))" })
        #expect(text.contains("state       serving · gen 1 (pid 4242) since T+3"), "\(text)")
        #expect(text.contains("problem     build 2 failed: 1 error"))
        #expect(text.contains("last build  build 2 failed: 1 error in 4.0 s at T+24"), "\(text)")
        #expect(text.contains("Sources/App/main.swift:3:7: error: cannot find 'x' in scope"))
        #expect(text.contains("watching    12 directories with inotify"))

        board.record(.migrationsBlocked(3, reason: "0002_users.sql was modified after it was applied", stillServing: 1), at: self.start + 30)
        #expect(board.migrations == "blocked gen 3: 0002_users.sql was modified after it was applied")
        board.record(.serverCrashed(1, status: .exited(1)), at: self.start + 40)
        #expect(board.state == "failing")
        #expect(board.snapshot(self.facts(), at: self.start + 40).active == nil)
        board.record(.stopping, at: self.start + 50)
        #expect(board.state == "stopping")
    }

    @Test func restartModeStopsTheServingGenerationAndAReloadClearsAConfigurationProblem() {
        var board = StatusBoard(gatesMigrations: false)
        board.record(.swapped(from: nil, to: 1, healthyAfter: .zero), at: self.start)
        board.record(.configRejected("safe-watch.toml:3: watch.bogus: unknown key", keeping: "the previous configuration"), at: self.start + 1)
        #expect(board.problem == "configuration not reloaded: safe-watch.toml:3: watch.bogus: unknown key")
        board.record(.configReloaded, at: self.start + 2)
        #expect(board.problem == nil)
        // Restart mode: gen 1 stops before gen 2 starts; nothing serves meanwhile.
        board.record(.serverStopped(1, status: .exited(0)), at: self.start + 3)
        #expect(board.snapshot(self.facts(), at: self.start + 3).active == nil)
        board.record(.rollingBack(from: 2, to: 1, because: .replacementFailed), at: self.start + 4)
        #expect(board.problem == "rolling back from gen 2 to gen 1")
    }

    @Test func aProjectWithoutMigrationsSaysSo() {
        var board = StatusBoard(gatesMigrations: false)
        board.record(.swapped(from: nil, to: 1, healthyAfter: .zero), at: self.start)
        #expect(board.migrations == "no migrations directory")
    }

    @Test func statusJSONHasTheDocumentedKeys() throws {
        var board = StatusBoard(gatesMigrations: false)
        board.record(.swapped(from: nil, to: 1, healthyAfter: .zero), at: self.start)
        let data = try JSONEncoder.controlLine.encode(board.snapshot(self.facts(), at: self.start + 1))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys).isSuperset(of: ["state", "pid", "project", "started_at", "uptime_seconds", "serve", "active", "migrations", "watching"]))
        #expect((object["active"] as? [String: Any])?["pid"] as? Int == 4242)
        #expect((object["serve"] as? [String: Any])?["addresses"] as? [String] == ["http://127.0.0.1:8080"])
        #expect((object["watching"] as? [String: Any])?["directories"] as? Int == 12)
        #expect(try JSONDecoder.controlLine.decode(StatusSnapshot.self, from: data) == board.snapshot(self.facts(), at: self.start + 1))
    }
}

@Suite struct RollbackRequestTests {
    func serving(generations: Int) -> Supervisor {
        var machine = Supervisor(policy: SupervisorPolicy())
        _ = machine.started(at: .zero)
        for generation in 1...generations {
            if generation > 1 { _ = machine.filesChanged(["a.swift"], at: .seconds(Double(generation * 10))) }
            _ = machine.buildFinished(generation, .succeeded, at: .seconds(Double(generation * 10 + 1)))
            _ = machine.staged(generation, at: .seconds(Double(generation * 10 + 1)))
            _ = machine.candidateHealthy(generation, at: .seconds(Double(generation * 10 + 2)))
            if generation > 1 { _ = machine.processExited(generation - 1, .exited(0), at: .seconds(Double(generation * 10 + 3))) }
        }
        return machine
    }

    @Test func launchesThePreviousGenerationBesideTheActiveOne() {
        var machine = self.serving(generations: 2)
        let (actions, refusal) = machine.rollbackRequested(at: .seconds(60))
        #expect(refusal == nil)
        #expect(actions.contains(.launchCandidate(1, .rollback)))
        #expect(actions.contains(.report(.rollingBack(from: 2, to: 1, because: .requested))))
        #expect(!actions.contains { if case .stop = $0 { return true } else { return false } })  // gen 2 serves until gen 1 is healthy
        #expect(machine.candidateHealthy(1, at: .seconds(61)).contains(.switchTraffic(to: 1)))
        #expect(machine.servingGeneration == 1)
    }

    /// A generation that never served (discarded unhealthy, or blocked by the migrations gate)
    /// is no place to go back to: the rollback skips it for the one that served before.
    @Test func goesBackToTheLastGenerationThatServedNotOneThatNeverRan() {
        var machine = self.serving(generations: 1)
        _ = machine.filesChanged(["a.swift"], at: .seconds(20))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(21))
        _ = machine.staged(2, at: .seconds(21))
        _ = machine.candidateUnhealthy(2, reason: "GET /health answered 404", at: .seconds(22))
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        _ = machine.buildFinished(3, .succeeded, at: .seconds(31))
        _ = machine.staged(3, at: .seconds(31))
        _ = machine.candidateHealthy(3, at: .seconds(32))
        let (actions, refusal) = machine.rollbackRequested(at: .seconds(60))
        #expect(refusal == nil)
        #expect(actions.contains(.report(.rollingBack(from: 3, to: 1, because: .requested))), "\(actions)")
        #expect(actions.contains(.launchCandidate(1, .rollback)))
    }

    @Test func refusesWithTheReason() {
        var fresh = Supervisor(policy: SupervisorPolicy())
        _ = fresh.started(at: .zero)
        #expect(fresh.rollbackRequested(at: .seconds(1)).refusal == "nothing is serving, so there is nothing to roll back from")
        var one = self.serving(generations: 1)
        #expect(one.rollbackRequested(at: .seconds(30)).refusal
            == "no generation older than gen 1 that served is kept (keep_generations); there is nothing to roll back to")
        var starting = self.serving(generations: 2)
        _ = starting.rollbackRequested(at: .seconds(60))
        #expect(starting.rollbackRequested(at: .seconds(60.1)).refusal == "gen 1 is starting; roll back once it is healthy or discarded")
        var stopping = self.serving(generations: 2)
        _ = stopping.signalReceived(.terminate, at: .seconds(70))
        #expect(stopping.rollbackRequested(at: .seconds(71)).refusal == "safe-watch is stopping")
    }
}
