import Foundation
import Glibc
import SafeWatchProcesses
import Synchronization
import TestSupport
import Testing

/// The one syscall helper, the typed descriptor, and the reader built on them, on real descriptors
/// and a real signal.
@Suite struct SyscallTests {
    @Test func aReadInterruptedByASignalIsRetried() async throws {
        let interrupted = try InterruptedRead()
        defer { interrupted.restore() }

        // The setup really interrupts: a plain read comes back with EINTR.
        let plain = try await interrupted.run { fd in
            var byte: UInt8 = 0
            let count = read(fd.rawValue, &byte, 1)
            return count == -1 ? "errno \(Errno.current.rawValue)" : "read \(count)"
        }
        #expect(plain == "errno \(EINTR)")

        // Through the helper the same read goes on waiting and gets the byte written afterwards.
        let helped = try await interrupted.run { fd in
            var buffer = [UInt8](repeating: 0, count: 1)
            do {
                return "read \(try fd.read(into: &buffer)) \(buffer)"
            } catch {
                return "\(error)"
            }
        }
        #expect(helped == "read 1 [42]")
    }

    @Test func aFailureCarriesItsErrnoAndContext() throws {
        #expect(throws: SystemError(call: "open", errno: .noSuchFileOrDirectory, context: "/nonexistent/safe-watch")) {
            try FileDescriptor.open("/nonexistent/safe-watch", O_RDONLY)
        }
        let directory = try FileDescriptor.open("/", O_RDONLY | O_DIRECTORY)
        defer { directory.close() }
        var buffer = [UInt8](repeating: 0, count: 16)
        let error = #expect(throws: SystemError.self) { try directory.read(into: &buffer) }
        #expect(error == SystemError(call: "read", errno: .isDirectory))
        #expect(error?.description == "read: Is a directory")
    }

    @Test func aClosedStandardDescriptorIsAnErrorNotABug() throws {
        // What writeToStandardError meets when safe-watch was started with 2>&-. A descriptor this
        // test closed itself could be reused at once by a test running beside it (and the byte
        // written into that test's file), so the closed one is the first number the kernel never
        // hands out: the soft limit on open files.
        var limit = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let neverOpen = FileDescriptor(rawValue: Int32(clamping: limit.rlim_cur))
        #expect(fcntl(neverOpen.rawValue, F_GETFD) == -1)
        #expect(throws: SystemError(call: "write", errno: .badFileDescriptor)) {
            try neverOpen.writeAll([1], descriptorMayBeClosed: true)
        }
    }

    /// A TCP connection the peer resets (SO_LINGER 0, then close): the kernel fails the next read
    /// with ECONNRESET. The reader must hand that to its owner instead of ending as if at end of
    /// file.
    @Test func theReaderReportsAReadErrorInsteadOfStoppingSilently() async throws {
        let connection = try LoopbackConnection()
        let reader = try DescriptorReader(fd: connection.client)
        let received = Recorder<UInt8>()
        let ends = Recorder<SystemError?>()
        reader.start(name: "test.reset", onData: { received.append(contentsOf: Array($0)) }, onEnd: { ends.append($0) })

        try connection.server.writeAll(Array("ready".utf8))
        #expect(await received.wait { $0 == Array("ready".utf8) })
        connection.reset()

        #expect(await ends.wait { $0.count == 1 })
        #expect(ends.all == [SystemError(call: "read", errno: .connectionReset)])
    }

    @Test func theReaderEndsWithoutAnErrorAtEndOfFileAndAfterStop() async throws {
        let pipe = try FileDescriptor.pipe()
        let reader = try DescriptorReader(fd: pipe.readEnd)
        let ends = Recorder<SystemError?>()
        reader.start(name: "test.eof", onData: { _ in }, onEnd: { ends.append($0) })
        pipe.writeEnd.close()
        #expect(await ends.wait { $0.count == 1 })
        #expect(ends.all == [nil])

        let other = try FileDescriptor.pipe()
        defer { other.writeEnd.close() }
        let stopped = try DescriptorReader(fd: other.readEnd)
        let stops = Recorder<SystemError?>()
        stopped.start(name: "test.stop", onData: { _ in }, onEnd: { stops.append($0) })
        stopped.stop()
        stopped.stop()  // again: nothing happens, nothing is written anywhere
        #expect(await stops.wait { $0.count == 1 })
        #expect(stops.all == [nil])
    }
}

/// How many times the SIGUSR2 handler ran.
private let interruptions = Atomic<Int>(0)

/// A thread blocked in `read` on an empty pipe, sent SIGUSR2 whose handler was installed without
/// SA_RESTART, so the kernel ends the read with EINTR instead of restarting it.
private struct InterruptedRead {
    private var previous = sigaction()

    init() throws {
        _ = interruptions.load(ordering: .relaxed)  // initialised before the handler can run
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptions.add(1, ordering: .relaxed) }
        action.sa_flags = 0  // no SA_RESTART
        sigemptyset(&action.sa_mask)
        guard sigaction(SIGUSR2, &action, &self.previous) == 0 else { throw Errno.current }
    }

    func restore() {
        var previous = self.previous
        sigaction(SIGUSR2, &previous, nil)
    }

    /// Runs `body` on a thread of its own with the read end of an empty pipe; once the thread is
    /// blocked reading it, sends the signal; once the handler ran, writes one byte (42) if the
    /// thread is still reading. What `body` returns.
    func run(_ body: @escaping @Sendable (FileDescriptor) -> String) async throws -> String {
        let pipe = try FileDescriptor.pipe()
        defer {
            pipe.readEnd.close()
            pipe.writeEnd.close()
        }
        let thread = Mutex<(handle: pthread_t, id: String)?>(nil)
        let result = Mutex<String?>(nil)
        Thread.detachNewThread {
            // The thread a test runs on may block signals; this one must take SIGUSR2.
            var signals = sigset_t()
            sigemptyset(&signals)
            sigaddset(&signals, SIGUSR2)
            pthread_sigmask(SIG_UNBLOCK, &signals, nil)
            // "PID/task/TID": the thread's own /proc directory.
            var link = [CChar](repeating: 0, count: 64)
            let length = readlink("/proc/thread-self", &link, link.count - 1)
            let id = String(decoding: link[0..<max(length, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            thread.withLock { $0 = (pthread_self(), id) }
            let answer = body(pipe.readEnd)
            result.withLock { $0 = answer }
        }
        #expect(await waitUntil(checkingEvery: .milliseconds(1)) { thread.withLock { $0 } != nil })
        guard let (handle, id) = thread.withLock({ $0 }) else { return "no thread" }
        #expect(await waitUntil(checkingEvery: .milliseconds(1)) { isBlockedInRead(id) }, "the thread never blocked in read")

        let before = interruptions.load(ordering: .relaxed)
        #expect(pthread_kill(handle, SIGUSR2) == 0)
        #expect(await waitUntil(checkingEvery: .milliseconds(1)) { interruptions.load(ordering: .relaxed) > before }, "the handler never ran")
        // Either the read ended with EINTR, or the thread waits in read again.
        #expect(await waitUntil(checkingEvery: .milliseconds(1)) { result.withLock { $0 } != nil || isBlockedInRead(id) })
        if result.withLock({ $0 }) == nil {
            try pipe.writeEnd.writeAll([42])
        }
        #expect(await waitUntil(checkingEvery: .milliseconds(1)) { result.withLock { $0 } != nil }, "the read never returned")
        return result.withLock { $0 } ?? "no result"
    }
}

/// The `read` system call's number, as /proc/PID/task/TID/syscall shows it.
#if arch(x86_64)
private let readSyscall = 0
#elseif arch(arm64)
private let readSyscall = 63
#endif

/// Whether the thread at /proc/`id` sits in `read` now (its syscall file starts with its number).
private func isBlockedInRead(_ id: String) -> Bool {
    guard let text = try? String(contentsOfFile: "/proc/\(id)/syscall", encoding: .utf8) else { return false }
    return text.split(separator: " ").first == "\(readSyscall)"
}

/// Both ends of a TCP connection on 127.0.0.1.
private struct LoopbackConnection {
    let client: FileDescriptor
    let server: FileDescriptor

    init() throws {
        // A listener on a free port of 127.0.0.1; the connect below learns the port from it.
        let listener = try FileDescriptor.socket(AF_INET, SOCK_STREAM)
        defer { listener.close() }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener.rawValue, $0, length) == 0 && listen(listener.rawValue, 1) == 0
                    && getsockname(listener.rawValue, $0, &length) == 0
            }
        }
        guard listening else { throw Errno.current }
        let client = try FileDescriptor.socket(AF_INET, SOCK_STREAM)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client.rawValue, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Errno.current }
        let server = accept(listener.rawValue, nil, nil)
        guard server >= 0 else { throw Errno.current }
        _ = fcntl(server, F_SETFD, FD_CLOEXEC)
        self.client = client
        self.server = FileDescriptor(rawValue: server)
    }

    /// Closes the server's end with a reset instead of a FIN.
    func reset() {
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(self.server.rawValue, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        self.server.close()
    }
}
