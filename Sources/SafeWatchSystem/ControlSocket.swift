import CSafeWatchShims
import Glibc
import SafeWatchProcesses

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
            defer { fd.close() }
            let pid = sw_peer_pid(fd.rawValue)
            return .live(pid: pid > 0 ? pid : nil)
        } catch {
            return self.existing(afterFailing: error)
        }
    }

    /// What a failed connect to the socket's path says is there.
    public static func existing(afterFailing connect: SystemError) -> Existing {
        switch connect.errno {
        case .noSuchFileOrDirectory: .none
        // Only a socket nobody listens on refuses: anything else may be a live safe-watch.
        case .connectionRefused: .stale
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
    /// so there is never a moment when others could connect to it. The plain number: SwiftNIO
    /// serves it.
    public static func bind(path: String) throws(SystemError) -> Int32 {
        let temporary = path + ".\(getpid()).new"
        _ = unlink(temporary)
        let fd = try FileDescriptor.socket(AF_UNIX, SOCK_STREAM)
        do throws(SystemError) {
            try withUnixSocketAddress(temporary) { address, length throws(SystemError) in
                _ = try Syscall.retrying("bind", context: temporary) { Glibc.bind(fd.rawValue, address, length) }
            }
            try Syscall.retrying("chmod", context: temporary) { chmod(temporary, 0o600) }
            try Syscall.retrying("listen", context: temporary) { listen(fd.rawValue, 64) }
            try Syscall.retrying("rename", context: path) { rename(temporary, path) }
        } catch {
            fd.close()
            _ = unlink(temporary)
            throw error
        }
        return fd.rawValue
    }

    /// A connected stream socket to `path`.
    public static func connect(path: String) throws(SystemError) -> FileDescriptor {
        let fd = try FileDescriptor.socket(AF_UNIX, SOCK_STREAM)
        do throws(SystemError) {
            try withUnixSocketAddress(path) { address, length throws(SystemError) in
                _ = try Syscall.retrying("connect", context: path) { Glibc.connect(fd.rawValue, address, length) }
            }
        } catch {
            fd.close()
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
        let fd = try FileDescriptor.open(path, O_RDWR | O_CREAT, mode: 0o600)
        do {
            try Syscall.retrying("flock", context: path) { flock(fd.rawValue, LOCK_EX | LOCK_NB) }
            return true  // the descriptor stays open until exit
        } catch {
            fd.close()
            if error.errno == .wouldBlock { return false }
            throw error
        }
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
        throw SystemError(call: "bind", errno: .fileNameTooLong, context: path)
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
    private let fd: FileDescriptor
    private var buffered: [UInt8] = []

    public init(path: String) throws(SystemError) {
        self.fd = try ControlSocket.connect(path: path)
    }

    deinit {
        self.fd.close()
    }

    public func send(_ line: String) throws(SystemError) {
        try self.fd.writeAll(Array((line + "\n").utf8))
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
                guard deadline > ContinuousClock.now else { return .timedOut }
                var entry = pollfd(fd: self.fd.rawValue, events: Int16(POLLIN), revents: 0)
                let ready = try Syscall.retrying("poll") {
                    // Worked out again on each try: a signal must not restart the whole wait.
                    let left = max(deadline - ContinuousClock.now, .zero)
                    return poll(&entry, 1, Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
                }
                if ready == 0 { return .timedOut }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = try self.fd.read(into: &chunk)
            if count == 0 {
                guard !self.buffered.isEmpty else { return .end }
                defer { self.buffered = [] }
                return .line(String(decoding: self.buffered, as: UTF8.self))
            }
            self.buffered += chunk[..<count]
        }
    }
}
