import Glibc
import NIOCore
import NIOPosix
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// Probes a candidate until `HealthTracker` reaches a verdict.
public struct Prober: Sendable {
    public var group: any EventLoopGroup
    public var launcher: ChildLauncher
    public var projectDirectory: String

    public init(group: any EventLoopGroup, launcher: ChildLauncher, projectDirectory: String) {
        self.group = group
        self.launcher = launcher
        self.projectDirectory = projectDirectory
    }

    /// Probes every `interval` until healthy or unhealthy. `ready` is the notify-check's source:
    /// it returns true once the candidate has sent READY=1. Cancelling the task ends it at once,
    /// a probe under way included (the candidate was superseded, stopped or exited).
    public func verdict(
        check: HealthCheck, port: Int?, startedAt: Moment, now: @Sendable () -> Moment,
        ready: @Sendable () -> Bool
    ) async -> HealthTracker.Verdict {
        var tracker = HealthTracker(check: check, startedAt: startedAt)
        // A fast server is up within milliseconds: probe at 5, 10, 20, 40 ms… up to `interval`,
        // so the swap does not wait a whole interval after the first refused probe.
        var pause = min(Duration.milliseconds(5), check.interval)
        while !Task.isCancelled {
            let result = await self.probe(check, port: port, ready: ready)
            // A probe cut short by the cancellation says nothing about the server.
            if Task.isCancelled { break }
            let verdict = tracker.record(result, at: now())
            if verdict != .pending { return verdict }
            try? await Task.sleep(for: pause)
            // Capped as it grows, not only where it is used: doubled without bound, a server
            // that takes seconds to start overflowed Duration within ~70 probes and trapped.
            pause = min(pause * 2, check.interval)
        }
        return .unhealthy("probing cancelled")
    }

    /// One probe.
    public func probe(_ check: HealthCheck, port: Int?, ready: @Sendable () -> Bool) async -> ProbeResult {
        switch check.kind {
        case .none:
            return .success
        case .notify:
            return ready() ? .success : .notReady("no READY=1 yet")
        case .tcp:
            guard let port else { return .failure("no port to probe (restart mode without a listen port)") }
            do {
                let channel = try await self.connect(port: port, timeout: check.timeout) { _ in }
                try? await channel.close()
                return .success
            } catch {
                return .notReady("nothing accepts connections on 127.0.0.1:\(port) yet")
            }
        case .http(let path):
            guard let port else { return .failure("no port to probe") }
            return await self.httpProbe(port: port, path: path, timeout: check.timeout)
        case .exec(let command):
            return await self.execProbe(command, port: port, timeout: check.timeout)
        }
    }

    private func connect(
        port: Int, timeout: Duration, _ initialize: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> any Channel {
        try await ClientBootstrap(group: self.group)
            .connectTimeout(TimeAmount(saturating: timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try initialize(channel) }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    private func httpProbe(port: Int, path: String, timeout: Duration) async -> ProbeResult {
        let loop = self.group.next()
        let status = loop.makePromise(of: Int.self)
        let channel: any Channel
        do {
            channel = try await self.connect(port: port, timeout: timeout) { channel in
                try channel.pipeline.syncOperations.addHandler(StatusLineHandler(status: status))
            }
        } catch {
            status.fail(error)
            return .notReady("nothing accepts connections on 127.0.0.1:\(port) yet")
        }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUser-Agent: safe-watch\r\nConnection: close\r\n\r\n"
        channel.writeAndFlush(channel.allocator.buffer(string: request), promise: nil)
        let deadline = loop.scheduleTask(in: TimeAmount(saturating: timeout)) {
            status.fail(ProbeTimeout())
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        do {
            let code = try await withTaskCancellationHandler {
                try await status.futureResult.get()
            } onCancel: {
                status.fail(CancellationError())
            }
            if (200...399).contains(code) { return .success }
            return .failure("GET \(path) answered \(code); health.path must answer 200–399")
        } catch is ProbeTimeout {
            return .failure("GET \(path) did not answer within \(timeout.humanReadable) (health.timeout)")
        } catch {
            return .notReady("GET \(path): connection closed without an answer")
        }
    }

    private func execProbe(_ command: String, port: Int?, timeout: Duration) async -> ProbeResult {
        var environment = inheritedEnvironment()
        if let port { environment["PORT"] = String(port) }
        let process: ProcessHandle
        do {
            process = try await self.launcher.start(
                executable: "/bin/sh", arguments: ["-c", command], environment: environment,
                workingDirectory: self.projectDirectory, output: nil, deathSignal: SIGKILL)
        } catch {
            return .failure("cannot run health.command: \(error)")
        }
        switch await process.exitStatus(within: timeout, orElse: .killGroup) {
        case .exited(0): return .success
        case nil: return .failure("health.command did not finish within \(timeout.humanReadable)")
        case .some(let status): return .notReady("health.command ended with \(status)")
        }
    }
}

private struct ProbeTimeout: Error {}

/// Reads just the status line of an HTTP response.
private final class StatusLineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let status: EventLoopPromise<Int>
    private var received = ""

    init(status: EventLoopPromise<Int>) {
        self.status = status
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received += buffer.readString(length: buffer.readableBytes) ?? ""
        guard let end = self.received.firstIndex(of: "\r\n") ?? self.received.firstIndex(of: "\n") else {
            if self.received.count > 8192 { self.status.fail(ProbeTimeout()) }
            return
        }
        let parts = self.received[..<end].split(separator: " ")
        if parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) {
            self.status.succeed(code)
        } else {
            self.status.succeed(0)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.status.fail(ChannelError.eof)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.status.fail(error)
        context.close(promise: nil)
    }
}
