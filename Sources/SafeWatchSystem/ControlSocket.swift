import CSafeWatchShims
import Glibc

/// The control socket's file: `.safe-watch/control.sock`, a Unix stream socket only its owner can
/// connect to.
public enum ControlSocket {
    /// What is at the socket's path before safe-watch starts.
    public enum Existing: Equatable, Sendable {
        case none
        /// A socket file nobody listens on: a safe-watch that was killed left it.
        case stale
        /// Another safe-watch answers on it (its pid, from SO_PEERCRED).
        case live(pid: Int32?)
        /// Something is there that cannot be judged (another user's socket, a full queue): never
        /// taken for a leftover.
        case unusable(SystemError)
    }

    public static func probe(path: String) -> Existing {
        do {
            let fd = try connect(path: path)
            defer { _ = close(fd) }
            let pid = sw_peer_pid(fd)
            return .live(pid: pid > 0 ? pid : nil)
        } catch {
            return self.existing(afterFailing: error)
        }
    }

    /// What a failed connect to the socket's path says is there.
    public static func existing(afterFailing connect: SystemError) -> Existing {
        switch connect.errno {
        case ENOENT: .none
        // Only a socket nobody listens on refuses: anything else may be a live safe-watch.
        case ECONNREFUSED: .stale
        default: .unusable(connect)
        }
    }

    /// Why safe-watch must not put its control socket in `directory`, or nil: a directory another
    /// user owns could let them replace the socket under us.
    public static func ownershipProblem(directory: String) -> String? {
        var status = stat()
        guard stat(directory, &status) == 0 else { return nil }
        let me = geteuid()
        guard status.st_uid != me else { return nil }
        return "\(directory) belongs to uid \(status.st_uid), not to you (uid \(me)): the control socket is not created there; "
            + "fix: `chown -R \(me) \(directory)` or remove it"
    }

    /// Binds and listens on `path` with mode 0600, replacing what is there (the caller checked it is
    /// not live). The socket is bound under a temporary name, restricted, then renamed into place,
    /// so there is never a moment when others could connect to it.
    public static func bind(path: String) throws(SystemError) -> Int32 {
        let temporary = path + ".\(getpid()).new"
        _ = unlink(temporary)
        let fd = try retryingOnInterrupt("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemError) {
            try withUnixSocketAddress(temporary) { address, length throws(SystemError) in
                _ = try retryingOnInterrupt("bind", context: temporary) { Glibc.bind(fd, address, length) }
            }
            _ = try retryingOnInterrupt("chmod", context: temporary) { chmod(temporary, 0o600) }
            _ = try retryingOnInterrupt("listen", context: temporary) { listen(fd, 64) }
            _ = try retryingOnInterrupt("rename", context: path) { rename(temporary, path) }
        } catch {
            _ = close(fd)
            _ = unlink(temporary)
            throw error
        }
        return fd
    }

    /// A connected stream socket to `path`.
    public static func connect(path: String) throws(SystemError) -> Int32 {
        let fd = try retryingOnInterrupt("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(SystemError) {
            try withUnixSocketAddress(path) { address, length throws(SystemError) in
                _ = try retryingOnInterrupt("connect", context: path) { Glibc.connect(fd, address, length) }
            }
        } catch {
            _ = close(fd)
            throw error
        }
        return fd
    }
}

/// One safe-watch per project: an exclusive `flock` on `.safe-watch/lock`, held for the life of the
/// process (the kernel drops it when the process dies, however it dies). The control socket is for
/// talking; this is for knowing.
public enum InstanceLock {
    /// Takes the lock, or says who holds it: false when another process does.
    public static func acquire(directory: String) throws(SystemError) -> Bool {
        let path = directory + "/lock"
        let fd = try retryingOnInterrupt("open", context: path) { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }  // the descriptor stays open until exit
        let code = errno
        _ = close(fd)
        if code == EWOULDBLOCK { return false }
        throw SystemError(call: "flock", errno: code, context: path)
    }
}

/// Calls `body` with `path` as a `sockaddr_un`.
func withUnixSocketAddress<Result>(
    _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemError) -> Result
) throws(SystemError) -> Result {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw SystemError(call: "bind", errno: ENAMETOOLONG, context: path)
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    return try withUnsafePointer(to: &address) { pointer throws(SystemError) in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress throws(SystemError) in
            try body(socketAddress, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}

/// The client side, for the `status`, `rebuild`, `rollback`, `stop` and `events` commands:
/// blocking, one request, then lines until the server closes.
public final class ControlClient {
    private let fd: Int32
    private var buffered: [UInt8] = []

    public init(path: String) throws(SystemError) {
        self.fd = try ControlSocket.connect(path: path)
    }

    deinit {
        _ = close(self.fd)
    }

    public func send(_ line: String) throws(SystemError) {
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let written = try retryingOnInterrupt("write") {
                bytes.withUnsafeMutableBytes { Glibc.write(self.fd, $0.baseAddress! + offset, $0.count - offset) }
            }
            offset += written
        }
    }

    public enum Read: Equatable {
        case line(String)
        /// The server closed the connection.
        case end
        case timedOut
    }

    /// The next line, the end of the stream, or nothing within `timeout` (nil: wait as long as it
    /// takes).
    public func read(timeout: Duration? = nil) throws(SystemError) -> Read {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            if let newline = self.buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: self.buffered[..<newline], as: UTF8.self)
                self.buffered.removeSubrange(...newline)
                return .line(line)
            }
            if let deadline {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { return .timedOut }
                var entry = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
                let milliseconds = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
                let ready = poll(&entry, 1, milliseconds)
                if ready < 0 && errno == EINTR { continue }
                if ready == 0 { return .timedOut }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = try retryingOnInterrupt("read") { chunk.withUnsafeMutableBytes { Glibc.read(self.fd, $0.baseAddress, $0.count) } }
            if count == 0 {
                guard !self.buffered.isEmpty else { return .end }
                defer { self.buffered = [] }
                return .line(String(decoding: self.buffered, as: UTF8.self))
            }
            self.buffered += chunk[..<count]
        }
    }
}
