import Dispatch
import Glibc

/// A datagram socket in the `NOTIFY_SOCKET` protocol (sd_notify): a child sends `READY=1`,
/// `STATUS=…` lines; the handler gets each datagram's assignments.
public final class NotifySocket: Sendable {
    public let path: String
    private let fd: Int32
    private let reader: DescriptorReader

    public init(path: String) throws(SystemError) {
        self.path = path
        _ = unlink(path)
        self.fd = try retryingOnInterrupt("socket") {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            _ = Glibc.close(self.fd)
            throw SystemError(call: "bind", errno: ENAMETOOLONG, context: path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let fd = self.fd
        do {
            try withUnsafePointer(to: &address) { pointer throws(SystemError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress throws(SystemError) in
                    _ = try retryingOnInterrupt("bind", context: path) {
                        bind(fd, socketAddress, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        do {
            self.reader = try DescriptorReader(fd: fd)
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// Starts delivering messages: each datagram as its `KEY=value` lines.
    public func start(_ handler: @escaping @Sendable ([String]) -> Void) {
        self.reader.start(name: "safe-watch.notify", onData: { bytes in
            handler(String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init))
        }, onEnd: { [path = self.path] in _ = unlink(path) })
    }

    /// Stops listening and removes the socket file.
    public func close() {
        self.reader.stop()
    }
}
