import Glibc

/// Everything hello-server can be told, from its arguments and environment.
struct Config: Sendable {
    /// Address to bind when no socket is inherited, or for the health listener.
    var host = "127.0.0.1"
    /// Port to bind when no socket is inherited, or for the health listener
    /// (0 = let the kernel pick one).
    var port: UInt16 = 8080
    /// `PORT` or `--port` was given. Beside an inherited socket this asks for
    /// a second, private listener on host:port (see `wantsHealthListener`).
    var portGiven = false
    /// Use the listening socket inherited on fd 3 (systemd socket activation).
    var inheritedListener = false
    /// Seconds to wait before binding (`HELLO_STARTUP_DELAY`).
    var startupDelay: Double = 0
    /// Seconds of serving after which the process exits with status 1 (`HELLO_CRASH_AFTER`).
    var crashAfter: Double?
    /// Unix datagram socket to tell "READY=1" once listening (`NOTIFY_SOCKET`).
    var notifySocket: String?
    /// Never send "READY=1", though listening and serving (`HELLO_NO_READY=1`).
    var suppressReady = false

    /// Serve on the inherited socket and also on a listener of our own.
    /// The inherited socket may be shared by several processes (say, two
    /// generations during a rolling restart), so a request to it can reach
    /// any of them; a private port lets a supervisor health-check this one.
    var wantsHealthListener: Bool { inheritedListener && portGiven }
}

let usage = """
    usage: hello-server [--port N] [--host ADDRESS]

    Serves on ADDRESS:N, or on the listening socket inherited as fd 3. Given both an
    inherited socket and --port/PORT, it serves on both: fd 3 is the public (possibly
    shared) socket and ADDRESS:N a private health port; the "listening on" line then
    ends with " (health on ADDRESS:PORT)".

    Endpoints: GET / (version), GET /health, GET /slow (~300 ms), GET /page (an HTML page);
    other paths are files under ./Public/ (with an ETag; 304 for If-None-Match) or 404.

    SIGTERM/SIGINT: stop accepting, let requests in flight finish (at most 10 s); an
    idle keep-alive connection still gets 1 s for one last request, answered with
    "Connection: close".

    Environment:
      PORT                  port to listen on (--port wins; default 8080; 0 = any free port);
                            beside an inherited socket, the private health port
      LISTEN_FDS/LISTEN_PID serve on the listening socket inherited as fd 3 (socket activation)
      HELLO_STARTUP_DELAY   seconds to sleep before listening (fractions allowed)
      HELLO_EXIT_IMMEDIATELY=1  exit with status 3 at once
      HELLO_CRASH_AFTER     seconds of serving after which to exit with status 1
      HELLO_CRASH_VERSION   only crash (HELLO_CRASH_AFTER) when serving this version
      NOTIFY_SOCKET         unix datagram socket that receives READY=1 once listening
      HELLO_NO_READY=1      never send READY=1 to NOTIFY_SOCKET (still listens and serves)
      HELLO_NO_READY_VERSION  only apply HELLO_NO_READY=1 when serving this version
      HELLO_CHATTER=N       print N lines of chatter to stdout before starting

    """

/// Reads an environment variable. Empty values count as unset, which is what
/// a user means by `HELLO_CRASH_AFTER= hello-server`.
func environment(_ name: String) -> String? {
    guard let raw = getenv(name) else { return nil }
    let value = String(cString: raw)
    return value.isEmpty ? nil : value
}

/// Parses arguments and environment, exiting with status 2 on bad input.
/// Must run before any thread is started: it calls `unsetenv`, which is not
/// thread-safe.
func loadConfig(arguments: [String]) -> Config {
    var config = Config()

    if let port = environment("PORT") {
        config.port = parsePort(port, source: "PORT")
        config.portGiven = true
    }

    // Arguments win over the environment.
    var rest = arguments.dropFirst()[...]
    while let argument = rest.popFirst() {
        // Accept both `--port 8080` and `--port=8080`.
        var name = argument
        var inlineValue: String?
        if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
            name = String(argument[..<equals])
            inlineValue = String(argument[argument.index(after: equals)...])
        }
        func value() -> String {
            if let inlineValue { return inlineValue }
            guard let next = rest.popFirst() else { usageError("\(name) needs a value") }
            return next
        }
        switch name {
        case "--port", "-p": config.port = parsePort(value(), source: name); config.portGiven = true
        case "--host": config.host = value()
        case "--help", "-h": writeAll(1, usage); exit(0)
        case "--version": writeAll(1, "hello-server \(version)\n"); exit(0)
        default: usageError("unknown argument '\(argument)'\n\(usage)")
        }
    }

    config.startupDelay = environment("HELLO_STARTUP_DELAY").map { parseSeconds($0, source: "HELLO_STARTUP_DELAY") } ?? 0
    config.crashAfter = environment("HELLO_CRASH_AFTER").map { parseSeconds($0, source: "HELLO_CRASH_AFTER") }
    // A crash limited to one version lets a test break only the newest generation (rollback).
    if let only = environment("HELLO_CRASH_VERSION"), only != version { config.crashAfter = nil }
    config.notifySocket = environment("NOTIFY_SOCKET")
    // Lets a test have a server that works but never reports ready, e.g. to
    // check that a supervisor's readiness timeout rolls the deploy back; the
    // version filter breaks only the newest generation, as above.
    config.suppressReady = environment("HELLO_NO_READY") == "1"
    if let only = environment("HELLO_NO_READY_VERSION"), only != version { config.suppressReady = false }

    // systemd socket activation: LISTEN_FDS=n means fds 3..<3+n are listening
    // sockets meant for the process whose pid is LISTEN_PID. A LISTEN_PID that
    // names another process means the variables leaked from an ancestor.
    if let count = environment("LISTEN_FDS").flatMap({ Int($0) }), count >= 1 {
        let pid = environment("LISTEN_PID")
        if pid == nil || pid.flatMap({ Int32($0) }) == getpid() {
            config.inheritedListener = true
            if count > 1 { log("LISTEN_FDS=\(count): serving on fd 3 only") }
        }
    }
    // Like sd_listen_fds(unset_environment: true): never pass these on.
    unsetenv("LISTEN_FDS")
    unsetenv("LISTEN_PID")
    unsetenv("LISTEN_FDNAMES")

    return config
}

private func parsePort(_ text: String, source: String) -> UInt16 {
    guard let port = UInt16(text) else { usageError("\(source): '\(text)' is not a port number (0-65535)") }
    return port
}

private func parseSeconds(_ text: String, source: String) -> Double {
    guard let seconds = Double(text), seconds.isFinite, seconds >= 0 else {
        usageError("\(source): '\(text)' is not a number of seconds")
    }
    return seconds
}

/// Reports a usage error and exits with status 2.
func usageError(_ message: String) -> Never {
    log("error: \(message)")
    exit(2)
}
