import CSafeWatchShims
import Glibc

/// A descriptor safe-watch reads, writes or hands to a child's stdout and stderr.
///
/// The listening sockets (public, control, LISTEN_FDS) stay `Int32`: SwiftNIO serves them and
/// libsystemd stores them, and both take the plain number.
///
/// A value, not an owner: whoever opened it closes it, once. Every descriptor it opens is
/// close-on-exec, so a child gets only what it is passed on purpose.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    public static let standardOutput = FileDescriptor(rawValue: 1)
    public static let standardError = FileDescriptor(rawValue: 2)

    public var description: String { "fd \(self.rawValue)" }

    /// `open(path, flags | O_CLOEXEC, mode)`.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws(SystemError) -> FileDescriptor {
        FileDescriptor(rawValue: try Syscall.retrying("open", context: path) { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    /// A pipe, both ends close-on-exec.
    public static func pipe() throws(SystemError) -> (readEnd: FileDescriptor, writeEnd: FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        try Syscall.retrying("pipe2") { sw_pipe_cloexec(&fds) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// A socket of `domain` (AF_UNIX, AF_INET, …) and `type`, close-on-exec.
    public static func socket(_ domain: Int32, _ type: __socket_type) throws(SystemError) -> FileDescriptor {
        FileDescriptor(
            rawValue: try Syscall.retrying("socket") { Glibc.socket(domain, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
    }

    /// One `read` into `buffer`: the byte count, 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try Syscall.retrying("read") { Glibc.read(self.rawValue, buffer.baseAddress, buffer.count) }
    }

    /// One `read` into the start of `buffer`: the byte count, 0 at end of file.
    public func read(into buffer: inout [UInt8]) throws(SystemError) -> Int {
        try Syscall.retrying("read") { buffer.withUnsafeMutableBytes { Glibc.read(self.rawValue, $0.baseAddress, $0.count) } }
    }

    /// Writes all of `bytes`, however many writes it takes. Stops early, without an error, only if
    /// a write takes nothing. `descriptorMayBeClosed`: for 1 and 2, see `Syscall.retrying`.
    public func writeAll(_ bytes: [UInt8], descriptorMayBeClosed: Bool = false) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = try Syscall.retrying("write", descriptorMayBeClosed: descriptorMayBeClosed) {
                bytes.withUnsafeBytes { Glibc.write(self.rawValue, $0.baseAddress! + offset, $0.count - offset) }
            }
            if written == 0 { return }
            offset += written
        }
    }

    /// Closes it. Never retried: on Linux the descriptor is released even when `close` reports
    /// EINTR, and a retry could close a descriptor another thread has just been given. EBADF
    /// means it was closed twice, a bug that may have closed someone else's descriptor: it stops
    /// the process. Other errors (EIO from a file system) leave nothing to do.
    public func close() {
        guard Glibc.close(self.rawValue) == -1 else { return }
        let code = Errno.current
        precondition(code != .badFileDescriptor, "close(\(self.rawValue)): \(code): closed twice, a bug in safe-watch")
    }
}
