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

        // Order matters: read the environment (and unset LISTEN_*) and block
        // the shutdown signals while this is still the only thread.
        let config = loadConfig(arguments: CommandLine.arguments)
        _ = server  // create the shared state (and its pipe) up front
        installSignalHandling()

        // Simulated slow startup. A SIGTERM meanwhile still stops us promptly.
        if config.startupDelay > 0 && server.waitForShutdown(seconds: config.startupDelay) {
            stop()
        }

        let listener: Int32
        do {
            listener = config.inheritedListener
                ? try adoptInheritedListener()
                : try bindListener(host: config.host, port: config.port)
        } catch {
            log("error: \(error.message)")
            exit(1)
        }

        // The one line supervisors and tests wait for.
        writeAll(1, "hello-server \(version) listening on \(localAddress(of: listener))\n")
        if let notifySocket = config.notifySocket {
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

        acceptConnections(on: listener)

        // Shutdown has begun: no new connections. Idle keep-alive connections
        // close themselves; give in-flight requests time to finish.
        close(listener)
        let remaining = server.waitForConnectionsToClose(seconds: shutdownGracePeriod)
        if remaining > 0 {
            log("\(remaining) connection(s) still open after \(shutdownGracePeriod) s, exiting anyway")
        }
        stop()
    }

    /// Accepts connections, one thread each, until shutdown begins.
    private static func acceptConnections(on listener: Int32) {
        var entries = [
            pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
            pollfd(fd: server.shutdownFD, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            if poll(&entries, 2, -1) < 0 { continue }  // EINTR
            if entries[1].revents != 0 { return }

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
                    break  // EAGAIN, ECONNABORTED, EINTR, ...: just try again
                }
                continue
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
    }

    private static func stop() -> Never {
        writeAll(1, "hello-server \(version) stopped\n")
        exit(0)
    }
}
