import Dispatch
import Glibc
import Logging
import SafeWatchProcesses

/// A datagram socket in the `NOTIFY_SOCKET` protocol (sd_notify): a child sends `READY=1`,
/// `STATUS=…` lines; the handler gets each datagram's assignments.
public final class NotifySocket: Sendable {
    public let path: String
    private let reader: DescriptorReader

    public init(path: String) throws(SystemError) {
        self.path = path
        _ = unlink(path)
        let fd = try FileDescriptor.socket(AF_UNIX, SOCK_DGRAM)
        do throws(SystemError) {
            try withUnixSocketAddress(path) { address, length throws(SystemError) in
                _ = try Syscall.retrying("bind", context: path) { bind(fd.rawValue, address, length) }
            }
            self.reader = try DescriptorReader(fd: fd)
        } catch {
            fd.close()
            throw error
        }
    }

    /// Starts delivering messages: each datagram as its `KEY=value` lines.
    public func start(_ handler: @escaping @Sendable ([String]) -> Void) {
        self.reader.start(name: "safe-watch.notify", onData: { bytes in
            handler(String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init))
        }, onEnd: { [path = self.path] failure in
            _ = unlink(path)
            if let failure {
                Logger(label: "safe-watch").error("stopped listening on the notify socket \(path) (\(failure)): a READY=1 sent there is not heard")
            }
        })
    }

    /// Stops listening and removes the socket file.
    public func close() {
        self.reader.stop()
    }
}
