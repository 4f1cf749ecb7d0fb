import NIOCore
import NIOPosix
import SafeWatchCore

/// The public listener in tcp mode: each new connection is joined byte for byte to the newest
/// healthy generation's private port, for what HTTP/1.1 routing cannot carry (HTTP/2 and gRPC,
/// databases, custom protocols).
///
/// Nothing is parsed, so nothing is routed per request: a connection stays with the generation it
/// reached until either side closes it, and counts as in flight for it, so a replaced generation
/// is stopped once its last connection has closed (or at `stop_timeout`). A keep-alive client
/// reaches the new generation when it reconnects.
public enum TCPProxy {
    /// Starts forwarding connections accepted on `socket`, a listening socket safe-watch bound or
    /// systemd passed; the proxy owns it from here on.
    public static func start(
        socket: Int32, holdTimeout: Duration, router: TrafficRouter, group: any EventLoopGroup
    ) async throws -> ProxyListener {
        try await listen(on: socket, router: router, group: group) { channel in
            let glue = GlueHandler()
            try channel.pipeline.syncOperations.addHandler(glue)
            try channel.pipeline.syncOperations.addHandler(ForwardedConnection(router: router, holdTimeout: holdTimeout, glue: glue))
        }
    }
}

/// One client connection in tcp mode: picks the generation, connects to it and glues the two
/// together. Behind the glue it sees no bytes, only the connection opening and closing.
final class ForwardedConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// Connection attempts per client connection: one, and retries while the generation refuses.
    static let attempts = 5

    private let router: TrafficRouter
    private let holdTimeout: Duration
    private let glue: GlueHandler
    private var context: ChannelHandlerContext?
    /// The generation counted for this connection, until it ends.
    private var routedTo: Generation?
    private var failedAttempts = 0
    private var closed = false

    init(router: TrafficRouter, holdTimeout: Duration, glue: GlueHandler) {
        self.router = router
        self.holdTimeout = holdTimeout
        self.glue = glue
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.route()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Once joined, the glue closes the server's side after what the client sent last is written.
        self.closed = true
        self.finish()
        context.fireChannelInactive()
    }

    /// To the active generation, or, while none is healthy, to the next one that becomes healthy
    /// within `serve.hold_timeout`.
    private func route() {
        guard let context = self.context, !self.closed else { return }
        if let target = self.router.acquireActive() {
            self.connect(to: target)
            return
        }
        self.router.acquire(on: context.eventLoop, hold: TimeAmount(saturating: self.holdTimeout)).assumeIsolated().whenSuccess { target in
            guard let target else {
                self.giveUp("no server was healthy within serve.hold_timeout (\(self.holdTimeout.humanReadable))")
                return
            }
            self.connect(to: target)
        }
    }

    private func connect(to target: TrafficRouter.Target) {
        guard let context = self.context, !self.closed else {
            self.router.release(target.generation)
            return
        }
        self.routedTo = target.generation
        // Not joined until connected: a failed attempt must not take the client down with it, and
        // the server's first bytes (an HTTP/2 SETTINGS frame, a database's greeting) wait
        // unread until they have somewhere to go.
        let upstreamGlue = NIOLoopBound(GlueHandler(), eventLoop: context.eventLoop)
        // An address, not a host name: no resolver thread, no address-family race per connection.
        guard let address = try? SocketAddress(ipAddress: "127.0.0.1", port: target.port) else {
            context.close(promise: nil)
            return
        }
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(2))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(upstreamGlue.value)
                }
            }
            .connect(to: address)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard !self.closed else {
                        channel.close(promise: nil)
                        return
                    }
                    self.glue.join(upstreamGlue.value)
                    // The server closing ends the connection for the generation, even while the
                    // client is still being sent the last of it.
                    channel.closeFuture.assumeIsolated().whenComplete { _ in self.finish() }
                case .failure(let error):
                    self.finish()
                    self.retry(after: "gen \(target.generation) (127.0.0.1:\(target.port)): \(error)")
                }
            }
    }

    /// Nothing was sent to a generation that refused the connection: try again, maybe on a newer
    /// one (a generation being replaced, or one that just crashed, is leaving the router).
    private func retry(after failure: String) {
        guard let context = self.context, !self.closed else { return }
        self.failedAttempts += 1
        guard self.failedAttempts < Self.attempts else {
            self.giveUp("could not connect to the server \(self.failedAttempts) times, last to \(failure)")
            return
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(20 * Int64(self.failedAttempts))) {
            self.route()
        }
    }

    private func giveUp(_ reason: String) {
        guard let context = self.context, !self.closed else { return }
        self.router.connectionSetupFailed("tcp mode: \(reason)")
        context.close(promise: nil)
    }

    /// The connection no longer holds its generation.
    private func finish() {
        if let generation = self.routedTo {
            self.routedTo = nil
            self.router.release(generation)
        }
    }
}
