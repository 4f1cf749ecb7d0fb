import Glibc

/// A connect to the loopback address failed; `code` is its errno.
public struct LoopbackConnectFailure: Error, CustomStringConvertible {
    public var code: Int32
    public var description: String { "connect: \(String(cString: strerror(self.code)))" }
}

/// A blocking TCP connection to 127.0.0.1:`port`. Each send and receive gives up after
/// `timeout` seconds, so a test fails rather than hangs. With `receiveBuffer`, the kernel's
/// receive buffer is that small; it is set before the connect, so the window is negotiated with it.
public func connectLoopback(port: Int, timeout: Int = 15, receiveBuffer: Int32? = nil) throws(LoopbackConnectFailure) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var limit = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    if var size = receiveBuffer {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard result == 0 else {
        let code = errno
        close(fd)
        throw LoopbackConnectFailure(code: code)
    }
    return fd
}

/// Listening on 127.0.0.1 failed; `code` is its errno.
public struct LoopbackListenFailure: Error, CustomStringConvertible {
    public var code: Int32
    public var description: String { "listen: \(String(cString: strerror(self.code)))" }
}

/// A socket listening on a free port of 127.0.0.1 with `backlog`, and that port. Nothing accepts
/// on it: connections complete in the kernel and wait in the backlog.
public func listenLoopback(backlog: Int32 = 8) throws(LoopbackListenFailure) -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LoopbackListenFailure(code: errno) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let listening = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard listening else {
        let code = errno
        close(fd)
        throw LoopbackListenFailure(code: code)
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}
