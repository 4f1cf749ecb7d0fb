import CSafeWatchShims
import Foundation
import Glibc
import Synchronization

/// Reads a descriptor on a thread of its own with blocking `poll`/`read`, until end of file or
/// `stop()`; then closes it.
///
/// Not a Dispatch read source: on Linux, tearing one down races libdispatch's epoll bookkeeping
/// and its manager thread crashes in `_dispatch_event_loop_drain` (seen here on about one
/// short-lived pipe in ten; swift-corelibs-libdispatch#949). A blocking reader registers nothing
/// with libdispatch, so there is nothing to race.
public final class DescriptorReader: Sendable {
    private let fd: Int32
    /// Written to by `stop()` to wake the poll.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let paused = Mutex(false)
    private let resumed = DispatchSemaphore(value: 0)

    /// Takes ownership of `fd`.
    public init(fd: Int32) throws(SystemError) {
        self.fd = fd
        var fds: [Int32] = [0, 0]
        try retryingOnInterrupt("pipe2") { sw_pipe_cloexec(&fds) }
        self.wakeRead = fds[0]
        self.wakeWrite = fds[1]
    }

    /// Starts the reading thread. `onData` gets each chunk read; `onEnd` runs once at EOF, on a
    /// read error, or after `stop()`.
    public func start(
        name: String, onData: @escaping @Sendable (UnsafeRawBufferPointer) -> Void, onEnd: @escaping @Sendable () -> Void = {}
    ) {
        let thread = Thread { [self] in
            self.loop(onData: onData)
            _ = Glibc.close(self.fd)
            _ = Glibc.close(self.wakeRead)
            _ = Glibc.close(self.wakeWrite)
            onEnd()
        }
        thread.name = name
        thread.start()
    }

    /// Ends the reading thread (it closes the descriptor).
    public func stop() {
        var byte: UInt8 = 1
        _ = Glibc.write(self.wakeWrite, &byte, 1)
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

    private func loop(onData: (UnsafeRawBufferPointer) -> Void) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer { buffer.deallocate() }
        var fds = [pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: self.wakeRead, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            if self.paused.withLock({ $0 }) {
                self.resumed.wait()
                continue
            }
            let count = read(self.fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                return
            }
            if count == 0 { return }
            onData(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }
}
