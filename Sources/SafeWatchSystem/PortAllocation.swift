import Glibc
import SafeWatchProcesses

/// Asks the kernel for a free loopback port for a generation's private listener.
///
/// The port is free when we close our socket; the server binds it a moment later. Ports are
/// handed out from the ephemeral range the kernel picks, so a collision needs another process to
/// grab the same port in that instant.
public func freeLoopbackPort() throws(SystemError) -> Int {
    let fd = try FileDescriptor.socket(AF_INET, SOCK_STREAM)
    defer { fd.close() }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    _ = try withUnsafePointer(to: &address) { pointer throws(SystemError) in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress throws(SystemError) in
            try Syscall.retrying("bind", context: "127.0.0.1:0") {
                bind(fd.rawValue, socketAddress, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = try withUnsafeMutablePointer(to: &address) { pointer throws(SystemError) in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress throws(SystemError) in
            try Syscall.retrying("getsockname") { getsockname(fd.rawValue, socketAddress, &length) }
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
