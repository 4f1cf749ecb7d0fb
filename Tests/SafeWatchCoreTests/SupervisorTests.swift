import SafeWatchCore
import Testing

/// The supervise loop told as stories: feed events, assert the actions after each. No I/O, no sleeps.
@Suite struct SupervisorTests {
    let term: Int32 = 15

    /// Builds, stages, launches and swaps in generation 1 as the first server.
    func serving(_ policy: SupervisorPolicy = SupervisorPolicy()) -> Supervisor {
        var machine = Supervisor(policy: policy)
        _ = machine.started(at: .zero)
        _ = machine.buildFinished(1, .succeeded, at: .seconds(2))
        _ = machine.staged(1, at: .seconds(2))
        _ = machine.candidateHealthy(1, at: .seconds(3))
        return machine
    }

    @Test func firstBuildIsStagedLaunchedAndSwappedIn() {
        var machine = Supervisor(policy: SupervisorPolicy())
        #expect(commands(machine.started(at: .zero)) == [.startBuild(1)])
        #expect(commands(machine.buildFinished(1, .succeeded, at: .seconds(2))) == [.stage(1, 1)])
        #expect(commands(machine.staged(1, at: .seconds(2))) == [.launchCandidate(1, .newBuild)])
        #expect(machine.servingGeneration == nil)
        let swap = machine.candidateHealthy(1, at: .milliseconds(2300))
        #expect(commands(swap) == [.switchTraffic(to: 1)])
        #expect(reports(swap) == [.swapped(from: nil, to: 1, healthyAfter: .milliseconds(300))])
        #expect(machine.servingGeneration == 1)
    }

    @Test func changeDuringBuildCancelsItAndBuildsAgain() {
        var machine = serving()
        #expect(commands(machine.filesChanged(["a.swift"], at: .seconds(10))) == [.startBuild(2)])
        // A newer change interrupts build 2; a third change while cancelling queues nothing more.
        #expect(commands(machine.filesChanged(["b.swift"], at: .seconds(11))) == [.cancelBuild(2)])
        #expect(commands(machine.filesChanged(["c.swift"], at: .seconds(11))) == [])
        // The cancelled build reports; exactly one new build starts.
        let after = machine.buildFinished(2, .cancelled, at: .seconds(12))
        #expect(commands(after) == [.startBuild(3)])
        // It says what superseded it, and the next build names every file changed meanwhile.
        #expect(reports(after).first == .buildCancelled(2, because: .superseded(by: .filesChanged(["b.swift", "c.swift"]))))
        #expect(reports(after).dropFirst().first == .buildStarted(3, reason: .filesChanged(["b.swift", "c.swift"])))
        #expect(machine.servingGeneration == 1)
    }

    @Test func deletedStateDirectoryRebuildsAndNeverRestartsAGoneBinary() {
        var machine = serving()
        let lost = machine.stateDirectoryLost(at: .seconds(20))
        #expect(reports(lost).first == .stateDirectoryLost(stillServing: 1))
        #expect(commands(lost) == [.startBuild(2)])
        #expect(reports(lost).dropFirst().first == .buildStarted(2, reason: .stateDirectoryLost))
        // Gen 1 crashes before the build is done: its binary is gone, so it is not restarted
        // (that would run a missing file in a backoff loop) and nothing is rolled back to.
        let crash = machine.processExited(1, .exited(1), at: .seconds(21))
        #expect(commands(crash) == [.holdTraffic(1)])
        #expect(reports(crash) == [.serverCrashed(1, status: .exited(1))])
        // The build brings a generation that can be launched and restarted again.
        #expect(commands(machine.buildFinished(2, .succeeded, at: .seconds(25))) == [.stage(2, 2)])
        #expect(commands(machine.staged(2, at: .seconds(25))) == [.launchCandidate(2, .newBuild)])
        _ = machine.candidateHealthy(2, at: .seconds(26))
        #expect(commands(machine.processExited(2, .exited(1), at: .seconds(60))).contains(.schedule(.restart(2), after: .milliseconds(100))))
    }

    @Test func deletedStateDirectoryDuringABuildQueuesTheRebuild() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        #expect(commands(machine.stateDirectoryLost(at: .seconds(11))) == [.cancelBuild(2)])
        let after = machine.buildFinished(2, .cancelled, at: .seconds(12))
        #expect(reports(after).first == .buildCancelled(2, because: .superseded(by: .stateDirectoryLost)))
        #expect(commands(after) == [.startBuild(3)])
    }

    @Test func buildCancelledByStoppingSaysSo() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        #expect(commands(machine.signalReceived(.terminate, at: .seconds(11))).contains(.cancelBuild(2)))
        let after = machine.buildFinished(2, .cancelled, at: .seconds(12))
        #expect(reports(after).first == .buildCancelled(2, because: .stopping))
        #expect(!commands(after).contains(.startBuild(3)))
    }

    @Test func rebuildRequestedDuringBuildIsTheCancelCause() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        #expect(commands(machine.rebuildRequested(at: .seconds(11))) == [.cancelBuild(2)])
        let after = machine.buildFinished(2, .cancelled, at: .seconds(12))
        #expect(reports(after).first == .buildCancelled(2, because: .superseded(by: .requested)))
        #expect(commands(after) == [.startBuild(3)])
    }

    @Test func buildThatSucceedsWhileCancelledIsNotStaged() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.filesChanged(["a.swift"], at: .seconds(11))
        // The build finished before the interrupt landed: its binary is already stale.
        #expect(commands(machine.buildFinished(2, .succeeded, at: .seconds(12))) == [.startBuild(3)])
    }

    @Test func failedBuildKeepsTheServerServing() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        let failure = BuildFailure(summary: "2 errors", errorCount: 2)
        let actions = machine.buildFinished(2, .failed(failure), at: .seconds(13))
        #expect(commands(actions) == [])
        #expect(reports(actions) == [.buildFailed(2, took: .seconds(3), failure, stillServing: 1)])
        #expect(machine.servingGeneration == 1)
        // The fix builds again and is swapped in as generation 2.
        #expect(commands(machine.filesChanged(["a.swift"], at: .seconds(20))) == [.startBuild(3)])
        #expect(commands(machine.buildFinished(3, .succeeded, at: .seconds(22))) == [.stage(3, 2)])
    }

    @Test func healthyCandidateIsSwappedInAndTheOldOneDrained() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        #expect(commands(machine.staged(2, at: .seconds(12))) == [.launchCandidate(2, .newBuild)])
        // The old server keeps serving while the candidate starts.
        #expect(machine.servingGeneration == 1)
        let swap = machine.candidateHealthy(2, at: .seconds(13))
        #expect(commands(swap) == [.switchTraffic(to: 2), .stop(1, signal: term, timeout: .seconds(5))])
        #expect(machine.servingGeneration == 2)
        #expect(reports(machine.processExited(1, .exited(0), at: .seconds(14))) == [.serverStopped(1, status: .exited(0))])
    }

    @Test func unhealthyCandidateIsDiscardedAndTheOldOneKeepsServing() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        let actions = machine.candidateUnhealthy(2, reason: "GET /health answered 404", at: .seconds(15))
        #expect(commands(actions) == [.stop(2, signal: term, timeout: .seconds(5))])
        #expect(reports(actions) == [.candidateDiscarded(2, reason: "GET /health answered 404", stillServing: 1)])
        #expect(machine.servingGeneration == 1)
        // Its exit afterwards is an expected stop, not a crash.
        #expect(reports(machine.processExited(2, .signalled(15), at: .seconds(16))) == [.serverStopped(2, status: .signalled(15))])
    }

    @Test func candidateThatExitsBeforeHealthyIsDiscarded() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        let actions = machine.processExited(2, .exited(3), at: .seconds(12.5))
        #expect(reports(actions).contains(.candidateDiscarded(2, reason: "exited (exit status 3) before it became healthy", stillServing: 1)))
        #expect(machine.servingGeneration == 1)
    }

    @Test func aCandidateThatEndsWithStatus0IsToldItIsNoServer() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        let actions = machine.processExited(2, .exited(0), at: .seconds(12.5))
        #expect(reports(actions).contains(.candidateDiscarded(
            2, reason: "exited (exit status 0) before it became healthy: it ended by itself; a server keeps running and answers on the port safe-watch gives it",
            stillServing: 1)))
    }

    @Test func anExitDiagnosisIsPartOfTheReason() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        let actions = machine.processExited(2, .exited(0), at: .seconds(12.5), diagnosis: "it said \"Address already in use\"")
        #expect(reports(actions).contains(
            .candidateDiscarded(2, reason: "exited (exit status 0) before it became healthy: it said \"Address already in use\"", stillServing: 1)))
    }

    @Test func crashRestartsTheSameGenerationWithBackoff() {
        var machine = serving()
        // Gen 1 has run for a minute (well past the rollback window) and crashes.
        var actions = machine.processExited(1, .signalled(11), at: .seconds(60))
        // New requests wait for the restart rather than go to a port nobody answers.
        #expect(commands(actions) == [.holdTraffic(1), .schedule(.restart(1), after: .milliseconds(100))])
        #expect(reports(actions).first == .serverCrashed(1, status: .signalled(11)))
        #expect(machine.servingGeneration == nil)
        #expect(commands(machine.timerFired(.restart(1), at: .seconds(60.1))) == [.launchCandidate(1, .restart)])
        // The restart dies at once: the delay doubles.
        actions = machine.processExited(1, .exited(1), at: .seconds(60.2))
        #expect(commands(actions).last == .schedule(.restart(1), after: .milliseconds(200)))
        _ = machine.timerFired(.restart(1), at: .seconds(60.4))
        actions = machine.processExited(1, .exited(1), at: .seconds(60.5))
        #expect(commands(actions).last == .schedule(.restart(1), after: .milliseconds(400)))
        _ = machine.timerFired(.restart(1), at: .seconds(61))
        #expect(commands(machine.candidateHealthy(1, at: .seconds(61.2))) == [.switchTraffic(to: 1)])
        #expect(machine.servingGeneration == 1)
    }

    @Test func backoffIsCappedAtFiveSeconds() {
        var machine = serving()
        var last: SupervisorAction?
        var now = Duration.seconds(60)
        _ = machine.processExited(1, .exited(1), at: now)
        for _ in 0..<10 {
            now += .seconds(6)
            _ = machine.timerFired(.restart(1), at: now)
            last = commands(machine.processExited(1, .exited(1), at: now + .milliseconds(10))).last
        }
        #expect(last == .schedule(.restart(1), after: .seconds(5)))
    }

    @Test func crashRightAfterSwapRollsBackToThePreviousGeneration() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        _ = machine.candidateHealthy(2, at: .seconds(13))
        _ = machine.processExited(1, .exited(0), at: .seconds(13.5))
        // Gen 2 dies 2 s after its swap.
        let actions = machine.processExited(2, .exited(1), at: .seconds(15))
        #expect(commands(actions) == [.holdTraffic(2), .launchCandidate(1, .rollback)])
        #expect(reports(actions).contains(.rollingBack(from: 2, to: 1, because: .crashedAfterSwap)))
        #expect(commands(machine.candidateHealthy(1, at: .seconds(15.5))) == [.switchTraffic(to: 1)])
        #expect(machine.servingGeneration == 1)
    }

    @Test func burstOfChangesIsOneBuild() {
        var machine = serving()
        var debouncer = Debouncer(quietPeriod: .milliseconds(100))
        var builds = 0
        var now = Duration.seconds(10)
        for index in 0..<5000 {
            _ = debouncer.record(["Sources/File\(index).swift"], at: now)
            now += .microseconds(50)
            if let paths = debouncer.release(at: now) {
                builds += commands(machine.filesChanged(paths, at: now)).count
            }
        }
        #expect(builds == 0)
        now += .milliseconds(100)
        let paths = debouncer.release(at: now)
        #expect(paths?.count == 5000)
        #expect(commands(machine.filesChanged(paths ?? [], at: now)) == [.startBuild(2)])
    }

    @Test func terminateStopsBuildCandidateAndServerInOrderThenExits() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        _ = machine.filesChanged(["b.swift"], at: .seconds(12.5))  // build 3 runs
        let actions = machine.signalReceived(.terminate, at: .seconds(13))
        #expect(
            commands(actions) == [
                .armHardStop, .stopAcceptingTraffic(idleGrace: .zero),
                .cancelBuild(3), .stop(2, signal: term, timeout: .seconds(5)), .stop(1, signal: term, timeout: .seconds(5)),
            ])
        // Changes and a late healthy report are ignored while stopping.
        #expect(machine.filesChanged(["c.swift"], at: .seconds(13.1)).isEmpty)
        #expect(machine.candidateHealthy(2, at: .seconds(13.2)).isEmpty)
        #expect(commands(machine.buildFinished(3, .cancelled, at: .seconds(13.3))) == [])
        #expect(commands(machine.processExited(2, .signalled(15), at: .seconds(13.4))) == [])
        // The last process gone: exit 0.
        #expect(commands(machine.processExited(1, .exited(0), at: .seconds(14))) == [.holdTraffic(1), .exit(code: 0)])
    }

    @Test func secondTerminateKillsWhatIsStillDraining() {
        var machine = serving()
        _ = machine.signalReceived(.terminate, at: .seconds(10))
        #expect(commands(machine.signalReceived(.terminate, at: .seconds(11))) == [.stop(1, signal: 9, timeout: .zero)])
    }

    @Test func restartModeStopsTheOldServerBeforeStartingTheNew() {
        var machine = serving(SupervisorPolicy(mode: .restart))
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        #expect(commands(machine.staged(2, at: .seconds(12))) == [.stop(1, signal: term, timeout: .seconds(5))])
        #expect(commands(machine.processExited(1, .exited(0), at: .seconds(12.2))) == [.launchCandidate(2, .newBuild)])
        #expect(commands(machine.candidateHealthy(2, at: .seconds(13))) == [.switchTraffic(to: 2)])
    }

    @Test func restartModeRollsBackWhenTheNewServerIsUnhealthy() {
        var machine = serving(SupervisorPolicy(mode: .restart))
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        _ = machine.processExited(1, .exited(0), at: .seconds(12.2))
        let actions = machine.candidateUnhealthy(2, reason: "not healthy", at: .seconds(20))
        // Gen 2 is stopped first; gen 1 launches once it has gone.
        #expect(commands(actions) == [.stop(2, signal: term, timeout: .seconds(5))])
        #expect(reports(actions).contains(.rollingBack(from: 2, to: 1, because: .replacementFailed)))
        #expect(commands(machine.processExited(2, .signalled(15), at: .seconds(20.1))) == [.launchCandidate(1, .rollback)])
    }

    @Test func newerGenerationSupersedesACandidateStillStarting() {
        var machine = serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(10))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(12))
        _ = machine.staged(2, at: .seconds(12))
        _ = machine.filesChanged(["a.swift"], at: .seconds(12.5))
        _ = machine.buildFinished(3, .succeeded, at: .seconds(14))
        #expect(commands(machine.staged(3, at: .seconds(14))) == [.stop(2, signal: term, timeout: .seconds(5)), .launchCandidate(3, .newBuild)])
        // Gen 2's late verdict changes nothing.
        #expect(machine.candidateHealthy(2, at: .seconds(14.1)).isEmpty)
        #expect(commands(machine.candidateHealthy(3, at: .seconds(15))) == [.switchTraffic(to: 3), .stop(1, signal: term, timeout: .seconds(5))])
    }

    @Test func oldGenerationsAreDiscardedBeyondTheKeptWindow() {
        var machine = serving(SupervisorPolicy(keepGenerations: 2))
        var discarded: [Generation] = []
        for build in 2...4 {
            let now = Duration.seconds(10 * build)
            _ = machine.filesChanged(["a.swift"], at: now)
            _ = machine.buildFinished(build, .succeeded, at: now + .seconds(1))
            for case .discardGenerations(let generations) in machine.staged(build, at: now + .seconds(1)) {
                discarded += generations
            }
            _ = machine.candidateHealthy(build, at: now + .seconds(2))
        }
        #expect(discarded == [1, 2])
    }

    @Test func reloadAppliesPolicyAndRebuildsWhenAsked() {
        var machine = serving()
        #expect(commands(machine.signalReceived(.reload, at: .seconds(5))) == [.reloadConfig])
        let actions = machine.configReloaded(SupervisorPolicy(stopTimeout: .seconds(1)), rebuild: true, at: .seconds(5))
        #expect(commands(actions) == [.startBuild(2)])
        #expect(machine.policy.stopTimeout == .seconds(1))
        // A rejected file changes nothing: the user is told, the policy read before stays.
        #expect(machine.configRejected("bad") == [.report(.configRejected("bad", keeping: "the previous configuration stays in force"))])
        #expect(machine.policy.stopTimeout == .seconds(1))
    }
}

/// The actions that are commands to the runtime, without the reports.
func commands(_ actions: [SupervisorAction]) -> [SupervisorAction] {
    actions.filter { if case .report = $0 { return false } else { return true } }
}

/// The reports among the actions.
func reports(_ actions: [SupervisorAction]) -> [Report] {
    actions.compactMap { if case .report(let report) = $0 { return report } else { return nil } }
}
