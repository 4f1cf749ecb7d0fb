import Glibc
import Logging
import Synchronization

/// A pipe whose write end goes to a child (stdout and stderr) and whose read end delivers whole
/// lines to a handler, then `onClose` once every writer — the child and anything it started —
/// has closed it.
public final class OutputPipe: Sendable {
    private let writeDescriptor: Mutex<FileDescriptor?>
    private let reader: DescriptorReader
    private let label: String

    public init(label: String = "safe-watch.output") throws(SystemError) {
        let pipe = try FileDescriptor.pipe()
        self.writeDescriptor = Mutex(pipe.writeEnd)
        do {
            self.reader = try DescriptorReader(fd: pipe.readEnd)
        } catch {
            pipe.readEnd.close()
            pipe.writeEnd.close()
            throw error
        }
        self.label = label
    }

    /// The descriptor to give the child; nil once closed.
    public var writeEnd: FileDescriptor? { self.writeDescriptor.withLock { $0 } }

    /// Closes the parent's copy of the write end (after spawning), so EOF comes when the child's
    /// copies close.
    public func closeWriteEnd() {
        self.writeDescriptor.withLock { fd in
            fd?.close()
            fd = nil
        }
    }

    /// Starts reading. `onLine` gets each line without its newline (a trailing `\r` removed);
    /// `onClose` runs once at EOF, or when reading failed (which is logged).
    public func start(onLine: @escaping @Sendable (String) -> Void, onClose: @escaping @Sendable () -> Void = {}) {
        let splitter = LineSplitter(onLine: onLine)
        self.reader.start(
            name: self.label, onData: { splitter.feed($0) },
            onEnd: { [label = self.label] failure in
                splitter.finish()
                Self.report(failure, label: label)
                onClose()
            })
    }

    /// Starts reading raw bytes: `onData` gets each chunk; `onClose` runs once at EOF, or when
    /// reading failed (which is logged).
    public func start(onData: @escaping @Sendable ([UInt8]) -> Void, onClose: @escaping @Sendable () -> Void = {}) {
        self.reader.start(
            name: self.label, onData: { onData(Array($0)) },
            onEnd: { [label = self.label] failure in
                Self.report(failure, label: label)
                onClose()
            })
    }

    /// A child's output that stops short must not vanish without a word: the lines the user reads
    /// to see why a build or a server failed may be the ones lost.
    private static func report(_ failure: SystemError?, label: String) {
        guard let failure else { return }
        Logger(label: "safe-watch").error("cannot read the output of \(label) any more (\(failure)): the rest of it is lost")
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
