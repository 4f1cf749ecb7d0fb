import SafeWatchCore
import Testing

/// What the state machine decides besides the swap itself, told as stories with exact times: the
/// control socket's answers, the migrations gate, a staging failure, a crash restart racing newer
/// builds, what stopping arms and closes, when traffic is held, which reloaded settings apply, and
/// how a stopped server is drained.
@Suite struct SupervisorDecisionTests {
    let term: Int32 = 15

    /// Builds, stages, launches and swaps in generations 1…`generations`, each old one stopped.
    func serving(_ policy: SupervisorPolicy = SupervisorPolicy(), generations: Int = 1) -> Supervisor {
        var machine = Supervisor(policy: policy)
        _ = machine.started(at: .zero)
        for generation in 1...generations {
            let at = Duration.seconds(10 * generation)
            if generation > 1 { _ = machine.filesChanged(["a.swift"], at: at) }
            _ = machine.buildFinished(generation, .succeeded, at: at + .seconds(1))
            _ = machine.staged(generation, at: at + .seconds(1))
            _ = machine.migrationsChecked(generation, blockedBecause: nil, at: at + .seconds(1))
            if policy.mode == .restart, generation > 1 { _ = machine.processExited(generation - 1, .exited(0), at: at + .seconds(1)) }
            _ = machine.candidateHealthy(generation, at: at + .seconds(2))
            if policy.mode != .restart, generation > 1 { _ = machine.processExited(generation - 1, .exited(0), at: at + .seconds(3)) }
        }
        return machine
    }

    // MARK: Control requests

    @Test func rebuildAnswersWhatHappenedToTheBuild() {
        var machine = self.serving(generations: 1)
        let idle = machine.rebuildAsked(at: .seconds(30))
        #expect(commands(idle.actions) == [.startBuild(2)])
        #expect(idle.reply == ControlReply(ok: true, message: "build 2 started"))
        let running = machine.rebuildAsked(at: .seconds(31))
        #expect(commands(running.actions) == [.cancelBuild(2)])
        #expect(running.reply == ControlReply(ok: true, message: "build 2 is cancelled; a new build starts once it has stopped"))
        let cancelling = machine.rebuildAsked(at: .seconds(32))
        #expect(commands(cancelling.actions) == [])
        #expect(cancelling.reply == ControlReply(ok: true, message: "a build is being cancelled already; a new one starts once it has stopped"))
        // The cancelled build gives way to exactly one new build.
        #expect(commands(machine.buildFinished(2, .cancelled, at: .seconds(33))) == [.startBuild(3)])
        _ = machine.signalReceived(.terminate, at: .seconds(40))
        let stopping = machine.rebuildAsked(at: .seconds(41))
        #expect(stopping.actions == [])
        #expect(stopping.reply == .refused("safe-watch is stopping"))
    }

    @Test func rollbackAnswerSaysHowTheModeGoesBack() {
        var proxy = self.serving(generations: 2)
        let beside = proxy.rollbackAsked(at: .seconds(40))
        #expect(commands(beside.actions) == [.launchCandidate(1, .rollback)])
        #expect(beside.reply == ControlReply(
            ok: true, message: "rolling back from gen 2 to gen 1: it starts beside gen 2 and takes over once healthy"))
        var restart = self.serving(SupervisorPolicy(mode: .restart), generations: 2)
        let after = restart.rollbackAsked(at: .seconds(40))
        #expect(commands(after.actions) == [.stop(2, signal: term, timeout: .seconds(5))])
        #expect(after.reply == ControlReply(ok: true, message: "rolling back from gen 2 to gen 1: gen 2 stops, then gen 1 starts"))
        // A refusal is an answer with the reason and changes nothing.
        let again = proxy.rollbackAsked(at: .seconds(40.5))
        #expect(again.actions == [])
        #expect(again.reply == .refused("gen 1 is starting; roll back once it is healthy or discarded"))
    }

    @Test func stopIsRefusedUnderSystemdAndSaidOnceWhileStopping() {
        var machine = self.serving()
        #expect(machine.stopAsked(runsAsService: true) == (
            .refused("safe-watch runs as a systemd service: stop it with `systemctl --user stop safe-watch.service`"), false))
        let go = machine.stopAsked(runsAsService: false)
        #expect(go.terminate)
        #expect(go.reply == ControlReply(ok: true, message: "stopping: the server finishes its requests first"))
        _ = machine.signalReceived(.terminate, at: .seconds(30))
        let again = machine.stopAsked(runsAsService: false)
        #expect(!again.terminate)
        #expect(again.reply == ControlReply(ok: true, message: "stopping already"))
    }

    // MARK: The migrations gate

    @Test func gatedGenerationWaitsForTheVerdictWhileTheOldOneServes() {
        var machine = self.serving(SupervisorPolicy(gatesMigrations: true))
        _ = machine.filesChanged(["Migrations/0002.sql"], at: .seconds(30))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(32))
        // Staged, but not launched: the gate is asked first.
        #expect(commands(machine.staged(2, at: .seconds(32))) == [.checkMigrations(2)])
        #expect(machine.servingGeneration == 1)
        let passed = machine.migrationsChecked(2, blockedBecause: nil, at: .seconds(33))
        #expect(commands(passed) == [.launchCandidate(2, .newBuild)])
        // The answer comes once.
        #expect(machine.migrationsChecked(2, blockedBecause: nil, at: .seconds(33.1)) == [])
        #expect(commands(machine.candidateHealthy(2, at: .seconds(34))) == [.switchTraffic(to: 2), .stop(1, signal: term, timeout: .seconds(5))])
    }

    @Test func blockedGenerationNeverStartsAndTheNextBuildIsGatedAgain() {
        var machine = self.serving(SupervisorPolicy(gatesMigrations: true))
        _ = machine.filesChanged(["Migrations/0002.sql"], at: .seconds(30))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(32))
        _ = machine.staged(2, at: .seconds(32))
        let blocked = machine.migrationsChecked(2, blockedBecause: "0002.sql drops column email", at: .seconds(33))
        #expect(commands(blocked) == [])
        #expect(reports(blocked) == [.migrationsBlocked(2, reason: "0002.sql drops column email", stillServing: 1)])
        #expect(machine.servingGeneration == 1)
        // Nothing of gen 2 is left waiting: the fix is built, gated and launched as gen 3.
        _ = machine.filesChanged(["Migrations/0002.sql"], at: .seconds(40))
        #expect(commands(machine.buildFinished(3, .succeeded, at: .seconds(42))) == [.stage(3, 3)])
        #expect(commands(machine.staged(3, at: .seconds(42))) == [.checkMigrations(3)])
        #expect(commands(machine.migrationsChecked(3, blockedBecause: nil, at: .seconds(43))) == [.launchCandidate(3, .newBuild)])
    }

    @Test func aVerdictForASupersededOrLostGenerationIsIgnored() {
        var machine = self.serving(SupervisorPolicy(gatesMigrations: true))
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(32))
        _ = machine.staged(2, at: .seconds(32))
        // Gen 3 is staged while gen 2's check runs: only gen 3 may start.
        _ = machine.filesChanged(["a.swift"], at: .seconds(33))
        _ = machine.buildFinished(3, .succeeded, at: .seconds(35))
        #expect(commands(machine.staged(3, at: .seconds(35))) == [.checkMigrations(3)])
        #expect(machine.migrationsChecked(2, blockedBecause: nil, at: .seconds(36)) == [])
        // .safe-watch deleted while gen 3 is checked: its binary is gone, so its verdict launches nothing.
        _ = machine.stateDirectoryLost(at: .seconds(36.5))
        #expect(machine.migrationsChecked(3, blockedBecause: nil, at: .seconds(37)) == [])
        #expect(machine.servingGeneration == 1)
    }

    @Test func aVerdictAfterStoppingStartsNothing() {
        var machine = self.serving(SupervisorPolicy(gatesMigrations: true))
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(32))
        _ = machine.staged(2, at: .seconds(32))
        #expect(commands(machine.signalReceived(.terminate, at: .seconds(33))).last == .stop(1, signal: term, timeout: .seconds(5)))
        #expect(machine.migrationsChecked(2, blockedBecause: nil, at: .seconds(34)) == [])
        #expect(commands(machine.processExited(1, .exited(0), at: .seconds(35))).last == .exit(code: 0))
    }

    @Test func theGatedGenerationIsNotDiscardedByTheKeptWindow() {
        var machine = self.serving(SupervisorPolicy(keepGenerations: 2, gatesMigrations: true))
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(32))
        _ = machine.staged(2, at: .seconds(32))
        #expect(commands(machine.migrationsChecked(2, blockedBecause: nil, at: .seconds(33))) == [.launchCandidate(2, .newBuild)])
        // Gen 3 reaches the gate while gen 2 starts beside gen 1: three kept, two allowed, but
        // every one is in use (serving, starting, at the gate), so none is deleted.
        _ = machine.filesChanged(["a.swift"], at: .seconds(33.5))
        _ = machine.buildFinished(3, .succeeded, at: .seconds(35))
        #expect(commands(machine.staged(3, at: .seconds(35))) == [.checkMigrations(3)])
        // Its verdict launches it; once gen 2 is superseded, gen 2 is what the window lets go.
        #expect(commands(machine.migrationsChecked(3, blockedBecause: nil, at: .seconds(36)))
            == [.stop(2, signal: term, timeout: .seconds(5)), .launchCandidate(3, .newBuild)])
    }

    // MARK: Staging

    @Test func stagingFailureKeepsTheServerAndTheNextBuildIsANewGeneration() {
        var machine = self.serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        #expect(commands(machine.buildFinished(2, .succeeded, at: .seconds(32))) == [.stage(2, 2)])
        let failed = machine.stagingFailed(2, reason: "No space left on device")
        #expect(commands(failed) == [])
        #expect(reports(failed) == [.stagingFailed(2, reason: "No space left on device", stillServing: 1)])
        #expect(machine.servingGeneration == 1)
        // Nothing waits on the lost generation: the next change builds and stages gen 3.
        #expect(commands(machine.filesChanged(["a.swift"], at: .seconds(40))) == [.startBuild(3)])
        #expect(commands(machine.buildFinished(3, .succeeded, at: .seconds(42))) == [.stage(3, 3)])
        #expect(commands(machine.staged(3, at: .seconds(42))) == [.launchCandidate(3, .newBuild)])
    }

    @Test func stagingFailureOfTheFirstBuildLeavesNothingServing() {
        var machine = Supervisor(policy: SupervisorPolicy())
        _ = machine.started(at: .zero)
        _ = machine.buildFinished(1, .succeeded, at: .seconds(2))
        #expect(reports(machine.stagingFailed(1, reason: "binary .build/debug/App not found")) == [
            .stagingFailed(1, reason: "binary .build/debug/App not found", stillServing: nil)
        ])
        #expect(machine.servingGeneration == nil)
        #expect(commands(machine.filesChanged(["a.swift"], at: .seconds(5))) == [.startBuild(2)])
    }

    // MARK: A crash restart racing newer builds

    @Test func restartModeCrashRestartNeverTakesThePlaceOfANewerBuildWaitingForThePort() {
        var machine = self.serving(SupervisorPolicy(mode: .restart))
        _ = machine.filesChanged(["a.swift"], at: .seconds(59))
        #expect(commands(machine.processExited(1, .exited(1), at: .seconds(60))) == [.schedule(.restart(1), after: .milliseconds(100))])
        // Gen 2 and gen 3 are staged before the 100 ms are up; gen 2 gives way to gen 3.
        _ = machine.buildFinished(2, .succeeded, at: .seconds(60.02))
        #expect(commands(machine.staged(2, at: .seconds(60.02))) == [.launchCandidate(2, .newBuild)])
        _ = machine.filesChanged(["a.swift"], at: .seconds(60.03))
        _ = machine.buildFinished(3, .succeeded, at: .seconds(60.05))
        #expect(commands(machine.staged(3, at: .seconds(60.05))) == [.stop(2, signal: term, timeout: .seconds(5))])
        // The timer of gen 1's restart fires while gen 3 waits for gen 2 to free the port.
        #expect(machine.timerFired(.restart(1), at: .seconds(60.1)) == [])
        #expect(commands(machine.processExited(2, .signalled(15), at: .seconds(60.2))) == [.launchCandidate(3, .newBuild)])
    }

    @Test func crashRestartStillComesWhenTheCandidateStartedMeanwhileFails() {
        var machine = self.serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(59))
        _ = machine.processExited(1, .exited(1), at: .seconds(60))
        _ = machine.buildFinished(2, .succeeded, at: .seconds(60.02))
        _ = machine.staged(2, at: .seconds(60.02))
        _ = machine.processExited(2, .exited(1), at: .seconds(60.05))
        // Gen 2 died before it was healthy: gen 1's restart still runs when its timer fires.
        #expect(commands(machine.timerFired(.restart(1), at: .seconds(60.1))) == [.launchCandidate(1, .restart)])
    }

    // MARK: Draining a stopped server

    @Test func drainDependsOnModeSignalAndWhetherSafeWatchIsStopping() {
        let timeout = Duration.seconds(6)
        // Swapped out while safe-watch runs: its own requests finish, within all of stop_timeout.
        #expect(StopDrain(forwardsTraffic: true, signal: term, timeout: timeout, shuttingDown: false, isRouted: false)
            == .untilIdle(within: .seconds(6)))
        // Still routed to: it would never be idle; the signal comes at once.
        #expect(StopDrain(forwardsTraffic: true, signal: term, timeout: timeout, shuttingDown: false, isRouted: true) == StopDrain.none)
        // safe-watch stops: the clients' last requests, within half (the other half is the server's).
        #expect(StopDrain(forwardsTraffic: true, signal: term, timeout: timeout, shuttingDown: true, isRouted: true)
            == .lastRequests(within: .seconds(3)))
        // SIGKILL (asked to stop twice) and restart mode (no traffic through safe-watch) drain nothing.
        #expect(StopDrain(forwardsTraffic: true, signal: 9, timeout: timeout, shuttingDown: true, isRouted: true) == StopDrain.none)
        #expect(StopDrain(forwardsTraffic: false, signal: term, timeout: timeout, shuttingDown: false, isRouted: false) == StopDrain.none)
    }

    // MARK: Stopping: the hard stop and the listener

    @Test func theFirstStopArmsTheHardStopAndClosesTheListenerBeforeAnyServerIsStopped() {
        var machine = self.serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        // In order: the clock that cuts a hung stop short, no new connections (in a terminal at
        // once), then the build and the server.
        #expect(commands(machine.signalReceived(.terminate, at: .seconds(31))) == [
            .armHardStop, .stopAcceptingTraffic(idleGrace: .zero), .cancelBuild(2), .stop(1, signal: term, timeout: .seconds(5)),
        ])
        // Asked again: everything still draining is killed, and nothing is armed or closed twice.
        #expect(machine.signalReceived(.terminate, at: .seconds(32)) == [.stop(1, signal: 9, timeout: .zero)])
        #expect(machine.signalReceived(.reload, at: .seconds(32.5)) == [])
        _ = machine.buildFinished(2, .cancelled, at: .seconds(33))
        _ = machine.processExited(1, .signalled(9), at: .seconds(33.1))
        // Stopped: a late signal does nothing at all.
        #expect(machine.signalReceived(.terminate, at: .seconds(34)) == [])
    }

    @Test func underSystemdIdleClientsGetASecondForOneLastRequest() {
        var machine = self.serving(SupervisorPolicy(runsAsService: true))
        #expect(commands(machine.signalReceived(.terminate, at: .seconds(30))).prefix(2) == [
            .armHardStop, .stopAcceptingTraffic(idleGrace: .seconds(1)),
        ])
        // A reload arms nothing.
        var running = self.serving(SupervisorPolicy(runsAsService: true))
        #expect(running.signalReceived(.reload, at: .seconds(30)) == [.reloadConfig])
    }

    // MARK: Holding traffic when the server it goes to exits

    @Test func aCrashOfTheServerTrafficGoesToHoldsRequestsUntilTheRestartIsHealthy() {
        var machine = self.serving(SupervisorPolicy(mode: .tcp))
        // Held first, before the restart is even scheduled.
        #expect(commands(machine.processExited(1, .exited(1), at: .seconds(60)))
            == [.holdTraffic(1), .schedule(.restart(1), after: .milliseconds(100))])
        _ = machine.timerFired(.restart(1), at: .seconds(60.1))
        #expect(commands(machine.candidateHealthy(1, at: .seconds(60.3))) == [.switchTraffic(to: 1)])
    }

    @Test func anExitOfAServerTrafficNoLongerGoesToHoldsNothing() {
        var machine = self.serving(generations: 2)
        // Gen 2 is swapped out for gen 3: its exit is the end of its drain.
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        _ = machine.buildFinished(3, .succeeded, at: .seconds(31))
        _ = machine.staged(3, at: .seconds(31))
        _ = machine.candidateHealthy(3, at: .seconds(32))
        #expect(commands(machine.processExited(2, .signalled(15), at: .seconds(33))) == [])
        // A candidate never had traffic.
        _ = machine.filesChanged(["a.swift"], at: .seconds(40))
        _ = machine.buildFinished(4, .succeeded, at: .seconds(41))
        _ = machine.staged(4, at: .seconds(41))
        #expect(commands(machine.processExited(4, .exited(1), at: .seconds(41.5))) == [])
        #expect(machine.servingGeneration == 3)
    }

    @Test func theLastServerToExitWhileStoppingHoldsTheRequestsStillArriving() {
        var machine = self.serving()
        _ = machine.signalReceived(.terminate, at: .seconds(30))
        #expect(commands(machine.processExited(1, .signalled(15), at: .seconds(31))) == [.holdTraffic(1), .exit(code: 0)])
    }

    @Test func modesWithoutAProxyHoldNothing() {
        // Restart mode serves on the server's own port, socket mode on the shared socket: nothing
        // of safe-watch's stands between the clients and the server to hold them.
        for mode in [ServeMode.restart, .socket] {
            var machine = self.serving(SupervisorPolicy(mode: mode))
            #expect(commands(machine.processExited(1, .exited(1), at: .seconds(60))) == [.schedule(.restart(1), after: .milliseconds(100))])
        }
    }

    // MARK: Reloading the configuration

    @Test func theServeTableWaitsForARestartAndTheRestAppliesAtOnce() {
        var current = Configuration()
        current.product = "App"  // found with `swift package describe`, not in the file
        var file = Configuration()
        file.serve.listen = ListenAddress(host: "127.0.0.1", port: 9090)
        file.watch.debounce = .milliseconds(300)
        let reload = ConfigurationReload(reloaded: file, current: current)
        #expect(reload.warning == "serve.listen, serve.mode and serve.forwarded_headers changes take effect when safe-watch restarts")
        #expect(reload.configuration.serve == current.serve)
        #expect(reload.configuration.watch.debounce == .milliseconds(300))
        #expect(reload.configuration.product == "App")
        // Nothing a generation is made with changed: no rebuild.
        #expect(!reload.rebuild)
    }

    @Test func theBrowserTableWaitsForARestartButItsAssetsApplyAtOnce() {
        let current = Configuration()
        var file = Configuration()
        file.browser.prefix = "/__dev/"
        file.browser.assets = ["static"]
        let reload = ConfigurationReload(reloaded: file, current: current)
        #expect(reload.warning == "browser.enabled, browser.prefix and browser.public_hosts changes take effect when safe-watch restarts")
        #expect(reload.configuration.browser.prefix == "/_safe-watch/")
        #expect(reload.configuration.browser.assets == ["static"])
        #expect(!reload.rebuild)
        var assetsOnly = Configuration()
        assetsOnly.browser.assets = ["static"]
        #expect(ConfigurationReload(reloaded: assetsOnly, current: current).warning == nil)
    }

    @Test func aModeChangeThatWaitsDoesNotChangeTheHealthCheckThatFollowsTheMode() {
        var current = Configuration()
        current.serve.mode = .tcp
        current.settleModeDefaults()
        var file = Configuration()  // mode = "proxy", no [health] type
        file.settleModeDefaults()
        let reload = ConfigurationReload(reloaded: file, current: current)
        // The mode stays tcp until a restart, so the check stays tcp's: no new generation for it.
        #expect(reload.configuration.serve.mode == .tcp)
        #expect(reload.configuration.health.kind == .tcp)
        #expect(!reload.rebuild)
        #expect(reload.warning != nil)
    }

    @Test func whatAGenerationIsMadeWithRebuildsAndTheRebuildWaitsForTheRunningBuild() {
        let current = Configuration()
        var file = current
        file.run.args = ["--port", "{port}"]
        let reload = ConfigurationReload(reloaded: file, current: current)
        #expect(reload.rebuild)
        #expect(reload.warning == nil)
        for change in [{ (c: inout Configuration) in c.build.command = "make" }, { $0.health.interval = .seconds(1) }, { $0.product = "Other" }] {
            var changed = current
            change(&changed)
            #expect(ConfigurationReload(reloaded: changed, current: current).rebuild)
        }
        // The story: a reload that rebuilds while a build runs cancels it, and its build names why.
        var machine = self.serving()
        _ = machine.filesChanged(["a.swift"], at: .seconds(30))
        #expect(machine.signalReceived(.reload, at: .seconds(30.5)) == [.reloadConfig])
        #expect(commands(machine.configReloaded(reload.configuration.policy, rebuild: reload.rebuild, at: .seconds(30.6))) == [.cancelBuild(2)])
        let after = machine.buildFinished(2, .cancelled, at: .seconds(31))
        #expect(reports(after) == [
            .buildCancelled(2, because: .superseded(by: .configChanged)), .buildStarted(3, reason: .configChanged),
        ])
        // A reload that changes nothing a generation is made with builds nothing.
        #expect(commands(machine.configReloaded(SupervisorPolicy(), rebuild: false, at: .seconds(40))) == [])
    }

    @Test func aLongDrainStillLeavesHalfTheTimeoutAfterTheSignal() {
        #expect(StopDrain.signalTimeout(.seconds(6), drained: .seconds(1)) == .seconds(5))
        #expect(StopDrain.signalTimeout(.seconds(6), drained: .seconds(3)) == .seconds(3))
        #expect(StopDrain.signalTimeout(.seconds(6), drained: .seconds(6)) == .seconds(3))
    }
}
