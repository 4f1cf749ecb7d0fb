import Glibc
import NIOPosix
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

@testable import SafeWatch

/// The health-check loop, against real sockets.
@Suite struct ProberTests {
    /// A candidate that keeps refusing is probed until startup_timeout, however many probes that
    /// takes: the pause between probes grew by doubling without a cap and overflowed Duration
    /// after ~75 probes, which trapped safe-watch for any server slower than ~7 s to start.
    @Test func aServerThatNeverAcceptsIsProbedUntilTheStartupTimeoutWithoutOverflow() async throws {
        let prober = Prober(group: MultiThreadedEventLoopGroup.singleton, launcher: ChildLauncher(), projectDirectory: "/")
        // A port nothing listens on: a socket bound and never listening refuses connections.
        let port = try freeLoopbackPort()
        let check = HealthCheck(kind: .tcp, interval: .milliseconds(1), startupTimeout: .milliseconds(400))
        let start = ContinuousClock.now
        let verdict = await prober.verdict(
            check: check, port: port, startedAt: .zero, now: { ContinuousClock.now - start }, ready: { false })
        guard case .unhealthy(let reason) = verdict else {
            Issue.record("expected unhealthy, got \(verdict)")
            return
        }
        #expect(reason.contains("not healthy within startup_timeout"))
        #expect(ContinuousClock.now - start >= .milliseconds(400))
    }

    /// Cancelling the task that probes (the candidate exited or was superseded) ends the loop at
    /// once, well before the startup timeout.
    @Test func cancellingTheProbingTaskEndsItPromptly() async throws {
        let prober = Prober(group: MultiThreadedEventLoopGroup.singleton, launcher: ChildLauncher(), projectDirectory: "/")
        let check = HealthCheck(kind: .notify, interval: .milliseconds(10), startupTimeout: .seconds(60))
        let start = ContinuousClock.now
        let (firstProbe, probed) = AsyncStream<Void>.makeStream()
        let task = Task {
            await prober.verdict(
                check: check, port: nil, startedAt: .zero, now: { ContinuousClock.now - start },
                ready: {
                    probed.yield()
                    return false
                })
        }
        for await _ in firstProbe { break }
        task.cancel()
        let verdict = await task.value
        #expect(verdict == .unhealthy("probing cancelled"))
        #expect(ContinuousClock.now - start < .seconds(30))
    }

    /// An HTTP probe under way when the probing is cancelled does not wait out health.timeout: a
    /// candidate that accepts and never answers is let go at once.
    @Test func cancellingEndsAnHTTPProbeUnderWay() async throws {
        let prober = Prober(group: MultiThreadedEventLoopGroup.singleton, launcher: ChildLauncher(), projectDirectory: "/")
        // Listening, never accepting: the kernel completes the connection and nobody answers.
        let (listener, port) = try listenLoopback()
        defer { close(listener) }
        let check = HealthCheck(kind: .http(path: "/health"), interval: .milliseconds(10), timeout: .seconds(60), startupTimeout: .seconds(120))
        let start = ContinuousClock.now
        let task = Task {
            await prober.verdict(check: check, port: port, startedAt: .zero, now: { ContinuousClock.now - start }, ready: { false })
        }
        // The probe's connection is waiting in the backlog: its GET is under way.
        var pending = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        #expect(await waitUntil { poll(&pending, 1, 0) > 0 })
        task.cancel()
        let verdict = await result(within: .seconds(30)) { await task.value }
        #expect(verdict == .unhealthy("probing cancelled"))
        #expect(ContinuousClock.now - start < .seconds(30))
    }
}
