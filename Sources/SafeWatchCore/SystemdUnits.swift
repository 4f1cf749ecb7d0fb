/// The user units that run safe-watch as a systemd service. Pure text: `safe-watch
/// init --systemd` fills in the real paths, and `systemd/` in the repository holds the same text
/// with example paths (a test keeps the two equal).
public struct SystemdUnits: Equatable, Sendable {
    public static let serviceName = "safe-watch.service"
    public static let socketName = "safe-watch.socket"

    /// safe-watch's absolute path.
    public var executable: String
    /// The project's absolute path.
    public var projectDirectory: String
    /// The public address the socket unit listens on.
    public var listen: ListenAddress
    /// PATH for the build: a user manager's own PATH rarely has the Swift toolchain on it.
    public var path: String

    public init(executable: String, projectDirectory: String, listen: ListenAddress, path: String) {
        self.executable = executable
        self.projectDirectory = projectDirectory
        self.listen = listen
        self.path = path
    }

    /// systemd quotes: a path with spaces in ExecStart= must be quoted; `%` is a specifier.
    static func escaped(_ text: String) -> String {
        let specifiersEscaped = text.replacing("%", with: "%%")
        guard specifiersEscaped.contains(where: { $0 == " " || $0 == "\"" || $0 == "\\" }) else { return specifiersEscaped }
        return "\"" + specifiersEscaped.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
    }

    public var service: String {
        """
        # safe-watch as a systemd user service: rebuilds the dev server on every save and swaps the new
        # build in only once it is healthy. Written by `safe-watch init --systemd`.
        [Unit]
        Description=safe-watch dev server supervisor for \(self.projectDirectory.replacing("%", with: "%%"))
        # The public socket lives in the socket unit: connections wait in its queue while safe-watch
        # (re)starts, and requests are never refused.
        Requires=\(Self.socketName)
        After=\(Self.socketName)

        [Service]
        Type=notify
        # Only safe-watch itself speaks for the unit; its servers get their own notify sockets.
        NotifyAccess=main
        ExecStart=\(Self.escaped(self.executable)) run --project \(Self.escaped(self.projectDirectory))
        ExecReload=/bin/kill -HUP $MAINPID
        WorkingDirectory=\(Self.escaped(self.projectDirectory))
        # The PATH `safe-watch init` ran with, so the build finds the Swift toolchain.
        Environment=\(Self.escaped("PATH=" + self.path))
        # safe-watch sends WATCHDOG=1 every half period from its own event loop: a wedged supervisor
        # is killed and restarted, a long build is not.
        WatchdogSec=30s
        # Not the default SIGABRT: Swift's crash backtracer catches it, prints a backtrace and lets
        # the process carry on, and a frozen process acts on no signal but SIGKILL.
        WatchdogSignal=SIGKILL
        # The first build can take minutes; safe-watch extends this while it runs (EXTEND_TIMEOUT_USEC).
        TimeoutStartSec=90s
        # Longer than run.stop_timeout + 5 s, after which safe-watch kills its servers and exits by
        # itself; if it has not, it gets SIGKILL.
        TimeoutStopSec=30s
        # Signals go to safe-watch alone: on SIGTERM it stops builds and drains its servers in order.
        # If it is killed (watchdog, TimeoutStopSec), its servers get SIGTERM from the kernel and
        # finish their in-flight requests while the next safe-watch starts, which gives whatever still
        # runs run.stop_timeout, then SIGKILL. (mixed or control-group would SIGKILL the servers the
        # moment safe-watch dies and reset those requests.)
        KillMode=process
        Restart=on-failure
        RestartSec=1s
        # safe-watch parks the listener it binds here (FDSTORE=1) when there is no socket unit.
        FileDescriptorStoreMax=4

        [Install]
        WantedBy=default.target

        """
    }

    public var socket: String {
        """
        # The public address of safe-watch.service, held by systemd. Written by `safe-watch init --systemd`.
        [Unit]
        Description=safe-watch public listener for \(self.projectDirectory.replacing("%", with: "%%"))

        [Socket]
        ListenStream=\(self.listen)
        # safe-watch takes every socket passed; set serve.socket_name to pick one by this name.
        FileDescriptorName=http
        NoDelay=true
        Backlog=1024

        [Install]
        WantedBy=sockets.target

        """
    }

    /// What to run after the units are written.
    public static let enableCommands = [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now \(socketName) \(serviceName)",
    ]
}
