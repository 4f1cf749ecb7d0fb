import Foundation
import Glibc
import NIOCore
import NIOPosix
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

@testable import SafeWatch

/// tcp mode's forwarding (TCPProxy and the glue that joins two connections), in process, against
/// real loopback sockets.
@Suite(.timeLimit(.minutes(2))) struct TCPProxyTests {
    /// A proxy on a fresh loopback port, routing with `router`.
    static func proxy(router: TrafficRouter, holdTimeout: Duration = .seconds(30)) async throws -> (ProxyListener, Int) {
        let fd = try ListeningSockets.bind(host: "127.0.0.1", port: 0)
        let port = try #require(ListeningSockets.localAddress(fd)?.port)
        let proxy = try await TCPProxy.start(
            socket: fd, holdTimeout: holdTimeout, router: router, group: MultiThreadedEventLoopGroup.singleton)
        return (proxy, port)
    }

    /// A server on a fresh port, active as generation 1, and a proxy in front of it.
    fileprivate static func proxyToServer() async throws -> (Listener, TrafficRouter, ProxyListener, Int) {
        let server = try Listener()
        let router = TrafficRouter()
        router.setActive(TrafficRouter.Target(generation: 1, port: server.port))
        let (proxy, port) = try await Self.proxy(router: router)
        return (server, router, proxy, port)
    }

    @Test func aClientThatDoesNotReadStopsTheServersWritesInsteadOfFillingSafeWatchsMemory() async throws {
        let (server, _, proxy, port) = try await Self.proxyToServer()
        defer { Task { await proxy.close() } }

        let total = 64 << 20
        let client = try Socket(connectingTo: port, receiveBuffer: 64 << 10)
        let upstream = try await server.accept(sendBuffer: 64 << 10)
        // The server writes until a write makes no progress for a second: the client reads
        // nothing, so only the buffers in between fill.
        let written = await onThread { upstream.writePattern(total: total, stallAfter: 1) }
        #expect(written < 16 << 20, "\(written >> 20) MiB went into safe-watch for a client that reads nothing")

        // Once the client reads, the rest flows, every byte in order.
        async let rest = onThread { upstream.writePattern(total: total, from: written, stallAfter: nil) }
        let received = await onThread { client.readPattern(expecting: total) }
        #expect(await rest == total)
        #expect(received == total)
    }

    @Test func aClientThatShutsDownItsSendingSideStillGetsTheWholeAnswer() async throws {
        let (server, _, proxy, port) = try await Self.proxyToServer()
        defer { Task { await proxy.close() } }

        let client = try Socket(connectingTo: port)
        client.send(Array("the whole request".utf8))
        client.shutDownSending()
        let upstream = try await server.accept()
        // The server answers once the request has ended (it reads to end of input), then closes.
        let request = await onThread { upstream.readToEnd() }
        #expect(request.map { String(decoding: $0, as: UTF8.self) } == "the whole request", "the end of the request never reached the server")
        let answer = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        await onThread {
            upstream.send(answer)
            upstream.close()
        }
        #expect(await onThread { client.readToEnd() } == answer)
    }

    @Test func aConnectionWhileNoServerIsHealthyIsHeldThenForwarded() async throws {
        let server = try Listener()
        let router = TrafficRouter()
        let (proxy, port) = try await Self.proxy(router: router)
        defer { Task { await proxy.close() } }

        let client = try Socket(connectingTo: port)
        client.send(Array("sent while nothing serves".utf8))
        router.setActive(TrafficRouter.Target(generation: 1, port: server.port))
        let upstream = try await server.accept()
        #expect(await onThread { upstream.read(count: 25) } == Array("sent while nothing serves".utf8))
    }

    @Test func aConnectionIsClosedWhenNoServerBecomesHealthyWithinTheHoldTimeout() async throws {
        let router = TrafficRouter()
        let (proxy, port) = try await Self.proxy(router: router, holdTimeout: .milliseconds(200))
        defer { Task { await proxy.close() } }

        let client = try Socket(connectingTo: port)
        #expect(await onThread { client.readToEnd() } == [])
        #expect(router.connectionFailures.count == 1)
        #expect(router.connectionFailures.last?.contains("no server was healthy within serve.hold_timeout (200 ms)") == true)
    }

    @Test func aServerThatKeepsRefusingIsTriedAFewTimesThenTheClientIsClosed() async throws {
        let router = TrafficRouter()
        // A socket bound and never listening refuses connections.
        router.setActive(TrafficRouter.Target(generation: 7, port: try freeLoopbackPort()))
        let (proxy, port) = try await Self.proxy(router: router)
        defer { Task { await proxy.close() } }

        let client = try Socket(connectingTo: port)
        #expect(await onThread { client.readToEnd() } == [])
        let failure = try #require(router.connectionFailures.last)
        #expect(failure.contains("could not connect to the server \(ForwardedConnection.attempts) times, last to gen 7"), "\(failure)")
    }

    @Test func anOpenConnectionHoldsItsGenerationUntilItCloses() async throws {
        let (server, router, proxy, port) = try await Self.proxyToServer()
        defer { Task { await proxy.close() } }

        let client = try Socket(connectingTo: port)
        let upstream = try await server.accept()
        router.setActive(TrafficRouter.Target(generation: 2, port: server.port))
        // Still in flight for gen 1: the wait runs to its timeout.
        let start = ContinuousClock.now
        await router.waitUntilIdle(1, timeout: .milliseconds(300))
        #expect(ContinuousClock.now - start >= .milliseconds(300))
        // The client closes, and the server, reading, closes its end in turn: gen 1 is idle.
        client.close()
        await onThread {
            _ = upstream.readToEnd()
            upstream.close()
        }
        let closed = ContinuousClock.now
        await router.waitUntilIdle(1, timeout: .seconds(30))
        #expect(ContinuousClock.now - closed < .seconds(10))
    }

    /// A small write (a response head, a WebSocket frame) leaves at once rather than after Nagle's
    /// wait for the previous one's acknowledgement: every connection the listeners (HTTP and tcp)
    /// accept has TCP_NODELAY, as the kernel reports it.
    @Test func everyAcceptedConnectionSendsSmallWritesAtOnce() async throws {
        let fd = try ListeningSockets.bind(host: "127.0.0.1", port: 0)
        let port = try #require(ListeningSockets.localAddress(fd)?.port)
        let (values, seen) = AsyncStream<Int>.makeStream()
        @Sendable func record(_ channel: any NIOCore.Channel) throws {
            let options = try #require(channel.syncOptions)
            seen.yield(try options.getOption(ChannelOptions.tcpOption(.tcp_nodelay)))
        }
        let proxy = try await listen(on: fd, router: TrafficRouter(), group: MultiThreadedEventLoopGroup.singleton, setUp: record)
        defer { Task { await proxy.close() } }
        var accepted = values.makeAsyncIterator()
        for _ in 1...2 {
            let client = try Socket(connectingTo: port)
            defer { client.close() }
            let noDelay = try #require(await accepted.next())
            #expect(noDelay == 1)
        }
    }
}

/// Runs blocking socket work on a thread of its own, never on the concurrency pool.
private func onThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}

/// A blocking loopback listener standing in for a generation's server.
private final class Listener: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        self.fd = try ListeningSockets.bind(host: "127.0.0.1", port: 0)
        // Blocking: the test's own threads accept on it.
        _ = fcntl(self.fd, F_SETFL, fcntl(self.fd, F_GETFL) & ~O_NONBLOCK)
        self.port = ListeningSockets.localAddress(self.fd)?.port ?? 0
    }

    deinit { Glibc.close(self.fd) }

    /// The next connection; with `sendBuffer`, its kernel send buffer is that small.
    func accept(sendBuffer: Int32? = nil) async throws -> Socket {
        let fd = self.fd
        let accepted = await onThread { Glibc.accept(fd, nil, nil) }
        guard accepted >= 0 else { throw SocketFailure("accept: \(String(cString: strerror(errno)))") }
        let socket = Socket(fd: accepted)
        socket.setReceiveTimeout()
        if let sendBuffer { socket.setBuffer(SO_SNDBUF, sendBuffer) }
        return socket
    }
}

private struct SocketFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One blocking TCP connection.
private final class Socket: Sendable {
    let fd: Int32

    init(fd: Int32) {
        self.fd = fd
    }

    /// Connects to 127.0.0.1:`port`; with `receiveBuffer`, its kernel receive buffer is that small.
    convenience init(connectingTo port: Int, receiveBuffer: Int32? = nil) throws {
        self.init(fd: try connectLoopback(port: port, timeout: 20, receiveBuffer: receiveBuffer))
    }

    deinit { Glibc.close(self.fd) }

    /// A read that waits longer than 20 s ends as if the peer had closed: a test fails, not hangs.
    func setReceiveTimeout() {
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func setBuffer(_ option: Int32, _ size: Int32) {
        var size = size
        setsockopt(self.fd, SOL_SOCKET, option, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return }
            offset += sent
        }
    }

    func shutDownSending() {
        shutdown(self.fd, Int32(SHUT_WR))
    }

    func close() {
        shutdown(self.fd, Int32(SHUT_RDWR))
    }

    func read(count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count < count {
            let got = recv(self.fd, &buffer, min(buffer.count, count - bytes.count), 0)
            guard got > 0 else { break }
            bytes += buffer[0..<got]
        }
        return bytes
    }

    /// Everything until the peer ends its sending side; nil when 20 s pass without a byte or the
    /// connection fails instead.
    func readToEnd() -> [UInt8]? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = recv(self.fd, &buffer, buffer.count, 0)
            if got == 0 { return bytes }
            guard got > 0 else { return nil }
            bytes += buffer[0..<got]
        }
    }

    /// Writes bytes `from..<total` of a counting pattern; with `stallAfter`, stops at the first
    /// write that makes no progress for that many seconds. Returns where it stopped.
    func writePattern(total: Int, from start: Int = 0, stallAfter seconds: Int?) -> Int {
        var timeout = timeval(tv_sec: seconds ?? 0, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var offset = start
        var chunk = [UInt8](repeating: 0, count: 65536)
        while offset < total {
            let count = min(chunk.count, total - offset)
            for index in 0..<count { chunk[index] = Self.patternByte(offset + index) }
            let sent = Glibc.send(self.fd, chunk, count, Int32(MSG_NOSIGNAL))
            guard sent > 0 else { return offset }
            offset += sent
        }
        return offset
    }

    /// Reads `total` bytes of the counting pattern; returns how many arrived intact, in order.
    func readPattern(expecting total: Int) -> Int {
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while received < total {
            let got = recv(self.fd, &buffer, buffer.count, 0)
            guard got > 0 else { return received }
            for index in 0..<got where buffer[index] != Self.patternByte(received + index) { return received + index }
            received += got
        }
        return received
    }

    /// Not a multiple of any buffer size: a chunk lost, doubled or reordered shows.
    private static func patternByte(_ offset: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: offset % 251)
    }
}
