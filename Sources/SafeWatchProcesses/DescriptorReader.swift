import Dispatch
import Glibc
import Synchronization

/// Reads a descriptor on a thread of its own with blocking `poll`/`read`, until end of file, a
/// read error or `stop()`; then closes it.
///
/// Not a Dispatch read source: on Linux, tearing one down races libdispatch's epoll bookkeeping
/// and its manager thread crashes in `_dispatch_event_loop_drain` (seen here on about one
/// short-lived pipe in ten; swift-corelibs-libdispatch#949). A blocking reader registers nothing
/// with libdispatch, so there is nothing to race.
public final class DescriptorReader: Sendable {
    private let fd: FileDescriptor
    /// Written to by `stop()` to wake the poll.
    private let wake: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
    private let state = Mutex(State.idle)
    private let paused = Mutex(false)
    private let resumed = DispatchSemaphore(value: 0)

    /// Who may still use the descriptors. Closing happens under the lock, so `stop()` never writes
    /// to a wake-up pipe whose number was closed and may already be someone else's.
    private enum State {
        case idle
        case reading
        /// `stop()` woke the thread; it has not closed the descriptors yet.
        case stopping
        case closed
    }

    /// Takes ownership of `fd` (when it throws, the caller still owns it).
    public init(fd: FileDescriptor) throws(SystemError) {
        self.fd = fd
        self.wake = try FileDescriptor.pipe()
    }

    deinit {
        // Never started: nothing else will close them. (A reading thread keeps `self` alive.)
        self.closeDescriptors()
    }

    /// Starts the reading thread. `onData` gets each chunk read; `onEnd` runs once, with nil at
    /// end of file or after `stop()`, with the error when a read failed or no thread could be
    /// started (the rest of what the descriptor would have delivered is lost; the caller says so).
    public func start(
        name: String, onData: @escaping @Sendable (UnsafeRawBufferPointer) -> Void,
        onEnd: @escaping @Sendable (SystemError?) -> Void = { _ in }
    ) {
        let startsNow = self.state.withLock { state in
            guard case .idle = state else { return false }
            state = .reading
            return true
        }
        guard startsNow else {
            onEnd(nil)  // stopped before it started
            return
        }
        do throws(SystemError) {
            try startDetachedThread(named: name) { [self] in
                let failure = self.loop(onData: onData)
                self.closeDescriptors()
                onEnd(failure)
            }
        } catch {
            // No thread (the process or user is at its thread limit): nothing will be read.
            self.closeDescriptors()
            onEnd(error)
        }
    }

    /// Ends the reading thread (it closes the descriptor); closes it at once when reading never
    /// started. Calling it again does nothing.
    public func stop() {
        let closesNow = self.state.withLock { state in
            switch state {
            case .idle:
                return true
            case .reading:
                state = .stopping
                // One byte into an empty pipe: cannot block.
                try? self.wake.writeEnd.writeAll([1])
                return false
            case .stopping, .closed:
                return false
            }
        }
        if closesNow { self.closeDescriptors() }
        self.resume()
    }

    /// Holds back reading until `resume()` (tests use it to let the kernel queue fill).
    public func pause() {
        self.paused.withLock { $0 = true }
    }

    public func resume() {
        let wasPaused = self.paused.withLock { paused in
            defer { paused = false }
            return paused
        }
        if wasPaused { self.resumed.signal() }
    }

    private func closeDescriptors() {
        self.state.withLock { state in
            if case .closed = state { return }
            self.fd.close()
            self.wake.readEnd.close()
            self.wake.writeEnd.close()
            state = .closed
        }
    }

    /// Reads until end of file (nil), `stop()` (nil) or a failure (the error).
    private func loop(onData: (UnsafeRawBufferPointer) -> Void) -> SystemError? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        var fds = [
            pollfd(fd: self.fd.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: self.wake.readEnd.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        do throws(SystemError) {
            while true {
                fds[0].revents = 0
                fds[1].revents = 0
                try Syscall.retrying("poll") { poll(&fds, 2, -1) }
                if fds[1].revents != 0 { return nil }
                if self.paused.withLock({ $0 }) {
                    self.resumed.wait()
                    continue
                }
                let count: Int
                do {
                    count = try self.fd.read(into: buffer)
                } catch where error.errno == .wouldBlock {
                    continue  // a non-blocking descriptor someone else read first
                }
                if count == 0 { return nil }
                onData(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
        } catch {
            return error
        }
    }
}
