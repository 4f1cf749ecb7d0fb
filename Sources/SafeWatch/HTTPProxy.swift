import NIOCore
import NIOHTTP1
import NIOPosix
import SafeWatchCore

/// The public listener in proxy mode: an HTTP/1.1-aware reverse proxy.
///
/// A byte-level proxy would pin a keep-alive client to the generation it first reached, and a
/// request sent in the instant that generation closes the connection would fail. Here
/// every request is routed on its own to the newest generation; client connections stay open
/// across swaps, and an upstream connection that closes before answering is retried on a fresh one.
public final class HTTPProxy: Sendable {
    public let router: TrafficRouter
    private let channel: any Channel

    private init(router: TrafficRouter, channel: any Channel) {
        self.router = router
        self.channel = channel
    }

    /// Starts proxying on `socket`, a listening socket safe-watch bound or systemd passed; the
    /// proxy owns it from here on.
    public static func start(
        socket: Int32, holdTimeout: Duration, router: TrafficRouter, group: any EventLoopGroup
    ) async throws -> HTTPProxy {
        let hold = TimeAmount(saturating: holdTimeout)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptCounter(router: router))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Set here rather than with childChannelOption: a connection NIO cannot set up
                    // is closed without a word, and this one is counted and logged instead.
                    // TCP_NODELAY is an IPPROTO_TCP option: as a SOL_SOCKET one (`.socketOption`)
                    // the same number is SO_DEBUG, which only CAP_NET_ADMIN may set.
                    do {
                        try channel.syncOptions?.setOption(.tcpOption(.tcp_nodelay), value: 1)
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(ProxyHandler(router: router, hold: hold))
                    } catch {
                        router.connectionSetupFailed("\(error)")
                        throw error
                    }
                }
            }
        let channel = try await bootstrap.withBoundSocket(socket).get()
        router.addListener(channel)
        return HTTPProxy(router: router, channel: channel)
    }

    public func close() async {
        try? await self.channel.close()
    }
}

/// Counts each connection the moment the listener accepts it, before its own pipeline runs on its
/// event loop, so a connection accepted just before safe-watch stops is waited for too.
private final class AcceptCounter: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel

    private let router: TrafficRouter

    init(router: TrafficRouter) {
        self.router = router
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let router = self.router
        router.connectionAccepted()
        self.unwrapInboundIn(data).closeFuture.whenComplete { _ in router.connectionClosed() }
        context.fireChannelRead(data)
    }
}

/// One client connection: takes each whole request, sends it to the generation the router names,
/// and streams the answer back.
final class ProxyHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private struct Request {
        var head: HTTPRequestHead
        var body: ByteBuffer?
    }

    private struct Upstream {
        var channel: any Channel
        var generation: Generation
        /// False once the server said `Connection: close`.
        var reusable: Bool
    }

    private let router: TrafficRouter
    private let hold: TimeAmount
    private var context: ChannelHandlerContext?
    private var receiving: Request?
    /// The request being forwarded, and the generation counted for it.
    private var forwarding: Request?
    private var routedTo: Generation?
    private var responseStarted = false
    private var attempts = 0
    /// Counts requests on this connection, so a retry scheduled for one never routes the next.
    private var requestNumber = 0
    private var upstream: Upstream?
    /// The router's id for this connection.
    private var clientID: Int?
    /// safe-watch is stopping: the response in progress is the connection's last.
    private var closing = false
    private var tunnelling = false
    /// The client's address for X-Forwarded-For, formatted once per connection.
    private var remoteIP: String?

    /// Requests safe to send twice when the first upstream connection died without an answer.
    private static let idempotent: [HTTPMethod] = [.GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE]
    private static let hopByHop = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate",
        "proxy-authorization", "expect",
    ]

    init(router: TrafficRouter, hold: TimeAmount) {
        self.router = router
        self.hold = hold
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        self.clientID = self.router.clientOpened { grace in
            eventLoop.execute { handler.value.shutdownBegan(idleGrace: grace) }
        }
        context.fireChannelActive()
    }

    /// safe-watch is stopping: finish what is in progress, then close; an idle connection gets
    /// `idleGrace` to send one last request.
    private func shutdownBegan(idleGrace: TimeAmount) {
        guard let context = self.context else { return }
        self.closing = true
        if self.tunnelling {
            context.close(promise: nil)
            return
        }
        guard self.forwarding == nil, self.receiving == nil else { return }
        let number = self.requestNumber
        context.eventLoop.assumeIsolated().scheduleTask(in: idleGrace) {
            if self.requestNumber == number, self.forwarding == nil, self.receiving == nil { self.context?.close(promise: nil) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.receiving = Request(head: head, body: nil)
        case .body(var chunk):
            if self.receiving?.body == nil {
                self.receiving?.body = chunk
            } else {
                self.receiving?.body?.writeBuffer(&chunk)
            }
        case .end:
            guard let request = self.receiving else { return }
            self.receiving = nil
            if Self.isUpgrade(request.head) {
                self.tunnel(request, context: context)
                return
            }
            self.forwarding = request
            self.requestNumber += 1
            self.attempts = 0
            self.route()
        }
    }

    // MARK: Upgrades (WebSocket)

    private static func isUpgrade(_ head: HTTPRequestHead) -> Bool {
        head.headers.contains(name: "upgrade")
            && head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
    }

    /// Hands the connection over to the active generation as a byte tunnel: the request is sent
    /// as it came, and whatever follows (101 Switching Protocols, frames) is relayed untouched. A
    /// tunnel stays with the generation it reached; it ends when that server closes it.
    private func tunnel(_ request: Request, context: ChannelHandlerContext) {
        // From here on the client's bytes are not HTTP: the glue goes first in the pipeline, so it
        // takes every byte from the socket and writes straight to it; the HTTP codecs behind it
        // never see traffic again.
        // HTTPServerPipelineHandler holds back reads until the response has passed it, which the
        // tunnel's bytes never do: take it out.
        let clientGlue = GlueHandler()
        self.tunnelling = true
        do {
            try context.pipeline.syncOperations.addHandler(clientGlue, position: .first)
            let pipelining = try context.pipeline.syncOperations.handler(type: HTTPServerPipelineHandler.self)
            context.pipeline.syncOperations.removeHandler(pipelining, promise: nil)
        } catch {
            context.close(promise: nil)
            return
        }
        context.channel.read()
        var bytes = context.channel.allocator.buffer(capacity: 1024)
        bytes.writeString("\(request.head.method.rawValue) \(request.head.uri) HTTP/1.1\r\n")
        for (name, value) in request.head.headers { bytes.writeString("\(name): \(value)\r\n") }
        bytes.writeString("\r\n")
        if var body = request.body { bytes.writeBuffer(&body) }
        let requestBytes = bytes
        let glue = NIOLoopBound(clientGlue, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let channel = context.channel
        self.router.acquire(on: eventLoop, hold: self.hold).assumeIsolated().whenSuccess { target in
            guard let target else {
                channel.close(promise: nil)
                return
            }
            // A tunnel is not a request in flight: it must not hold the old server's drain.
            self.router.release(target.generation)
            ClientBootstrap(group: eventLoop)
                .connectTimeout(.seconds(2))
                .channelInitializer { upstream in
                    upstream.eventLoop.makeCompletedFuture {
                        let upstreamGlue = GlueHandler()
                        try upstream.pipeline.syncOperations.addHandler(upstreamGlue)
                        glue.value.join(upstreamGlue)
                    }
                }
                .connect(host: "127.0.0.1", port: target.port)
                .assumeIsolated()
                .whenComplete { result in
                    switch result {
                    case .success(let upstream):
                        upstream.writeAndFlush(requestBytes, promise: nil)
                    case .failure:
                        channel.close(promise: nil)
                    }
                }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finishRouting()
        self.forwarding = nil
        self.dropUpstream()
        if let id = self.clientID {
            self.clientID = nil
            self.router.clientClosed(id)
        }
        context.fireChannelInactive()
    }

    /// The client keeps its connection unless it asked to close it or safe-watch is stopping.
    private func keepsConnection(_ request: Request) -> Bool {
        request.head.isKeepAlive && !self.closing
    }

    /// Forgets the upstream connection, then closes it. In that order: closing can call
    /// `upstreamClosed` at once, which must not take it for a failure of the current request.
    private func dropUpstream() {
        let upstream = self.upstream
        self.upstream = nil
        upstream?.channel.close(promise: nil)
    }

    // MARK: Routing

    private func route() {
        guard let context = self.context, self.forwarding != nil else { return }
        // The usual case, a server is healthy, needs no future.
        if let target = self.router.acquireActive() {
            self.routed(to: target)
            return
        }
        self.router.acquire(on: context.eventLoop, hold: self.hold).assumeIsolated().whenSuccess { target in
            self.routed(to: target)
        }
    }

    private func routed(to target: TrafficRouter.Target?) {
        guard self.forwarding != nil, self.context != nil else {
            if let target { self.router.release(target.generation) }
            return
        }
        guard let target else {
            self.respondWithError(.serviceUnavailable, "safe-watch: no healthy server yet; see the safe-watch terminal for the build or health-check failure\n")
            return
        }
        self.finishRouting()  // never count one request twice
        self.routedTo = target.generation
        self.send(to: target)
    }

    private func send(to target: TrafficRouter.Target) {
        guard let context = self.context else { return }
        if let upstream = self.upstream, upstream.generation == target.generation, upstream.reusable,
            upstream.channel.isActive
        {
            self.write(on: upstream)
            return
        }
        self.dropUpstream()
        let owner = NIOLoopBound(self, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(.seconds(2))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(owner: owner))
                }
            }
            .connect(host: "127.0.0.1", port: target.port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard self.forwarding != nil, self.context != nil else {
                        channel.close(promise: nil)
                        return
                    }
                    let upstream = Upstream(channel: channel, generation: target.generation, reusable: true)
                    self.upstream = upstream
                    self.write(on: upstream)
                case .failure:
                    // Refused: the generation is gone or going. Route again (maybe to a newer one).
                    self.retry(idempotentOnly: false)
                }
            }
    }

    private func write(on upstream: Upstream) {
        guard let request = self.forwarding else { return }
        var head = request.head
        for name in Self.hopByHop { head.headers.remove(name: name) }
        if self.remoteIP == nil { self.remoteIP = self.context?.channel.remoteAddress?.ipAddress }
        if let remote = self.remoteIP {
            let forwarded = head.headers.first(name: "x-forwarded-for").map { "\($0), \(remote)" } ?? remote
            head.headers.replaceOrAdd(name: "x-forwarded-for", value: forwarded)
        }
        head.version = .http1_1
        upstream.channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body = request.body {
            upstream.channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
        }
        upstream.channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    private func retry(idempotentOnly: Bool) {
        guard let context = self.context, let request = self.forwarding else { return }
        self.finishRouting()
        self.attempts += 1
        if self.attempts > 5 || (idempotentOnly && !Self.idempotent.contains(request.head.method)) {
            self.respondWithError(.badGateway, "safe-watch: the server closed the connection without answering\n")
            return
        }
        // Give a generation that is being replaced a moment to leave the router.
        let number = self.requestNumber
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(20 * Int64(self.attempts))) {
            guard self.requestNumber == number else { return }
            self.route()
        }
    }

    private func finishRouting() {
        if let generation = self.routedTo {
            self.routedTo = nil
            self.router.release(generation)
        }
    }

    // MARK: Responses from the upstream

    fileprivate func upstreamRead(_ part: HTTPClientResponsePart, from channel: any Channel) {
        guard let context = self.context, let request = self.forwarding, self.upstream?.channel === channel else { return }
        switch part {
        case .head(var head):
            if head.status.code < 200 { return }  // 100 Continue: the body was sent already
            self.responseStarted = true
            if !head.isKeepAlive { self.upstream?.reusable = false }
            for name in Self.hopByHop { head.headers.remove(name: name) }
            head.version = request.head.version
            if !self.keepsConnection(request) { head.headers.replaceOrAdd(name: "connection", value: "close") }
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        case .body(let chunk):
            // Flushed once per read from the server (`upstreamReadComplete`), not per chunk.
            context.write(self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
        case .end(let trailers):
            let keepAlive = self.keepsConnection(request)
            self.forwarding = nil
            self.responseStarted = false
            self.finishRouting()
            if self.upstream?.reusable == false {
                self.dropUpstream()
            }
            let written = context.writeAndFlush(self.wrapOutboundOut(.end(trailers)))
            if !keepAlive {
                written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        }
    }

    fileprivate func upstreamReadComplete(from channel: any Channel) {
        guard self.upstream?.channel === channel else { return }
        self.context?.flush()
    }

    fileprivate func upstreamClosed(_ channel: any Channel) {
        guard self.upstream?.channel === channel else { return }
        self.upstream = nil
        guard self.forwarding != nil else { return }
        if self.responseStarted {
            // Half an answer cannot be mended: end the client's connection as the server did.
            self.finishRouting()
            self.forwarding = nil
            self.context?.close(promise: nil)
            return
        }
        // Closed before answering: a keep-alive connection the server shut just as we reused it
        // (safe to resend), or a server that died mid-request (resend only idempotent ones: the
        // two cannot be told apart from here).
        self.retry(idempotentOnly: true)
    }

    private func respondWithError(_ status: HTTPResponseStatus, _ message: String) {
        guard let context = self.context, let request = self.forwarding else { return }
        self.finishRouting()
        self.forwarding = nil
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        headers.add(name: "content-length", value: String(message.utf8.count))
        let keepAlive = self.keepsConnection(request)
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: request.head.version, status: status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: message)))), promise: nil)
        let written = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

/// The proxy's connection to one generation; hands everything to the client's handler, which lives
/// on the same event loop.
private final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let owner: NIOLoopBound<ProxyHandler>

    init(owner: NIOLoopBound<ProxyHandler>) {
        self.owner = owner
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.owner.value.upstreamRead(self.unwrapInboundIn(data), from: context.channel)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.owner.value.upstreamReadComplete(from: context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.owner.value.upstreamClosed(context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
