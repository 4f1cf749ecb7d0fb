import CSafeWatchShims
import Dispatch
import Glibc

/// A pipe whose write end goes to a child (stdout and stderr) and whose read end delivers whole
/// lines to a handler, then `onClose` once every writer — the child and anything it started —
/// has closed it.
public final class OutputPipe: @unchecked Sendable {
    /// The descriptor to give the child; close it in the parent once the child is spawned.
    public private(set) var writeEnd: Int32
    private let readEnd: Int32
    // Touched only on `queue`.
    private let queue: DispatchQueue
    private var source: DispatchSourceRead?
    private var partial: [UInt8] = []

    public init(label: String = "safe-watch.output") throws(SystemError) {
        var fds: [Int32] = [0, 0]
        try retryingOnInterrupt("pipe2") { sw_pipe_cloexec(&fds) }
        self.readEnd = fds[0]
        self.writeEnd = fds[1]
        _ = fcntl(self.readEnd, F_SETFL, fcntl(self.readEnd, F_GETFL) | O_NONBLOCK)
        self.queue = DispatchQueue(label: label)
    }

    /// Closes the parent's copy of the write end (after spawning), so EOF comes when the child's
    /// copies close.
    public func closeWriteEnd() {
        if self.writeEnd >= 0 {
            _ = close(self.writeEnd)
            self.writeEnd = -1
        }
    }

    /// Starts reading. `onLine` gets each line without its newline; `onClose` runs once at EOF.
    public func start(onLine: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void = {}) {
        self.queue.async {
            let source = DispatchSource.makeReadSource(fileDescriptor: self.readEnd, queue: self.queue)
            source.setEventHandler { [self] in
                if self.drain(onLine: onLine) {
                    if !self.partial.isEmpty {
                        onLine(String(decoding: self.partial, as: UTF8.self))
                        self.partial = []
                    }
                    self.source?.cancel()
                    self.source = nil
                    onClose()
                }
            }
            source.setCancelHandler { [readEnd = self.readEnd] in _ = close(readEnd) }
            self.source = source
            source.resume()
        }
    }

    /// Reads what is there; true at EOF.
    private func drain(onLine: (String) -> Void) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(self.readEnd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return errno != EAGAIN && errno != EWOULDBLOCK
            }
            if count == 0 { return true }
            var start = 0
            for index in 0..<count where buffer[index] == UInt8(ascii: "\n") {
                self.partial += buffer[start..<index]
                var line = self.partial
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                onLine(String(decoding: line, as: UTF8.self))
                self.partial = []
                start = index + 1
            }
            self.partial += buffer[start..<count]
            if self.partial.count > 64 * 1024 {  // a runaway line: pass it on in pieces
                onLine(String(decoding: self.partial, as: UTF8.self))
                self.partial = []
            }
        }
    }

    deinit {
        if self.writeEnd >= 0 { _ = close(self.writeEnd) }
    }
}
