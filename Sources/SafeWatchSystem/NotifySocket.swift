import Dispatch
import Glibc

/// A datagram socket in the `NOTIFY_SOCKET` protocol (sd_notify): a child sends `READY=1`,
/// `STATUS=…` lines; the handler gets each datagram's assignments.
public final class NotifySocket: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    // Touched only on `queue`.
    private let queue = DispatchQueue(label: "safe-watch.notify")
    private var source: DispatchSourceRead?

    public init(path: String) throws(SystemError) {
        self.path = path
        _ = unlink(path)
        self.fd = try retryingOnInterrupt("socket") {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
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
    }

    /// Starts delivering messages: each datagram as its `KEY=value` lines.
    public func start(_ handler: @escaping @Sendable ([String]) -> Void) {
        self.queue.async {
            let source = DispatchSource.makeReadSource(fileDescriptor: self.fd, queue: self.queue)
            source.setEventHandler { [fd = self.fd] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if count < 0 && errno == EINTR { continue }
                    guard count > 0 else { return }
                    let text = String(decoding: buffer[0..<count], as: UTF8.self)
                    handler(text.split(separator: "\n").map(String.init))
                }
            }
            source.setCancelHandler { [fd = self.fd, path = self.path] in
                _ = Glibc.close(fd)
                _ = unlink(path)
            }
            self.source = source
            source.resume()
        }
    }

    public func close() {
        self.queue.async {
            if let source = self.source {
                source.cancel()
                self.source = nil
            } else {
                _ = Glibc.close(self.fd)
                _ = unlink(self.path)
            }
        }
    }
}
