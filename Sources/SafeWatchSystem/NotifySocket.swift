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
        let fd = self.fd
        do throws(SystemError) {
            try withUnixSocketAddress(path) { address, length throws(SystemError) in
                _ = try retryingOnInterrupt("bind", context: path) { bind(fd, address, length) }
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
