import CSafeWatchShims
import Glibc
import Synchronization

/// A pipe whose write end goes to a child (stdout and stderr) and whose read end delivers whole
/// lines to a handler, then `onClose` once every writer — the child and anything it started —
/// has closed it.
public final class OutputPipe: Sendable {
    private let writeDescriptor: Mutex<Int32>
    private let reader: DescriptorReader
    private let label: String

    public init(label: String = "safe-watch.output") throws(SystemError) {
        var fds: [Int32] = [0, 0]
        try retryingOnInterrupt("pipe2") { sw_pipe_cloexec(&fds) }
        self.writeDescriptor = Mutex(fds[1])
        self.reader = try DescriptorReader(fd: fds[0])
        self.label = label
    }

    /// The descriptor to give the child; -1 once closed.
    public var writeEnd: Int32 { self.writeDescriptor.withLock { $0 } }

    /// Closes the parent's copy of the write end (after spawning), so EOF comes when the child's
    /// copies close.
    public func closeWriteEnd() {
        self.writeDescriptor.withLock { fd in
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
        }
    }

    /// Starts reading. `onLine` gets each line without its newline (a trailing `\r` removed);
    /// `onClose` runs once at EOF.
    public func start(onLine: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void = {}) {
        let splitter = LineSplitter(onLine: onLine)
        self.reader.start(
            name: self.label, onData: { splitter.feed($0) },
            onEnd: {
                splitter.finish()
                onClose()
            })
    }

    /// Starts reading raw bytes: `onData` gets each chunk; `onClose` runs once at EOF.
    public func start(onData: @escaping @Sendable ([UInt8]) -> Void, onClose: @escaping @Sendable () -> Void = {}) {
        self.reader.start(name: self.label, onData: { onData(Array($0)) }, onEnd: onClose)
    }

    deinit {
        self.closeWriteEnd()
    }
}

/// Cuts a byte stream into lines.
private final class LineSplitter: @unchecked Sendable {
    // Fed from one reader thread only.
    private var partial: [UInt8] = []
    private let onLine: @Sendable (String) -> Void

    init(onLine: @escaping @Sendable (String) -> Void) {
        self.onLine = onLine
    }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        var start = 0
        for index in 0..<bytes.count where bytes[index] == UInt8(ascii: "\n") {
            self.partial += bytes[start..<index]
            self.emit()
            start = index + 1
        }
        self.partial += bytes[start..<bytes.count]
        if self.partial.count > 64 * 1024 { self.emit() }  // a runaway line: pass it on in pieces
    }

    func finish() {
        if !self.partial.isEmpty { self.emit() }
    }

    private func emit() {
        if self.partial.last == UInt8(ascii: "\r") { self.partial.removeLast() }
        self.onLine(String(decoding: self.partial, as: UTF8.self))
        self.partial = []
    }
}
