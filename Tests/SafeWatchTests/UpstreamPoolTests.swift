import Glibc
import NIOCore
import NIOPosix
import SafeWatchCore
import TestSupport
import Testing

@testable import SafeWatch

/// The proxy's pool of idle server connections, on a real event loop with real loopback
/// connections: nothing stays pooled past the idle timeout, nor once its generation no longer gets
/// new requests (an idle proxy holds no descriptors; a draining server is not kept waiting).
@Suite(.timeLimit(.minutes(2))) struct UpstreamPoolTests {
    @Test func aPooledConnectionIsClosedOnceIdleForTheIdleTimeout() async throws {
        try await Self.withPool { loop, pools, port in
            let pooledAt = ContinuousClock.now
            let channel = try await Self.pooledConnection(to: port, generation: 1, pools: pools, loop: loop)
            #expect(try await Self.pooledCount(pools, loop) == 1)
            // Nothing uses it: it is closed by the pool itself, not at the next use.
            #expect(await waitUntil(limit: .seconds(15)) { !channel.isActive })
            #expect(ContinuousClock.now - pooledAt >= .milliseconds(1_900))
            #expect(try await Self.pooledCount(pools, loop) == 0)
        }
    }

    @Test func connectionsToAGenerationTheRouterLeftAreClosedAndNotPooledAgain() async throws {
        // Idle for a minute: under load the steps below can take seconds, and a connection closed
        // for its age would look like one closed for its generation.
        try await Self.withPool(maximumIdleTime: .seconds(60)) { loop, pools, port in
            let router = TrafficRouter()
            router.setActive(TrafficRouter.Target(generation: 1, port: port))
            pools.follow(router)
            let old = try await Self.pooledConnection(to: port, generation: 1, pools: pools, loop: loop)
            #expect(try await Self.pooledCount(pools, loop) == 1)

            router.setActive(TrafficRouter.Target(generation: 2, port: port))
            // The count is read on the loop after the router's word got there: no waiting.
            #expect(try await Self.pooledCount(pools, loop) == 0)
            #expect(!old.isActive)

            // An exchange with generation 1 that ends after the swap: its connection is closed.
            let late = try await Self.pooledConnection(to: port, generation: 1, pools: pools, loop: loop)
            #expect(try await Self.pooledCount(pools, loop) == 0)
            #expect(!late.isActive)
            let current = try await Self.pooledConnection(to: port, generation: 2, pools: pools, loop: loop)
            #expect(try await Self.pooledCount(pools, loop) == 1)
            #expect(current.isActive)
        }
    }

    /// A loop of its own with its pool (connections idle for `maximumIdleTime` are closed), and a loopback listener that never accepts (connections
    /// complete in the kernel and wait in its backlog).
    private static func withPool(
        maximumIdleTime: TimeAmount = .seconds(2), _ body: (any EventLoop, UpstreamPools, Int) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listener = try listenLoopback(backlog: 16)
        defer { close(listener.fd) }
        do {
            try await body(group.next(), UpstreamPools(group: group, maximumIdleTime: maximumIdleTime), listener.port)
        } catch {
            try await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// A connection to `port` made on `loop` and put in its pool as one to `generation`.
    private static func pooledConnection(
        to port: Int, generation: Generation, pools: UpstreamPools, loop: any EventLoop
    ) async throws -> any Channel {
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UpstreamHandler()) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await loop.submit {
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            pools.pool(for: loop)?.put(channel, handler, generation: generation)
        }.get()
        return channel
    }

    private static func pooledCount(_ pools: UpstreamPools, _ loop: any EventLoop) async throws -> Int {
        try await loop.submit { pools.pool(for: loop)?.count ?? -1 }.get()
    }
}
