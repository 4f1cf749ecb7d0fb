import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import SafeWatch
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

struct SafeWatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "safe-watch",
        abstract: "Rebuild a server on every save and swap it in only once the new build is healthy.",
        discussion: """
            safe-watch watches the project, runs the build in the background while the current server \
            keeps serving, leaves that server untouched when the build fails, starts the new binary beside \
            the old one, health-checks it, and only then moves traffic over.
            """,
        version: "0.1.0",
        subcommands: [
            Run.self, Status.self, Rebuild.self, Rollback.self, Stop.self, Events.self, Init.self, DoctorCommand.self, Migrations.self,
        ],
        defaultSubcommand: Run.self
    )
}

extension SafeWatchCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch, build, health-check and swap (the default subcommand).",
            discussion: """
                With no safe-watch.toml, the package's executable product is built and run with the \
                defaults; a product that uses Vapor or Hummingbird runs with that framework's settings \
                (the port in its arguments or HTTP_PORT, a tcp health check), and the first lines say so. \
                `safe-watch init` writes those settings into safe-watch.toml.
                """)

        @OptionGroup var project: ConfiguredProjectOptions

        @Option(name: .long, help: "The executable product to build and run.")
        var product: String?

        @Option(
            name: .long,
            help: ArgumentHelp(
                "How traffic reaches the server: proxy (HTTP/1.1, each request to the newest generation), tcp (each new connection joined byte for byte to the newest generation, which keeps it until it closes: HTTP/2, gRPC, databases; no per-request routing), socket (servers get the listening socket as fd 3) or restart (the server binds the port itself).",
                valueName: "mode"))
        var mode: ServeMode?

        @Option(
            name: .long, help: ArgumentHelp("The public address, e.g. 127.0.0.1:8080.", valueName: "host:port"),
            transform: { try OptionValue.listenAddress($0) })
        var listen: ListenAddress?

        @Option(name: .long, help: ArgumentHelp("The build command (run with /bin/sh -c).", valueName: "command"))
        var buildCommand: String?

        @Option(name: .long, help: ArgumentHelp("The binary the build produces, relative to the project.", valueName: "path"))
        var binary: String?

        @Option(
            name: .long, help: ArgumentHelp("Quiet time after the last change before building (default 50ms).", valueName: "duration"),
            transform: { try OptionValue.duration($0) })
        var debounce: Duration?

        /// After `validate()`, SAFE_WATCH_POLL's setting when the flag is not given.
        @Option(
            name: .long,
            help: ArgumentHelp(
                "Poll the tree with stat instead of inotify: --poll (every 500ms), --poll=2s, --poll=auto (only file systems that lose inotify events, the default), --poll=off. Also SAFE_WATCH_POLL. New, deleted and renamed files and edits of recently changed ones are seen within 2 intervals, any edit within 4 s.",
                valueName: "interval"),
            transform: { try OptionValue.pollSetting($0) })
        var poll: PollSetting?

        @Flag(name: .long, help: "Log debug details.")
        var verbose = false

        @Flag(
            name: .long,
            help: "Stay root on a project another user owns (by default safe-watch started as root becomes the project directory's owner first). Also SAFE_WATCH_KEEP_ROOT=1.")
        var keepRoot = false

        @Option(
            name: .long,
            help: ArgumentHelp(
                "terminal (one line per event, colours on a TTY unless NO_COLOR), json (one JSON object per line, as `safe-watch events` prints), or journal. Default: journal under systemd, else terminal.",
                valueName: "format"))
        var logFormat: LogFormat?

        enum LogFormat: String, ExpressibleByArgument {
            case terminal, json, journal
        }

        mutating func validate() throws {
            // The flag wins over the environment, which wins over the file. SAFE_WATCH_POLL is read
            // once, here, and refused when it is wrong even if the flag overrides it (it would
            // apply to the next start without the flag).
            if let environment = ProcessInfo.processInfo.environment["SAFE_WATCH_POLL"], !environment.isEmpty {
                let fromEnvironment: PollSetting
                do {
                    fromEnvironment = try OptionValue.pollSetting(environment)
                } catch {
                    throw ValidationError("SAFE_WATCH_POLL: \(error)")
                }
                self.poll = self.poll ?? fromEnvironment
            }
        }

        /// CLI flags win over the file, on start and on every reload.
        var overrides: @Sendable (inout Configuration) -> Void {
            let (product, mode, listen, buildCommand, binary, debounce, poll) =
                (self.product, self.mode, self.listen, self.buildCommand, self.binary, self.debounce, self.poll)
            return { configuration in
                if let product { configuration.product = product }
                if let mode { configuration.serve.mode = mode }
                if let listen { configuration.serve.listen = listen }
                if let buildCommand { configuration.build.command = buildCommand }
                if let binary { configuration.build.binary = binary }
                if let debounce { configuration.watch.debounce = debounce }
                if let poll { configuration.watch.poll = poll }
            }
        }

        func run() async throws {
            let level: Logger.Level = self.verbose ? .debug : .info
            // As a systemd service stderr is the journal's stream: structured entries say more.
            let format = self.logFormat ?? (JournalLogHandler.isWanted ? .journal : .terminal)
            let events = EventLog()
            LoggingSystem.bootstrap { label in
                // Every line also goes to the event log, for `safe-watch events`.
                var handlers: [any LogHandler] = [EventLogHandler(log: events)]
                switch format {
                case .journal: handlers.append(JournalLogHandler())
                case .terminal: handlers.append(TerminalLogHandler(label: label))
                case .json: break  // written from the event log below, with the same numbers
                }
                var handler = MultiplexLogHandler(handlers)
                handler.logLevel = level
                return handler
            }
            if format == .json {
                _ = events.subscribe(since: 0) { TerminalLogHandler.write($0, to: 2) }
            }
            let code = await self.supervise(events: events)
            // Not exit(): its teardown races libdispatch's manager thread, which then crashes
            // (SIGSEGV in _dispatch_event_loop_drain, seen here about one exit in four). Every
            // line was written with write(2), so nothing buffered is lost.
            _exit(code)
        }

        private func supervise(events: EventLog) async -> Int32 {
            let logger = Logger(label: "safe-watch")
            let launcher = ChildLauncher()
            do {
                try becomeChildSubreaper()
            } catch {
                logger.warning("cannot become a child subreaper: \(error)")
            }
            if let code = self.actAsTheProjectsOwner(logger: logger) { return code }
            Reaper.shared.start()
            // A stop signal starts its deadline here, on the signal queue, as it arrives: the event
            // loop that acts on it may be the part that is stuck.
            let signals = signalStream(onArrival: { signal in
                if HardStop.stops(signal) { HardStopTimer.shared.arm(signal: signal) }
            })

            let project: Project
            do {
                project = try await ProjectLoader(
                    directory: self.project.given, configurationFile: self.project.config, launcher: launcher,
                    overrides: self.overrides
                ).load()
            } catch {
                writeToStandardError("safe-watch: \(error)\n")
                return error.exitCode
            }
            HardStopTimer.shared.configure(
                stopTimeout: project.configuration.run.stopTimeout, generationsDirectory: project.stateDirectory + "/generations/")

            let controlPath = project.controlSocketPath
            var controlWarnings: [String] = []
            var controlSocket: Int32?
            try? FileManager.default.createDirectory(atPath: project.stateDirectory, withIntermediateDirectories: true)
            if let problem = ControlSocket.ownershipProblem(directory: project.stateDirectory) {
                controlWarnings.append(problem)
            } else {
                // One safe-watch per project: a second one would take the first one's servers for
                // leftovers of a killed safe-watch and stop them.
                let alreadyRunning: Bool
                do {
                    alreadyRunning = try !InstanceLock.acquire(directory: project.stateDirectory)
                } catch {
                    alreadyRunning = false
                    controlWarnings.append("cannot lock \(project.stateDirectory): \(error); a second safe-watch for this project would not be refused")
                }
                switch ControlSocket.probe(path: controlPath) {
                case .live(let pid):
                    let who = pid.map { " (pid \($0))" } ?? ""
                    writeToStandardError(
                        "safe-watch: safe-watch is already running for \(project.directory)\(who); see `safe-watch status`, or stop it with `safe-watch stop`\n")
                    return StartupError.unavailable
                case _ where alreadyRunning:
                    writeToStandardError(
                        "safe-watch: safe-watch is already running for \(project.directory) (it holds \(project.stateDirectory)/lock); see `safe-watch status`\n")
                    return StartupError.unavailable
                case .unusable(let error):
                    writeToStandardError(
                        "safe-watch: cannot tell whether a safe-watch already runs for \(project.directory): \(controlPath): \(error); if none runs, remove that file\n")
                    return StartupError.unavailable
                case .stale:
                    controlWarnings.append("replaced \(controlPath), left by a safe-watch that did not stop cleanly")
                case .none:
                    break
                }
                do {
                    controlSocket = try ControlSocket.bind(path: controlPath)
                } catch {
                    controlWarnings.append("no control socket (`safe-watch status` will not reach this safe-watch): \(error)")
                }
            }

            let manager = ServiceManager()
            let sockets: PublicSockets
            do {
                sockets = try PublicSockets.open(project.configuration.serve, manager: manager)
            } catch {
                if controlSocket != nil { unlink(controlPath) }
                writeToStandardError("safe-watch: \(error)\n")
                return error.exitCode
            }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopCount(forCores: System.coreCount))
            let router = TrafficRouter()
            let (browserSettings, browserNotice) = project.liveReloadSettings(
                listenAddresses: sockets.sockets.isEmpty ? [project.configuration.serve.listen] : sockets.sockets.map(\.address))
            let browser = browserSettings.map { BrowserEndpoints(
                    settings: $0, projectDirectory: project.directory, watchedPaths: project.configuration.watch.paths, events: events) }
            var listeners: [ProxyListener] = []
            if project.configuration.serve.mode.forwardsToPrivatePort {
                for socket in sockets.sockets {
                    do {
                        let holdTimeout = project.configuration.serve.holdTimeout
                        if project.configuration.serve.mode == .tcp {
                            listeners.append(try await TCPProxy.start(socket: socket.fd, holdTimeout: holdTimeout, router: router, group: group))
                        } else {
                            listeners.append(
                                try await HTTPProxy.start(
                                    socket: socket.fd, holdTimeout: holdTimeout,
                                    addsForwardingFields: project.configuration.serve.forwardedHeaders, router: router, group: group,
                                    browser: browser))
                        }
                    } catch {
                        try? await group.shutdownGracefully()
                        if controlSocket != nil { unlink(controlPath) }
                        writeToStandardError("safe-watch: cannot serve on \(socket.address): \(error)\n")
                        return StartupError.unavailable
                    }
                }
            }
            let address = sockets.sockets.first?.address ?? project.configuration.serve.listen
            let scheme = project.configuration.serve.mode.addressScheme
            let publicAddress = "\(scheme)://\(address)"
            let reporter = Reporter(logger: logger, publicAddress: publicAddress)
            router.onConnectionFailure { reporter.warning($0) }
            for warning in sockets.warnings + controlWarnings { reporter.warning(warning) }
            let origin = sockets.sockets.isEmpty ? "" : " · socket \(sockets.origin)"
            reporter.info(
                "safe-watch \(SafeWatchCommand.configuration.version) · \(project.directory)\(origin) · \(project.configuration.serve.mode.rawValue) mode on \(publicAddress)")
            if let framework = project.framework, let product = project.configuration.product {
                reporter.info(framework.assumption(product: product))
            }
            let runtime = SupervisorRuntime(
                project: project, reporter: reporter, router: router, group: group,
                sharedSockets: project.configuration.serve.mode == .socket ? sockets.sockets : [], serviceManager: manager,
                publicAddresses: (sockets.sockets.isEmpty ? [address] : sockets.sockets.map(\.address)).map { "\(scheme)://\($0)" })
            if let browserNotice { reporter.info(browserNotice) }
            browser?.use(answer: { await runtime.answer($0) }, say: { reporter.info($0) })
            let control = ControlEndpoint()
            if let controlSocket {
                do {
                    await control.use(
                        try await ControlServer.start(
                            fd: controlSocket, path: controlPath, group: group, events: events, answer: { await runtime.answer($0) }))
                } catch {
                    // Nobody would accept on it: the next `status` would wait, the next safe-watch
                    // would take it for a live one.
                    close(controlSocket)
                    unlink(controlPath)
                    reporter.warning("no control socket (`safe-watch status` will not reach this safe-watch): \(error)")
                }
            }
            let stateDirectory = project.stateDirectory
            await runtime.onStateDirectoryRecreated {
                // The lock and the socket went with the directory: without them a second
                // safe-watch would start on this project and `status` would not reach this one.
                do {
                    if try !InstanceLock.acquire(directory: stateDirectory) {
                        reporter.warning("another safe-watch took \(stateDirectory)/lock while it was gone; stop one of them")
                    }
                } catch {
                    reporter.warning("cannot lock \(stateDirectory) again: \(error)")
                }
                guard controlPath.hasPrefix(stateDirectory + "/") else { return }  // it lives elsewhere (long paths)
                do {
                    let fd = try ControlSocket.bind(path: controlPath)
                    do {
                        await control.use(
                            try await ControlServer.start(
                                fd: fd, path: controlPath, group: group, events: events, answer: { await runtime.answer($0) }))
                    } catch {
                        Glibc.close(fd)
                        unlink(controlPath)
                        throw error
                    }
                } catch {
                    reporter.warning("no control socket any more (`safe-watch status` will not reach this safe-watch): \(error)")
                }
            }
            let code: Int32
            do {
                code = try await runtime.run(signals: signals)
            } catch {
                writeToStandardError("safe-watch: \(error)\n")
                code = StartupError.osError
            }
            for listener in listeners { await listener.close() }
            await control.close()
            try? await group.shutdownGracefully()
            return code
        }

        /// Before anything is created in the project: root becomes the project directory's owner
        /// (OwnerSwitch), and a project directory that cannot hold `.safe-watch` stops safe-watch
        /// with the reason rather than failing later in every build. An exit code, or nil to go on.
        private func actAsTheProjectsOwner(logger: Logger) -> Int32? {
            let directory = self.project.directory
            let environment = ProcessInfo.processInfo.environment
            let keepRoot = self.keepRoot || OwnerSwitch.keepRoot(environmentValue: environment[OwnerSwitch.environmentVariable])
            let owner = Privileges.owner(of: directory)
            let decision = OwnerSwitch.decide(
                effectiveUID: geteuid(), projectOwner: owner, keepRoot: keepRoot,
                underServiceManager: OwnerSwitch.underServiceManager(environment: environment))
            if case .become(let uid, let gid) = decision {
                // Left by an earlier safe-watch or build as root, or created by Docker as root (the
                // `.build` named volume and its mount point): the owner's from now on.
                for leftover in [directory + "/.safe-watch", directory + "/.build"] where Privileges.owner(of: leftover)?.uid == 0 {
                    Privileges.giveTree(leftover, uid: uid, gid: gid)
                }
                do {
                    try Privileges.become(uid: uid, gid: gid)
                } catch {
                    writeToStandardError("safe-watch: cannot become the owner of \(directory) (uid \(uid)): \(error); run it as that user, or pass \(OwnerSwitch.flag)\n")
                    return StartupError.osError
                }
                logger.info("\(OwnerSwitch.announcement(uid: uid, gid: gid, name: Privileges.userName(of: uid), directory: directory))")
                // Started again as the owner, it decides to stay and goes on from here.
                let failure = Privileges.runAgain(arguments: CommandLine.arguments)
                writeToStandardError("safe-watch: cannot start again as uid \(uid): \(failure); run it as that user, or pass \(OwnerSwitch.flag)\n")
                return StartupError.osError
            }
            // A missing project is the loader's to report (exit 66).
            guard owner != nil else { return nil }
            let stateDirectory = directory + "/.safe-watch"
            if mkdir(stateDirectory, 0o755) != 0, errno != EEXIST {
                let reason = String(cString: strerror(errno))
                writeToStandardError(
                    "safe-watch: \(StateDirectoryProblem.message(directory: directory, stateDirectory: stateDirectory, reason: reason, uid: geteuid(), ownerUID: Privileges.owner(of: directory)?.uid))\n")
                return StateDirectoryProblem.exitCode
            }
            // Left by a safe-watch run as another user (`sudo safe-watch` once): nothing could be
            // staged there, so no build would ever serve. Staging makes and removes generations
            // (`.safe-watch` itself only while `generations` is not there yet); a `.safe-watch`
            // another user owns costs only the lock and the control socket, said later.
            let generations = stateDirectory + "/generations"
            let staging = FileManager.default.fileExists(atPath: generations) ? generations : stateDirectory
            if let unwritable = Privileges.firstUnwritableDirectory(in: staging, descending: staging == generations) {
                writeToStandardError(
                    "safe-watch: \(StateDirectoryProblem.foreignMessage(stateDirectory: stateDirectory, unwritable: unwritable, uid: geteuid(), ownerUID: Privileges.owner(of: unwritable)?.uid))\n")
                return StateDirectoryProblem.exitCode
            }
            return nil
        }
    }
}

extension SafeWatchCommand {
    /// `--poll` alone means "poll at the default interval". ArgumentParser's `defaultAsFlag` is not
    /// used for it: it falls back to the bare flag when a value does not parse, so `--poll=often`
    /// would quietly mean 500 ms. Instead a bare `--poll`, last or followed by another option,
    /// becomes `--poll=500ms`; whatever else follows it is its value, checked as any value is.
    static func normalized(_ arguments: [String]) -> [String] {
        let milliseconds = Int(PollSetting.automaticInterval / Duration.milliseconds(1))
        return arguments.indices.map { (index: Int) -> String in
            guard arguments[index] == "--poll" else { return arguments[index] }
            let next: String? = arguments.indices.contains(index + 1) ? arguments[index + 1] : nil
            if let next, !next.hasPrefix("-") { return "--poll" }
            return "--poll=\(milliseconds)ms"
        }
    }

    /// What AsyncParsableCommand.main() does; by hand because main.swift cannot be `@main`.
    static func parseAndRun() async {
        do {
            var command = try SafeWatchCommand.parseAsRoot(Self.normalized(Array(CommandLine.arguments.dropFirst())))
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            SafeWatchCommand.exit(withError: error)
        }
    }
}

/// The control server in force: made again when `.safe-watch`, where its socket lives, is
/// deleted and recreated under a running safe-watch.
actor ControlEndpoint {
    private var server: ControlServer?

    /// Serves with `server` from now on; the one before (its socket file already gone) is closed.
    func use(_ server: ControlServer) async {
        let previous = self.server
        self.server = server
        await previous?.close()
    }

    func close() async {
        await self.server?.close()
        self.server = nil
    }
}
