import Glibc
import SafeWatchCore
import SafeWatchSystem

/// The listening socket(s) the public address is served on: passed by systemd (a `.socket` unit,
/// or safe-watch's own listener back from the fd store), else bound from `serve.listen`.
public struct PublicSockets: Sendable {
    public struct Socket: Sendable {
        public var fd: Int32
        /// Its `LISTEN_FDNAMES` name when passed on in socket mode.
        public var name: String
        public var address: ListenAddress
    }

    public var sockets: [Socket]
    /// Where they came from, for the start line.
    public var origin: String
    /// Said once at start.
    public var warnings: [String]

    /// Takes the sockets systemd passed or binds `serve.listen`; parks a listener safe-watch bound
    /// itself in the fd store, so restarting safe-watch refuses no connection.
    public static func open(_ serve: Configuration.Serve, manager: ServiceManager) throws(StartupError) -> PublicSockets {
        let environment = { (name: String) in getenv(name).map { String(cString: $0) } }
        var activation = SocketActivation(
            listenPID: environment("LISTEN_PID"), listenFDs: environment("LISTEN_FDS"), names: environment("LISTEN_FDNAMES"),
            ownPID: getpid(), wantedName: serve.socketName)
        // Like sd_listen_fds(unset_environment: true): these were for safe-watch alone.
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"] { unsetenv(name) }
        for socket in activation.listeners + activation.unused { ListeningSockets.closeOnExec(socket.fd) }
        if let error = activation.error {
            throw StartupError(error, exitCode: StartupError.config)
        }
        if serve.mode == .restart, !activation.listeners.isEmpty {
            activation.warnings.append(
                "restart mode cannot use the sockets systemd passed (the server binds serve.listen itself); use mode = \"socket\" for them")
            activation.unused += activation.listeners
            activation.listeners = []
        }

        var sockets: [Socket] = []
        for passed in activation.listeners {
            guard ListeningSockets.isListeningStream(passed.fd) else {
                throw StartupError(
                    "fd \(passed.fd) (\(passed.name)) from systemd is not a listening stream socket: use ListenStream= in the .socket unit",
                    exitCode: StartupError.config)
            }
            let local = ListeningSockets.localAddress(passed.fd)
            let address = ListenAddress(host: local?.host ?? "?", port: local?.port ?? 0)
            // A listener parked before serve.listen changed is not the one wanted any more.
            if passed.name == SocketActivation.storedListenerName, serve.listen.port != 0, address != serve.listen {
                activation.warnings.append("the stored listener is on \(address), serve.listen is now \(serve.listen): binding the new address")
                activation.unused.append(passed)
                continue
            }
            sockets.append(Socket(fd: passed.fd, name: passed.name, address: address))
        }
        if activation.unused.contains(where: { $0.name == SocketActivation.storedListenerName }) {
            manager.removeStored(name: SocketActivation.storedListenerName)
        }
        for unused in activation.unused { _ = close(unused.fd) }

        let passed = !sockets.isEmpty
        if !passed, serve.mode != .restart {
            let fd: Int32
            do {
                fd = try ListeningSockets.bind(host: serve.listen.host, port: serve.listen.port)
            } catch {
                // An address in use has its advice in the error already.
                let advice = error.errno == .addressInUse ? "" : " — choose another with --listen or serve.listen"
                throw StartupError("cannot listen on \(serve.listen): \(error)\(advice)", exitCode: StartupError.unavailable)
            }
            let local = ListeningSockets.localAddress(fd)
            sockets.append(Socket(fd: fd, name: "listen", address: ListenAddress(host: serve.listen.host, port: local?.port ?? serve.listen.port)))
            // Parked in the fd store, it outlives safe-watch: connections wait in its queue while
            // safe-watch restarts, and the next one takes it back (systemd ignores duplicates).
            manager.store(fd, name: SocketActivation.storedListenerName)
        }
        if serve.mode == .socket {
            // Servers get the socket as it was bound: blocking (a proxy's earlier run may have
            // left the stored one non-blocking, and the flag is shared by every copy).
            for socket in sockets { _ = fcntl(socket.fd, F_SETFL, fcntl(socket.fd, F_GETFL) & ~O_NONBLOCK) }
        }
        let origin =
            !passed ? "bound by safe-watch"
            : activation.fromSocketUnit ? "systemd socket activation" : "systemd's fd store"
        return PublicSockets(sockets: sockets, origin: origin, warnings: activation.warnings)
    }
}
