import Foundation
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// Starts one generation's server and tells whether it is healthy: its port (or the shared
/// sockets), environment and notify socket, the spawn, the wait for its exit, and the probing.
///
/// Each step is an async function that ends with its answer; the runtime runs them in tasks it
/// owns (so it can cancel the probing of a candidate that was superseded) and turns the answers
/// into events.
struct ServerLauncher: Sendable {
    let launcher: ChildLauncher
    let prober: Prober
    let stager: Stager
    let reporter: Reporter
    let projectDirectory: String
    let stateDirectory: String
    /// Socket mode: the listening sockets every generation gets as fds 3….
    let sharedSockets: [PublicSockets.Socket]
    /// Where clients reach safe-watch, to say what a server that did not take its port should do.
    let publicAddresses: [String]

    /// What a launch needs, worked out before anything is spawned.
    struct Plan: Sendable {
        var generation: Generation
        var executable: String
        var arguments: [String]
        var environment: [String: String]
        /// The private port in proxy and tcp mode (in socket mode the health port, if the check
        /// needs one), the public one in restart mode.
        var port: Int?
        var notifySocket: NotifySocket?
        var handoff: PortHandoff
        var check: HealthCheck
        /// When the launch began, on the supervisor's time line (the startup timeout counts from it).
        var startedAt: Moment
    }

    /// A spawned server and what its exit and its probing need.
    struct Started: Sendable {
        var server: ServerProcess
        var plan: Plan
        /// Finishes when the server's output pipe closes.
        var outputEnded: AsyncStream<Void>
    }

    /// Why a candidate cannot start, as the line that discards it says.
    struct Failure: Error {
        var reason: String
    }

    /// The plan for `generation` under `configuration`; nil when there is no binary to run (the
    /// build already said so).
    func plan(_ generation: Generation, configuration: Configuration, at startedAt: Moment) throws(Failure) -> Plan? {
        guard let binary = configuration.binaryPath else { return nil }
        let executable = self.stager.executable(of: generation, binaryName: (binary as NSString).lastPathComponent)
        let port: Int?
        switch configuration.serve.mode {
        case .proxy, .tcp, .socket:
            // Proxy and tcp mode: the port traffic goes to. Socket mode: a private health port, only when
            // the check needs one (never the shared socket, which the old server answers too).
            if configuration.serve.mode == .socket, !configuration.health.needsPort {
                port = nil
                break
            }
            do {
                port = try freeLoopbackPort()
            } catch {
                throw Failure(reason: "no free port for it: \(error)")
            }
        case .restart:
            port = configuration.serve.listen.port
        }
        var environment = inheritedEnvironment()
        environment.merge(configuration.run.env) { $1 }
        if !configuration.run.portEnv.isEmpty, let port {
            environment[configuration.run.portEnv] = String(port)
        }
        if !self.sharedSockets.isEmpty {
            // LISTEN_PID is set to the server's own pid by the spawn (setsListenPID).
            environment["LISTEN_FDS"] = String(self.sharedSockets.count)
            environment["LISTEN_FDNAMES"] = self.sharedSockets.map(\.name).joined(separator: ":")
        }
        let notifySocket: NotifySocket?
        if configuration.health.kind == .notify {
            let path = self.notifySocketPath(generation)
            do {
                notifySocket = try NotifySocket(path: path)
                environment["NOTIFY_SOCKET"] = path
            } catch {
                throw Failure(reason: "cannot create its notify socket: \(error)")
            }
        } else {
            notifySocket = nil
        }
        let arguments = configuration.run.args.map { argument in
            port.map { argument.replacing("{port}", with: String($0)) } ?? argument
        }
        let handoff = PortHandoff(
            port: port, mode: configuration.serve.mode, args: configuration.run.args, portEnv: configuration.run.portEnv,
            publicAddress: configuration.serve.mode == .restart
                ? nil : self.publicAddresses.first.map { address in address.range(of: "://").map { String(address[$0.upperBound...]) } ?? address })
        return Plan(
            generation: generation, executable: executable, arguments: arguments, environment: environment, port: port,
            notifySocket: notifySocket, handoff: handoff, check: configuration.health, startedAt: startedAt)
    }

    /// Spawns the server; its output is reported as it comes.
    func start(_ plan: Plan) async throws(Failure) -> Started {
        let generation = plan.generation
        let reporter = self.reporter
        let (outputEnded, finishOutput) = AsyncStream<Void>.makeStream()
        let tail = OutputTail(notable: PortHandoff.isNotable)
        let process: ProcessHandle
        do {
            let output = try OutputPipe(label: "safe-watch.gen\(generation)")
            output.start(
                onLine: { line in
                    reporter.serverOutput(generation, line)
                    tail.append(line)
                }, onClose: { finishOutput.finish() })
            process = try await self.launcher.start(
                executable: plan.executable, arguments: plan.arguments, environment: plan.environment,
                workingDirectory: self.projectDirectory, output: output, deathSignal: SIGTERM,
                passedDescriptors: self.sharedSockets.map(\.fd), setsListenPID: !self.sharedSockets.isEmpty)
        } catch {
            plan.notifySocket?.close()
            // "cannot run PROGRAM: REASON" names the program already.
            throw Failure(reason: error.isExecFailure ? "\(error)" : "cannot start \(plan.executable): \(error)")
        }
        let server = ServerProcess(generation: generation, process: process, port: plan.port, output: tail, handoff: plan.handoff)
        plan.notifySocket?.start { lines in
            if lines.contains("READY=1") { server.markReady() }
        }
        return Started(server: server, plan: plan, outputEnded: outputEnded)
    }

    /// Waits for the server to exit and returns how it did, once its last lines are reported.
    func waitForExit(_ started: Started) async -> ExitStatus {
        let status = await Reaper.shared.wait(for: started.server.pid)
        // Its last lines before the line that says it stopped; a grandchild that keeps the pipe
        // open does not hold that up for long.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in started.outputEnded {} }
            group.addTask { try? await Task.sleep(for: .milliseconds(250)) }
            await group.next()
            group.cancelAll()
        }
        started.server.exited(status)
        started.plan.notifySocket?.close()
        return status
    }

    /// Probes the server until it is healthy or not. Nil when there is nothing to tell: it has
    /// exited (its exit says why), or its probing was cancelled (it was superseded or stopped).
    func verdict(_ started: Started, now: @escaping @Sendable () -> Moment) async -> HealthVerdict? {
        let server = started.server
        let plan = started.plan
        // A server that listens, but not on its port, hears so after a few seconds rather than at
        // the end of its startup_timeout (30 s by default); it is still given all of it, since a
        // server may bind another port (an admin one) first and its own later.
        let notice = Task { [reporter = self.reporter] in
            try? await Task.sleep(for: Self.listeningElsewhereNotice)
            guard !Task.isCancelled, plan.check.needsPort, !server.hasExited,
                let elsewhere = Self.listeningElsewhere(pid: server.pid, handoff: plan.handoff)
            else { return }
            reporter.warning("gen \(plan.generation) is not healthy yet: \(elsewhere)")
        }
        defer { notice.cancel() }
        let verdict = await self.prober.verdict(
            check: plan.check, port: plan.port, startedAt: plan.startedAt, now: now, ready: { server.isReady })
        guard !server.hasExited, !Task.isCancelled else { return nil }
        switch verdict {
        case .healthy:
            if let ownListeners = Self.listenersBesideSharedSockets(pid: server.pid, shared: self.sharedSockets, healthPort: plan.port) {
                return .unhealthy(ownListeners)
            }
            // A check that does not touch the port (exec, notify, none) passes a server that
            // listens elsewhere; traffic would go to a port nobody answers.
            if !plan.check.needsPort, let elsewhere = Self.listeningElsewhere(pid: server.pid, handoff: plan.handoff) {
                return .unhealthy(elsewhere)
            }
            return .healthy
        case .unhealthy(let reason):
            let elsewhere = Self.listeningElsewhere(pid: server.pid, handoff: plan.handoff).map { "; \($0)" } ?? ""
            return .unhealthy(reason + elsewhere)
        case .pending:
            return nil
        }
    }

    /// How long a candidate may listen elsewhere before it is told (`verdict`).
    static let listeningElsewhereNotice = Duration.seconds(3)

    enum HealthVerdict: Sendable {
        case healthy
        case unhealthy(String)
    }

    /// Socket mode: a server that binds its own port instead of serving on fd 3 would be healthy
    /// but never get the shared socket's traffic. Names what it listens on, or nil when all is well.
    private static func listenersBesideSharedSockets(pid: pid_t, shared: [PublicSockets.Socket], healthPort: Int?) -> String? {
        guard !shared.isEmpty else { return nil }
        let own = listenersOutsideSocketMode(
            serverSocketInodes: ListeningSockets.socketInodes(of: pid), listening: ListeningSockets.listeningTCP(),
            sharedInodes: Set(shared.compactMap { ListeningSockets.inode($0.fd) }), healthPort: healthPort)
        guard !own.isEmpty else { return nil }
        let addresses = own.map { "\($0.address):\($0.port)" }.joined(separator: ", ")
        return "it listens on \(addresses) itself instead of serving on the socket passed as fd 3 (LISTEN_FDS); "
            + "in socket mode the server must take its socket with sd_listen_fds, or use mode = \"proxy\" for servers that bind a port"
    }

    /// What a live candidate listens on, when that is not the port it was given (`PortHandoff`).
    private static func listeningElsewhere(pid: pid_t, handoff: PortHandoff) -> String? {
        let own = ListeningSockets.socketInodes(of: pid)
        guard !own.isEmpty else { return nil }
        return handoff.diagnoseListening(ListeningSockets.listeningTCP().filter { own.contains($0.inode) })
    }

    private func notifySocketPath(_ generation: Generation) -> String {
        let path = "\(self.stateDirectory)/notify-\(generation).sock"
        // sun_path holds 108 bytes; deep project paths fall back to /tmp.
        return path.utf8.count < 100 ? path : "/tmp/safe-watch-\(getpid())-\(generation).sock"
    }
}
