import SafeWatchCore
import Testing

/// What safe-watch tells systemd, decided from the reports (no sockets here).
@Suite struct ServiceStatusTests {
    var status = ServiceStatus(buildTimeout: .seconds(600), startupTimeout: .seconds(30))

    @Test mutating func firstBuildExtendsTheStartTimeoutThenReadyOnceServing() {
        let started = status.record(.buildStarted(1, reason: .initial))
        #expect(started == "EXTEND_TIMEOUT_USEC=640000000\nSTATUS=nothing serving yet · build 1 running")
        #expect(!status.isReady)
        _ = status.record(.buildSucceeded(1, took: .seconds(40)))
        #expect(status.record(.candidateLaunched(1, .newBuild)) == "EXTEND_TIMEOUT_USEC=40000000\nSTATUS=nothing serving yet · starting gen 1")
        #expect(status.record(.swapped(from: nil, to: 1, healthyAfter: .milliseconds(20))) == "READY=1\nSTATUS=serving gen 1")
        #expect(status.isReady)
        // Later builds do not extend anything and READY=1 is said once.
        #expect(status.record(.buildStarted(2, reason: .filesChanged(["a.swift"]))) == "STATUS=serving gen 1 · build 2 running")
        _ = status.record(.buildSucceeded(2, took: .seconds(2)))
        _ = status.record(.candidateLaunched(2, .newBuild))
        #expect(status.record(.swapped(from: 1, to: 2, healthyAfter: .milliseconds(20))) == "STATUS=serving gen 2")
    }

    @Test mutating func aBrokenFirstBuildIsReadyWithTheReasonSoSystemdDoesNotRestartLoop() {
        _ = status.record(.buildStarted(1, reason: .initial))
        let failure = BuildFailure(
            summary: "2 errors",
            diagnostics: [Diagnostic(file: "Sources/App/routes.swift", line: 12, severity: .error, message: "cannot find 'x'")],
            errorCount: 2)
        let message = status.record(.buildFailed(1, took: .seconds(3), failure, stillServing: nil))
        #expect(message == "READY=1\nSTATUS=nothing serving yet · build 1 failed: 2 errors (Sources/App/routes.swift:12)")
        // The fix serves, and the problem is gone from the status.
        _ = status.record(.buildStarted(2, reason: .filesChanged(["Sources/App/routes.swift"])))
        _ = status.record(.buildSucceeded(2, took: .seconds(2)))
        _ = status.record(.candidateLaunched(1, .newBuild))
        #expect(status.record(.swapped(from: nil, to: 1, healthyAfter: .milliseconds(30))) == "STATUS=serving gen 1")
    }

    @Test mutating func failuresWhileServingKeepTheServingGenerationInTheStatus() {
        _ = status.record(.swapped(from: nil, to: 3, healthyAfter: .milliseconds(5)))
        #expect(
            status.record(.candidateDiscarded(4, reason: "GET /health answered 500", stillServing: 3))
                == "STATUS=serving gen 3 · gen 4 discarded: GET /health answered 500")
        #expect(
            status.record(.migrationsBlocked(5, reason: "SW101 0002_users.sql was modified", stillServing: 3))
                == "STATUS=serving gen 3 · gen 5 not started: migrations SW101 0002_users.sql was modified")
        #expect(status.record(.serverCrashed(3, status: .signalled(9))) == "STATUS=nothing serving yet · gen 3 exited unexpectedly (signal SIGKILL)")
        #expect(
            status.record(.restartScheduled(3, after: .milliseconds(100)))
                == "STATUS=nothing serving yet · gen 3 exited unexpectedly (signal SIGKILL); restarting gen 3 in 100 ms")
    }

    @Test mutating func reloadSaysReloadingThenReadyAgain() {
        _ = status.record(.swapped(from: nil, to: 1, healthyAfter: .milliseconds(5)))
        let reloading = status.reloadStarted(monotonicMicroseconds: 123_456)
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC=123456\nSTATUS=reloading"))
        #expect(status.record(.configReloaded) == "READY=1\nSTATUS=serving gen 1")
        // A rejected reload is also the end of reloading.
        _ = status.reloadStarted(monotonicMicroseconds: 200_000)
        #expect(
            status.record(.configRejected("safe-watch.toml:3: [health] interval: must be more than 0", keeping: "keeping the old one"))
                == "READY=1\nSTATUS=serving gen 1 · configuration not reloaded: safe-watch.toml:3: [health] interval: must be more than 0")
        // Without a reload in progress, nothing says READY=1 again.
        #expect(status.record(.configReloaded) == "STATUS=serving gen 1 · configuration not reloaded: safe-watch.toml:3: [health] interval: must be more than 0")
    }

    @Test mutating func stopping() {
        _ = status.record(.swapped(from: nil, to: 1, healthyAfter: .milliseconds(5)))
        #expect(status.record(.stopping) == "STOPPING=1\nSTATUS=stopping")
        #expect(status.record(.serverStopped(1, status: .exited(0))) == nil)
    }

    @Test mutating func statusIsOneShortLine() {
        let long = String(repeating: "x", count: 500) + "\nsecond line"
        _ = status.record(.candidateDiscarded(1, reason: long, stillServing: nil))
        #expect(status.statusText.count == 200)
        #expect(!status.statusText.contains("\n"))
    }
}

@Suite struct WatchdogSettingTests {
    @Test func halfOfWatchdogUsec() {
        #expect(WatchdogSetting(usec: "20000000", pid: nil, ownPID: 42).period == .seconds(10))
        #expect(WatchdogSetting(usec: "3000000", pid: "42", ownPID: 42).period == .milliseconds(1500))
        #expect(WatchdogSetting(usec: nil, pid: nil, ownPID: 42).period == nil)
    }

    @Test func malformedOrForAnotherProcessIsSaidAndNotUsed() {
        let malformed = WatchdogSetting(usec: "20s", pid: nil, ownPID: 42)
        #expect(malformed.period == nil)
        #expect(malformed.warning?.contains("WATCHDOG_USEC=\"20s\" is not a positive number of microseconds") == true)
        #expect(WatchdogSetting(usec: "0", pid: nil, ownPID: 42).period == nil)
        let other = WatchdogSetting(usec: "20000000", pid: "7", ownPID: 42)
        #expect(other.period == nil)
        #expect(other.warning?.contains("WATCHDOG_PID=7 names another process") == true)
    }
}

@Suite struct SocketActivationTests {
    @Test func nothingPassed() {
        let activation = SocketActivation(listenPID: nil, listenFDs: nil, names: nil, ownPID: 10, wantedName: nil)
        #expect(activation.listeners.isEmpty && activation.warnings.isEmpty && activation.error == nil)
    }

    @Test func socketUnitSocketsWithNames() {
        let activation = SocketActivation(listenPID: "10", listenFDs: "2", names: "http:admin", ownPID: 10, wantedName: nil)
        #expect(activation.listeners == [InheritedSocket(fd: 3, name: "http"), InheritedSocket(fd: 4, name: "admin")])
        #expect(activation.fromSocketUnit)
        let chosen = SocketActivation(listenPID: "10", listenFDs: "2", names: "http:admin", ownPID: 10, wantedName: "admin")
        #expect(chosen.listeners == [InheritedSocket(fd: 4, name: "admin")])
        #expect(chosen.unused == [InheritedSocket(fd: 3, name: "http")])
        // Missing names count as "unknown", as sd_listen_fds_with_names says.
        let unnamed = SocketActivation(listenPID: "10", listenFDs: "1", names: nil, ownPID: 10, wantedName: nil)
        #expect(unnamed.listeners == [InheritedSocket(fd: 3, name: "unknown")])
    }

    @Test func namesThatDoNotMatchTheConfigurationAreAnError() {
        let activation = SocketActivation(listenPID: "10", listenFDs: "1", names: "safe-watch.socket", ownPID: 10, wantedName: "http")
        #expect(activation.listeners.isEmpty)
        #expect(
            activation.error
                == "systemd passed sockets named \"safe-watch.socket\", but serve.socket_name is \"http\": set FileDescriptorName=http in the .socket unit, or change serve.socket_name")
    }

    @Test func socketsForAnotherProcessOrNoneAreIgnoredWithAWarning() {
        let other = SocketActivation(listenPID: "99", listenFDs: "1", names: "x", ownPID: 10, wantedName: nil)
        #expect(other.listeners.isEmpty && other.error == nil)
        #expect(other.warnings == ["LISTEN_PID=99 names another process (safe-watch is 10): the sockets were meant for it; ignoring them and binding serve.listen"])
        let none = SocketActivation(listenPID: "10", listenFDs: "0", names: nil, ownPID: 10, wantedName: nil)
        #expect(none.listeners.isEmpty)
        #expect(none.warnings.first?.contains("LISTEN_FDS=0") == true)
        let garbage = SocketActivation(listenPID: "10", listenFDs: "two", names: nil, ownPID: 10, wantedName: nil)
        #expect(garbage.listeners.isEmpty && garbage.warnings.count == 1)
    }

    @Test func theStoredListenerComesBackUnlessASocketUnitTookOver() {
        let stored = SocketActivation(listenPID: "10", listenFDs: "1", names: "safe-watch-listen", ownPID: 10, wantedName: nil)
        #expect(stored.listeners == [InheritedSocket(fd: 3, name: "safe-watch-listen")])
        #expect(!stored.fromSocketUnit)
        let both = SocketActivation(listenPID: "10", listenFDs: "2", names: "safe-watch.socket:safe-watch-listen", ownPID: 10, wantedName: nil)
        #expect(both.listeners == [InheritedSocket(fd: 3, name: "safe-watch.socket")])
        #expect(both.unused == [InheritedSocket(fd: 4, name: "safe-watch-listen")])
    }
}

@Suite struct ListeningTCPSocketTests {
    static let procNetTCP = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51234 1 0000000000000000 100 0 0 10 0
           1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51300 1 0000000000000000 100 0 0 10 0
           2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 51400 1 0000000000000000 20 4 30 10 -1
        """

    @Test func parsesListeningSocketsOnly() {
        let sockets = ListeningTCPSocket.parse(procNetTCP: Self.procNetTCP)
        #expect(sockets == [
            ListeningTCPSocket(inode: 51234, address: "127.0.0.1", port: 8080),
            ListeningTCPSocket(inode: 51300, address: "0.0.0.0", port: 3000),
        ])
    }

    @Test func parsesIPv6() {
        let text = """
              sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0
               1: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 778 1 0 100 0 0 10 0
            """
        #expect(ListeningTCPSocket.parse(procNetTCP: text) == [
            ListeningTCPSocket(inode: 777, address: "[0:0:0:0:0:0:0:1]", port: 8080),
            ListeningTCPSocket(inode: 778, address: "127.0.0.1", port: 80),
        ])
    }

    @Test func aServerListeningBesideTheSharedSocketIsFound() {
        let sockets = ListeningTCPSocket.parse(procNetTCP: Self.procNetTCP)
        // Holds the shared socket (51234) and binds :3000 itself.
        let own = listenersOutsideSocketMode(serverSocketInodes: [51234, 51300], listening: sockets, sharedInodes: [51234], healthPort: nil)
        #expect(own == [ListeningTCPSocket(inode: 51300, address: "0.0.0.0", port: 3000)])
        // Its private health port is expected.
        #expect(listenersOutsideSocketMode(serverSocketInodes: [51234, 51300], listening: sockets, sharedInodes: [51234], healthPort: 3000).isEmpty)
        // Sockets of other processes are not its own.
        #expect(listenersOutsideSocketMode(serverSocketInodes: [51234], listening: sockets, sharedInodes: [51234], healthPort: nil).isEmpty)
    }
}

@Suite struct HardStopTests {
    @Test func stopSignalsStartTheClockAndAReloadDoesNot() {
        #expect(HardStop.stops(15) && HardStop.stops(2) && HardStop.stops(3))
        #expect(!HardStop.stops(1))
    }

    @Test func theLimitIsStopTimeoutPlusTheMargin() {
        #expect(HardStop.limit(stopTimeout: .seconds(5)) == .seconds(10))
        #expect(HardStop.limit(stopTimeout: .zero) == .seconds(5))
        #expect(HardStop.limit(stopTimeout: .seconds(-3)) == .seconds(5))
        // The largest stop_timeout the configuration accepts does not overflow.
        let largest = parseDuration("292y") ?? parseDuration("2562047h") ?? .seconds(Int64.max / 1_000_000_000)
        #expect(HardStop.limit(stopTimeout: largest) > largest)
    }

    @Test func theLineSaysWhatWasKilledAndWhy() {
        #expect(
            HardStop.message(signal: 15, limit: .seconds(10), killed: [41, 42])
                == "safe-watch: not stopped 10.0 s after SIGTERM (run.stop_timeout + 5.0 s); killed processes 41, 42, each with its process group, with SIGKILL; exiting with status 70\n")
        #expect(HardStop.message(signal: 2, limit: .seconds(6), killed: []).contains("after SIGINT (run.stop_timeout + 5.0 s); nothing was left to kill;"))
    }
}
