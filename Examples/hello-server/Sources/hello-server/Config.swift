import Glibc

/// Everything hello-server can be told, from its arguments and environment.
struct Config: Sendable {
    /// Address to bind when no socket is inherited.
    var host = "127.0.0.1"
    /// Port to bind when no socket is inherited (0 = let the kernel pick one).
    var port: UInt16 = 8080
    /// Use the listening socket inherited on fd 3 (systemd socket activation).
    var inheritedListener = false
    /// Seconds to wait before binding (`HELLO_STARTUP_DELAY`).
    var startupDelay: Double = 0
    /// Seconds of serving after which the process exits with status 1 (`HELLO_CRASH_AFTER`).
    var crashAfter: Double?
    /// Unix datagram socket to tell "READY=1" once listening (`NOTIFY_SOCKET`).
    var notifySocket: String?
}

let usage = """
    usage: hello-server [--port N] [--host ADDRESS]

    Endpoints: GET / (version), GET /health, GET /slow (~300 ms); other paths are 404.

    Environment:
      PORT                  port to listen on (--port wins; default 8080; 0 = any free port)
      LISTEN_FDS/LISTEN_PID serve on the listening socket inherited as fd 3 (socket activation)
      HELLO_STARTUP_DELAY   seconds to sleep before listening (fractions allowed)
      HELLO_EXIT_IMMEDIATELY=1  exit with status 3 at once
      HELLO_CRASH_AFTER     seconds of serving after which to exit with status 1
      HELLO_CRASH_VERSION   only crash (HELLO_CRASH_AFTER) when serving this version
      NOTIFY_SOCKET         unix datagram socket that receives READY=1 once listening

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
        case "--port", "-p": config.port = parsePort(value(), source: name)
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
