import Glibc

/// How long a graceful shutdown waits for in-flight requests.
let shutdownGracePeriod = 10.0

@main
enum HelloServer {
    static func main() {
        // Test fixture: a server that dies before doing anything.
        if environment("HELLO_EXIT_IMMEDIATELY") == "1" {
            log("HELLO_EXIT_IMMEDIATELY=1: exiting with status 3")
            exit(3)
        }

        // Test fixture: a chatty server, to flood its supervisor's log.
        if let lines = environment("HELLO_CHATTER").flatMap({ Int($0) }), lines > 0 {
            let line = "chatter " + String(repeating: "·", count: 100) + "\n"
            for _ in 0..<lines { writeAll(1, line) }
        }

        // Order matters: read the environment (and unset LISTEN_*) and block
        // the shutdown signals while this is still the only thread.
        let config = loadConfig(arguments: CommandLine.arguments)
        _ = server  // create the shared state (and its pipe) up front
        installSignalHandling()

        // Simulated slow startup. A SIGTERM meanwhile still stops us promptly.
        if config.startupDelay > 0 && server.waitForShutdown(seconds: config.startupDelay) {
            stop()
        }

        let listeners: [Int32]
        do {
            listeners = try openListeners(config)
        } catch {
            log("error: \(error.message)")
            exit(1)
        }

        // The one line supervisors and tests wait for, printed once however
        // many listeners there are.
        var listening = "hello-server \(version) listening on \(localAddress(of: listeners[0]))"
        if listeners.count > 1 { listening += " (health on \(localAddress(of: listeners[1])))" }
        writeAll(1, listening + "\n")
        if config.suppressReady {
            log("HELLO_NO_READY=1: not sending READY=1" + (config.notifySocket.map { " to \($0)" } ?? ""))
        } else if let notifySocket = config.notifySocket {
            notifyReady(socketPath: notifySocket)
        }

        // Test fixture: a server that crashes after serving for a while.
        if let crashAfter = config.crashAfter {
            _ = spawnThread {
                if !server.waitForShutdown(seconds: crashAfter) {
                    log("HELLO_CRASH_AFTER=\(crashAfter): exiting with status 1")
                    exit(1)
                }
            }
        }

        acceptConnections(on: listeners)

        // Shutdown has begun: no new connections. Idle keep-alive connections
        // close themselves (after a short grace for one last request); give
        // in-flight requests time to finish.
        //
        // Only close() the listeners, never shutdown() them: the inherited
        // one may be shared with other processes, and shutdown() acts on the
        // socket itself (dropping its queued connections and failing accept()
        // in every process that holds it), whereas close() only drops this
        // process's reference.
        for listener in listeners { close(listener) }
        let remaining = server.waitForConnectionsToClose(seconds: shutdownGracePeriod)
        if remaining > 0 {
            log("\(remaining) connection(s) still open after \(shutdownGracePeriod) s, exiting anyway")
        }
        stop()
    }

    /// The sockets to serve on; the first is the one announced as "listening
    /// on". An inherited socket comes first, then (with PORT/--port as well)
    /// the private health listener on host:port.
    private static func openListeners(_ config: Config) throws(StartupError) -> [Int32] {
        guard config.inheritedListener else {
            return [try bindListener(host: config.host, port: config.port)]
        }
        let inherited = try adoptInheritedListener()
        guard config.wantsHealthListener else { return [inherited] }
        return [inherited, try bindListener(host: config.host, port: config.port)]
    }

    /// Accepts connections on every listener, one thread each, until
    /// shutdown begins. All listeners serve the same endpoints.
    private static func acceptConnections(on listeners: [Int32]) {
        var entries = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        entries.append(pollfd(fd: server.shutdownFD, events: Int16(POLLIN), revents: 0))
        while true {
            if poll(&entries, nfds_t(entries.count), -1) < 0 { continue }  // EINTR
            if entries[listeners.count].revents != 0 { return }
            for entry in entries.prefix(listeners.count) where entry.revents != 0 {
                acceptConnection(on: entry.fd)
            }
        }
    }

    /// Accepts one connection, if there is one, and starts its thread.
    private static func acceptConnection(on listener: Int32) {
        // (Glibc's accept4 is not visible to Swift; plain accept is fine
        // because this process never execs, so close-on-exec is moot.)
        let client = accept(listener, nil, nil)
        if client < 0 {
            switch errno {
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of resources: back off instead of spinning on a
                // listener that stays readable.
                log("accept: \(errnoDescription())")
                sleep(seconds: 0.05)
            default:
                break  // EAGAIN (another process sharing the socket won), ECONNABORTED, EINTR, ...
            }
            return
        }

        // A client that stops reading must not block a thread forever.
        var sendTimeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))

        server.connectionOpened()
        if !spawnThread({ serveConnection(client) }) {
            log("cannot start a thread for a new connection, dropping it")
            server.connectionClosed()
            close(client)
        }
    }

    private static func stop() -> Never {
        writeAll(1, "hello-server \(version) stopped\n")
        exit(0)
    }
}
