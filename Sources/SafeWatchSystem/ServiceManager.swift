import CSystemd
import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses

/// safe-watch's side of systemd's notify protocol, through libsystemd (`sd_notify`,
/// `sd_pid_notify_with_fds`). Does nothing when no manager listens (`NOTIFY_SOCKET` unset).
///
/// `NOTIFY_SOCKET` stays in safe-watch's environment for these calls; `inheritedEnvironment()`
/// keeps it from every child, so a server never talks to safe-watch's manager by accident.
public struct ServiceManager: Sendable {
    /// The notify socket's address, when a manager listens.
    public let notifySocket: String?

    public init() {
        self.notifySocket = getenv("NOTIFY_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    public var isPresent: Bool { self.notifySocket != nil }

    /// Sends one datagram of `KEY=value` lines. Returns false when it could not be delivered.
    @discardableResult
    public func send(_ state: String) -> Bool {
        guard self.isPresent else { return false }
        return sd_notify(0, state) > 0
    }

    /// Parks `fd` in the manager's fd store under `name` (`FDSTORE=1`): it is passed back, in
    /// `LISTEN_FDS`, when safe-watch starts again — after `systemctl restart` or a crash.
    /// Needs `FileDescriptorStoreMax=` in the unit.
    @discardableResult
    public func store(_ fd: Int32, name: String) -> Bool {
        guard self.isPresent else { return false }
        var fds = [fd]
        return sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)", &fds, 1) > 0
    }

    /// Drops every stored fd named `name`.
    @discardableResult
    public func removeStored(name: String) -> Bool {
        self.send("FDSTOREREMOVE=1\nFDNAME=\(name)")
    }

    /// CLOCK_MONOTONIC in microseconds, for `MONOTONIC_USEC=`.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }
}

/// Listening sockets: binding safe-watch's own, checking inherited ones, and seeing which a
/// process listens on.
public enum ListeningSockets {
    /// A TCP listening socket on `host:port` (port 0: any free one), close-on-exec, backlog 1024.
    public static func bind(host: String, port: Int) throws(SystemError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &found)
        guard status == 0, let info = found else {
            throw SystemError(call: "getaddrinfo", errno: .invalidArgument, context: "\(host) is not a numeric IP address")
        }
        defer { freeaddrinfo(info) }
        let fd = try FileDescriptor.socket(info.pointee.ai_family, SOCK_STREAM)
        var one: Int32 = 1
        _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        do throws(SystemError) {
            // A failed listen is reported as the bind it completes (its EADDRINUSE gets the same
            // hint): the user asked for an address, not for the two steps.
            try Syscall.retrying("bind", context: "\(host):\(port)") { Glibc.bind(fd.rawValue, info.pointee.ai_addr, info.pointee.ai_addrlen) }
            try Syscall.retrying("bind", context: "\(host):\(port)") { listen(fd.rawValue, 1024) }
        } catch {
            fd.close()
            throw error
        }
        return fd.rawValue
    }

    /// Whether `fd` is a listening stream socket (what `sd_is_socket` checks).
    public static func isListeningStream(_ fd: Int32) -> Bool {
        sd_is_socket(fd, AF_UNSPEC, Int32(SOCK_STREAM.rawValue), 1) > 0
    }

    /// Marks an inherited fd close-on-exec: children get it only when passed on purpose.
    public static func closeOnExec(_ fd: Int32) {
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
    }

    /// `host:port` the socket is bound to (`[::1]:8080` for IPv6).
    public static func localAddress(_ fd: Int32) -> (host: String, port: Int)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        let text = { (characters: [CChar]) in characters.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }
        guard status == 0, let port = Int(text(service)) else { return nil }
        return (text(host), port)
    }

    /// The inode that names the socket behind `fd` (as `/proc/PID/fd` shows it: `socket:[N]`).
    public static func inode(_ fd: Int32) -> UInt64? {
        var status = stat()
        guard fstat(fd, &status) == 0 else { return nil }
        return UInt64(status.st_ino)
    }

    /// Every TCP socket in the LISTEN state on this machine (/proc/net/tcp and tcp6).
    public static func listeningTCP() -> [ListeningTCPSocket] {
        ["/proc/net/tcp", "/proc/net/tcp6"].flatMap { file in
            readProcFile(file).map { ListeningTCPSocket.parse(procNetTCP: $0) } ?? []
        }
    }

    /// The inodes of every socket process `pid` has open.
    public static func socketInodes(of pid: pid_t) -> Set<UInt64> {
        let directory = "/proc/\(pid)/fd"
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var inodes: Set<UInt64> = []
        var buffer = [CChar](repeating: 0, count: 64)
        while let entry = readdir(handle) {
            let name = entryName(entry)
            let count = readlink("\(directory)/\(name)", &buffer, buffer.count - 1)
            guard count > 0 else { continue }
            let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast()) {
                inodes.insert(inode)
            }
        }
        return inodes
    }
}
