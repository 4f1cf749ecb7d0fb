import Glibc

// MARK: - Output

/// Writes all of `text` to `fd`. Output goes straight to the file descriptor
/// rather than through stdio: no buffer to flush before a supervisor reads
/// the line, and no shared `stdout` global (which Swift 6 rejects).
func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written > 0 {
            bytes = bytes.dropFirst(written)
        } else if written < 0 && errno == EINTR {
            continue
        } else {
            return  // stdout/stderr gone (e.g. the supervisor died): nothing useful to do
        }
    }
}

/// A diagnostic on stderr. stdout carries only the "listening" and "stopped"
/// lines, which supervisors and tests match exactly.
func log(_ message: String) {
    writeAll(2, "hello-server: \(message)\n")
}

func errnoDescription(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

// MARK: - Waiting

/// Waits until `fd` is readable (or hung up) or `deadline` passes.
func pollReadable(_ fd: Int32, deadline: Deadline) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let ready = poll(&entry, 1, deadline.remainingMilliseconds)
        if ready > 0 { return true }
        if ready < 0 && errno != EINTR { return false }
        // EINTR, or poll's timeout (capped at ~24 days) ran out early.
        if deadline.remainingMilliseconds == 0 { return false }
    }
}

enum WaitResult {
    case readable
    case timedOut
    case shuttingDown
}

/// Waits for `fd` to become readable. If `interruptible`, also returns as
/// soon as shutdown begins. Input that is already waiting wins over shutdown.
func waitForInput(_ fd: Int32, deadline: Deadline, interruptible: Bool) -> WaitResult {
    var entries = [
        pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
        pollfd(fd: server.shutdownFD, events: Int16(POLLIN), revents: 0),
    ]
    while true {
        let ready = poll(&entries, interruptible ? 2 : 1, deadline.remainingMilliseconds)
        if ready < 0 && errno != EINTR { return .timedOut }  // cannot happen with valid fds
        if ready <= 0 {
            if deadline.remainingMilliseconds == 0 { return .timedOut }
            continue  // EINTR
        }
        // POLLHUP/POLLERR also count: the next recv() reports them.
        if entries[0].revents != 0 { return .readable }
        return .shuttingDown
    }
}

// MARK: - Listening

struct StartupError: Error {
    let message: String
}

/// Creates, binds and listens on a TCP socket for `host:port`.
/// `host` must be a numeric IPv4 or IPv6 address (or "localhost").
func bindListener(host: String, port: UInt16) throws(StartupError) -> Int32 {
    let address = host == "localhost" ? "127.0.0.1" : host
    var ipv4 = sockaddr_in()
    var ipv6 = sockaddr_in6()
    let family: Int32
    if inet_pton(AF_INET, address, &ipv4.sin_addr) == 1 {
        family = AF_INET
        ipv4.sin_family = sa_family_t(AF_INET)
        ipv4.sin_port = port.bigEndian
    } else if inet_pton(AF_INET6, address, &ipv6.sin6_addr) == 1 {
        family = AF_INET6
        ipv6.sin6_family = sa_family_t(AF_INET6)
        ipv6.sin6_port = port.bigEndian
    } else {
        throw StartupError(message: "--host '\(host)' is not a numeric IPv4 or IPv6 address")
    }

    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw StartupError(message: "socket: \(errnoDescription())") }
    // Allow an immediate restart on the same port while old connections of a
    // previous instance sit in TIME_WAIT.
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))

    let bound = family == AF_INET
        ? withUnsafeBytes(of: &ipv4) { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        : withUnsafeBytes(of: &ipv6) { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
    guard bound == 0 else {
        let code = errno
        close(fd)
        throw StartupError(message: "cannot bind \(host):\(port): \(errnoDescription(code))")
    }
    guard listen(fd, SOMAXCONN) == 0 else {
        let code = errno
        close(fd)
        throw StartupError(message: "listen: \(errnoDescription(code))")
    }
    try makeNonBlocking(fd)
    return fd
}

/// Takes over the listening socket passed on fd 3 by a socket activator
/// (systemd, systemd-socket-activate, or safe-watch itself).
func adoptInheritedListener() throws(StartupError) -> Int32 {
    let fd: Int32 = 3  // SD_LISTEN_FDS_START
    var listening: Int32 = 0
    var size = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening != 0 else {
        throw StartupError(message: "LISTEN_FDS is set but fd 3 is not a listening socket")
    }
    // Keep it from leaking into anything we might exec.
    _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
    try makeNonBlocking(fd)
    return fd
}

/// The listener is non-blocking so that a connection reset between poll()
/// and accept() makes accept() fail with EAGAIN instead of hanging the loop.
private func makeNonBlocking(_ fd: Int32) throws(StartupError) {
    let flags = fcntl(fd, F_GETFL)
    guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
        throw StartupError(message: "fcntl: \(errnoDescription())")
    }
}

/// The address a socket is bound to, as "127.0.0.1:8080" or "[::1]:8080".
/// Asking the kernel (rather than echoing the configuration) gives the real
/// port for `--port 0` and for inherited sockets.
func localAddress(of fd: Int32) -> String {
    var storage = sockaddr_storage()
    var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let ok = withUnsafeMutableBytes(of: &storage) {
        getsockname(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &size) == 0
    }
    guard ok else { return "?" }

    /// inet_ntop into a String.
    func numericHost<Address>(_ family: Int32, _ address: Address) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let converted = withUnsafeBytes(of: address) { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        guard converted != nil else { return "?" }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
    switch Int32(storage.ss_family) {
    case AF_INET:
        let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
        return "\(numericHost(AF_INET, address.sin_addr)):\(UInt16(bigEndian: address.sin_port))"
    case AF_INET6:
        let address = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
        return "[\(numericHost(AF_INET6, address.sin6_addr))]:\(UInt16(bigEndian: address.sin6_port))"
    case AF_UNIX:
        return withUnsafeBytes(of: &storage) { raw in
            let path = raw[MemoryLayout<sa_family_t>.size...].prefix { $0 != 0 }
            return "unix:" + String(decoding: path, as: UTF8.self)
        }
    default:
        return "?"
    }
}

// MARK: - Readiness notification

/// Sends "READY=1" to the unix datagram socket named by NOTIFY_SOCKET, the
/// sd_notify protocol: a path, or an abstract name written with a leading '@'.
func notifyReady(socketPath: String) {
    var path = Array(socketPath.utf8)
    let isAbstract = path.first == UInt8(ascii: "@")
    if isAbstract { path[0] = 0 }  // abstract namespace: leading NUL, no terminator

    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    // A filesystem path also needs room for its NUL terminator.
    guard path.count + (isAbstract ? 0 : 1) <= capacity, !path.isEmpty else {
        log("NOTIFY_SOCKET '\(socketPath)' is not a valid unix socket address")
        return
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (isAbstract ? 0 : 1))

    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else {
        log("NOTIFY_SOCKET: socket: \(errnoDescription())")
        return
    }
    defer { close(fd) }
    let message = Array("READY=1".utf8)
    let sent = withUnsafeBytes(of: &address) { raw in
        sendto(fd, message, message.count, Int32(MSG_NOSIGNAL),
               raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
    }
    if sent < 0 { log("NOTIFY_SOCKET '\(socketPath)': \(errnoDescription())") }
}
