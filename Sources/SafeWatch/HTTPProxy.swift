import NIOCore
import NIOPosix
import SafeWatchCore

/// The public listener in proxy mode: an HTTP/1.1 reverse proxy that reads only the framing.
///
/// A byte-level (TCP) proxy would pin a keep-alive client to the generation it first reached.
/// Here every request is routed on its own to the newest healthy generation, so client
/// connections stay open across swaps. Apart from that, the proxy only finds where each head and
/// body ends (HTTPFraming): heads go upstream as the bytes received, minus the connection's own
/// fields and plus the forwarding ones; bodies stream through in both directions, read from one
/// side only while the other can take them, so memory per connection stays bounded whatever the
/// size of a body or the speed of a client.
public enum HTTPProxy {
    /// Starts proxying on `socket`, a listening socket safe-watch bound or systemd passed; the
    /// proxy owns it from here on. `addsForwardingFields`: X-Forwarded-For, X-Forwarded-Proto
    /// and Forwarded go to the server with each request.
    public static func start(
        socket: Int32, holdTimeout: Duration, addsForwardingFields: Bool = true, router: TrafficRouter,
        group: any EventLoopGroup, browser: BrowserEndpoints? = nil
    ) async throws -> ProxyListener {
        let pools = UpstreamPools(group: group)
        pools.follow(router)
        let settings = ProxyConnection.Settings(
            hold: TimeAmount(saturating: holdTimeout), addsForwardingFields: addsForwardingFields, pools: pools,
            browser: browser)
        return try await listen(on: socket, router: router, group: group) { channel in
            try ProxyConnection.bound(channel)
            try channel.pipeline.syncOperations.addHandler(ProxyConnection(router: router, settings: settings))
        }
    }
}

/// A proxy's listener, HTTP or tcp: what safe-watch keeps to close at exit.
public final class ProxyListener: Sendable {
    private let channel: any Channel

    fileprivate init(channel: any Channel) {
        self.channel = channel
    }

    public func close() async {
        try? await self.channel.close()
    }
}

/// Takes over `socket`, a listening socket safe-watch bound or systemd passed, for a proxy: every
/// accepted connection is counted, has TCP_NODELAY, gets remote half-closure (a client that shuts
/// its side after sending still gets the answer), then `setUp`. A connection that cannot be set up
/// is counted and logged by the router rather than closed without a word, which is why the
/// options are set here and not with childChannelOption. Used by both listeners, HTTP and tcp.
func listen(
    on socket: Int32, router: TrafficRouter, group: any EventLoopGroup,
    setUp: @escaping @Sendable (any Channel) throws -> Void
) async throws -> ProxyListener {
    let bootstrap = ServerBootstrap(group: group)
        // Up to 32 waiting connections are accepted each time the listener is ready, not NIO's
        // default of 4 per turn of the loop: with 64 clients opening a connection per request,
        // the rest waited in the kernel's queue behind a whole turn of reads and writes
        // (wrk -t2 -c64, Connection: close: +12 % throughput, −12 % CPU per request, median
        // latency −0.9 ms).
        .serverChannelOption(.maxMessagesPerRead, value: 32)
        .serverChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(AcceptCounter(router: router))
            }
        }
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                do {
                    // No TCP_NODELAY here: ServerBootstrap sets it on the listening socket, and
                    // Linux copies it to every connection accepted there. Set again on each one,
                    // it cost a setsockopt and the getsockname NIO makes before it: 2 of the 15
                    // system calls of a request on a new connection.
                    try channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
                    try setUp(channel)
                } catch {
                    router.connectionSetupFailed("\(error)")
                    throw error
                }
            }
        }
    let channel = try await bootstrap.withBoundSocket(socket).get()
    router.addListener(channel)
    return ProxyListener(channel: channel)
}

/// Counts each connection the moment the listener accepts it, before its own pipeline runs on its
/// event loop, so a connection accepted just before safe-watch stops is waited for too. Both
/// listeners, HTTP and tcp, use it.
final class AcceptCounter: ChannelInboundHandler, Sendable {
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

/// Opens the proxy's connections to a generation's private port. The proxy's settings carry
/// one, so tests can stand in channels of their own for the servers.
protocol UpstreamConnector: Sendable {
    /// A connection to `target`, on `eventLoop`, whose pipeline ends in an `UpstreamHandler`.
    /// A failed future means nothing reached the server (refused, or timed out connecting).
    func connect(to target: TrafficRouter.Target, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel>
}

/// Connects TCP sockets to 127.0.0.1, bounded as client connections are.
struct SocketUpstreamConnector: UpstreamConnector {
    func connect(to target: TrafficRouter.Target, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        // An address, not a host name: `connect(host:port:)` would resolve "127.0.0.1" on a
        // thread pool and race address families for every connection.
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: "127.0.0.1", port: target.port)
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(2))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try ProxyConnection.bound(channel)
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
            .connect(to: address)
    }
}

/// One client connection, and its connection to the generation serving it.
///
/// Where the connection is lives in one `State` whose cases carry what that place needs (the
/// exchange, the server connection), so no combination of fields can contradict another.
/// Requests are taken one at a time: a pipelined request waits in `received` (unread beyond one
/// read) until the response before it has gone out. Both channels run on the same event loop.
///
/// Two places are meant to be extended: `headAction(for:head:browser:)` decides whether a request
/// is answered by the proxy itself instead of forwarded (the browser side's requests are handed
/// over with the connection), and every response goes to the client through
/// `forwardResponseHead` (its head, and a body that came whole with it; a full HTML page is held
/// back there and gathered to get the live-reload script) and `writeResponseBody` (the rest of
/// the body, as it arrives).
final class ProxyConnection: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Settings: Sendable {
        var hold: TimeAmount
        var addsForwardingFields: Bool
        var pools = UpstreamPools(group: nil)
        var connector: any UpstreamConnector = SocketUpstreamConnector()
        /// The browser side (`[browser]`): answers under its prefix, injects the live-reload script.
        var browser: BrowserEndpoints?
    }

    /// Where the connection is, with what it holds there.
    private enum State {
        /// Reading a request head. `kept`: the server connection the last exchange left open and
        /// reusable. `lastRequest`: safe-watch is stopping, so the next request is the last.
        case awaitingHead(kept: Upstream?, lastRequest: Bool)
        /// A request whose head was read, without a connection to a server: waiting for a healthy
        /// generation, for a connection to it, or for a retry's pause, or about to be answered by
        /// the proxy itself. `kept` as in `awaitingHead`, reused if the request goes to its generation.
        case routing(Exchange, kept: Upstream?)
        /// The request is going upstream (its body may still be arriving) and the response coming back.
        case exchanging(Exchange, Upstream)
        /// After a 101: bytes pass both ways untouched until either side closes. `counted`: the
        /// generation it stays counted against, so a swap drains it.
        case tunnel(Upstream, counted: Generation?)
        /// The last answer is out (or the connection is ending): nothing goes to a server any more,
        /// and what the client still sends is discarded.
        case closing

        /// The server connection held, whatever the state.
        var upstream: Upstream? {
            switch self {
            case .awaitingHead(let kept, _), .routing(_, let kept): kept
            case .exchanging(_, let upstream), .tunnel(let upstream, _): upstream
            case .closing: nil
            }
        }
    }

    /// How much of a body is left to pass on.
    private enum BodyProgress {
        case done
        case length(UInt64)
        case chunked(ChunkedBodyScanner)
        case untilClose

        init(_ framing: HTTPFraming.BodyFraming) {
            switch framing {
            case .none: self = .done
            case .length(let length): self = .length(length)
            case .chunked: self = .chunked(ChunkedBodyScanner())
            case .untilClose: self = .untilClose
            }
        }

        var isDone: Bool {
            if case .done = self { true } else { false }
        }
    }

    /// One request and its response. A class: the handler updates it on every read, and a
    /// struct held in `State` would be copied (and the parsed head's arrays retained) each time.
    private final class Exchange {
        let request: RequestHead
        /// The head as it goes to the server, kept until the server answers: a request refused on a
        /// reused connection goes again. Nil once answered.
        var forwardedHead: ByteBuffer?
        var requestBody: BodyProgress
        /// Request bytes went upstream beyond what can be replayed (a body).
        var sentBody = false
        /// The generation this request is counted against in the router, until it is answered.
        var counted: Generation?
        var attempts = 0
        /// When the first connection for this request was refused or dropped.
        var firstFailure: NIODeadline?
        /// Times the request went again after it may have reached a server.
        var replays = 0
        var response: ResponseProgress = .awaitingHead(partial: nil)
        /// The client keeps its connection once this exchange is over.
        var clientKeeps: Bool
        /// The response is sent de-chunked (a chunked response to an HTTP/1.0 client).
        var dechunking = false
        /// An HTML page being gathered to get the live-reload script (`[browser]`).
        var rewriter: HTMLResponseRewriter?
        /// When a page still being gathered is let go without the script.
        var gatheringLimit: Scheduled<Void>?

        init(request: RequestHead, forwardedHead: ByteBuffer, requestBody: BodyProgress, clientKeeps: Bool) {
            self.request = request
            self.forwardedHead = forwardedHead
            self.requestBody = requestBody
            self.clientKeeps = clientKeeps
        }
    }

    private enum ResponseProgress {
        /// `partial`: the start of a head that did not arrive whole.
        case awaitingHead(partial: ByteBuffer?)
        case body(BodyProgress, keepAlive: Bool)
    }

    /// A connection to a server. Any one held outside an exchange may be reused: one that cannot
    /// (the server said it closes, or a response left it in an unknown state) is closed at once.
    private struct Upstream {
        var handler: UpstreamHandler
        var channel: any Channel
        var generation: Generation
        /// Since when it has waited for the client's next request (nil: in use, or new).
        var idleSince: NIODeadline?
    }

    /// What the proxy does with a request whose head it read whole.
    enum HeadAction {
        /// Route it to the active generation.
        case forward
        /// Answer it from the proxy, without a server.
        case answerLocally(LocalAnswer)
        /// Give the connection to the browser side (`[browser] prefix`), which answers on it.
        case handOver(BrowserEndpoints.Request)
    }

    /// An answer the proxy writes itself.
    struct LocalAnswer {
        var status: Int
        var reason: String
        var contentType = "text/plain; charset=utf-8"
        var body: String
    }

    private static let lingerTimeout = TimeAmount.seconds(2)
    /// How long an HTML page may take to arrive whole and get the live-reload script.
    static let gatheringLimit = TimeAmount.milliseconds(500)

    private let router: TrafficRouter
    private let settings: Settings
    private var context: ChannelHandlerContext?
    private var state = State.awaitingHead(kept: nil, lastRequest: false)
    /// Client bytes not passed on yet: a head in progress, a body's next part, a pipelined request.
    private var received: ByteBuffer?
    /// How much of `received` was searched for the end of the head already.
    private var headSearched = 0
    /// The client asked for more bytes while the proxy could not take them.
    private var clientReadPending = false
    /// Counts requests on this connection, so a retry or timer set for one never acts on the next.
    private var requestNumber = 0
    private var clientID: Int?
    private var forwarding: ForwardingFields?
    /// Idle server connections shared by the client connections on this event loop.
    private var pool: UpstreamPool?
    /// Where heads are rewritten; kept, with its capacity, for the connection's next request.
    private var headScratch: [UInt8] = []
    /// The forwarded request heads, one at a time: the storage is written again for the next
    /// request once the server has answered (the exchange let go of it), so no allocation.
    private var forwardedHeads = ByteBuffer()
    /// Bytes were written to the client since its last flush.
    private var clientUnflushed = false

    /// What one connection may hold in memory: one read of at most 32 KiB, and at most 32 KiB
    /// queued for writing before the other side stops being read (NIO's defaults are twice
    /// that). With a head of at most 64 KiB, a client connection and its server connection hold
    /// about 200 KiB at worst, whatever the size of the bodies.
    static func bound(_ channel: any Channel) throws {
        try channel.syncOptions?.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 32 * 1024))
        try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: 16 * 1024, high: 32 * 1024))
    }

    init(router: TrafficRouter, settings: Settings) {
        self.router = router
        self.settings = settings
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.pool = self.settings.pools.pool(for: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if self.settings.addsForwardingFields {
            self.forwarding = ForwardingFields(clientAddress: context.channel.remoteAddress?.ipAddress ?? "unknown")
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        self.clientID = self.router.clientOpened { grace in
            eventLoop.execute { handler.value.shutdownBegan(idleGrace: grace) }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let leaving = self.state
        self.state = .closing
        switch leaving {
        case .awaitingHead(let kept, _):
            self.pool(kept)
        case .routing(let exchange, let kept):
            self.release(exchange)
            kept?.channel.close(promise: nil)
        case .exchanging(let exchange, let upstream):
            self.release(exchange)
            upstream.channel.close(promise: nil)
        case .tunnel(let upstream, let counted):
            if let counted { self.router.release(counted) }
            upstream.channel.close(promise: nil)
        case .closing:
            break
        }
        self.received = nil
        if let id = self.clientID {
            self.clientID = nil
            self.router.clientClosed(id)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// The client shut its side: it sends nothing more, but may still read the answer.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .inputClosed = event as? ChannelEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch self.state {
        case .routing(let exchange, _), .exchanging(let exchange, _):
            exchange.clientKeeps = false
            if exchange.requestBody.isDone { return }  // the request is whole: answer it, then close
            // The body will never be complete.
            self.abortExchange()
        case .tunnel(let upstream, _):
            upstream.channel.close(mode: .output, promise: nil)
        case .awaitingHead, .closing:
            context.close(promise: nil)
        }
    }

    // MARK: Reading from the client, with backpressure

    /// Whether the client's next bytes can be taken now.
    ///
    /// Bytes that cannot go on at once (a pipelined request, a body while the request is routed)
    /// wait in `received`, up to one head's worth. Reading on in that case, rather than stopping,
    /// spares the event loop taking the socket out of epoll and putting it back for every request.
    private var readsClient: Bool {
        switch self.state {
        case .closing:
            return true
        case .awaitingHead, .routing:
            return self.receivedBytes < HTTPFraming.maxHeadLength
        case .exchanging(let exchange, let upstream):
            if exchange.requestBody.isDone { return self.receivedBytes < HTTPFraming.maxHeadLength }
            return upstream.channel.isWritable
        case .tunnel(let upstream, _):
            return upstream.channel.isWritable
        }
    }

    private var receivedBytes: Int { self.received?.readableBytes ?? 0 }

    func read(context: ChannelHandlerContext) {
        if self.readsClient {
            context.read()
        } else {
            self.clientReadPending = true
        }
    }

    private func resumeClientReads() {
        guard self.clientReadPending, self.readsClient, let context = self.context else { return }
        self.clientReadPending = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.state.upstream?.handler.resumeReads() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        switch self.state {
        case .closing:
            return
        case .tunnel(let upstream, _):
            upstream.handler.write(bytes)
            return
        case .awaitingHead, .routing, .exchanging:
            break
        }
        if self.received == nil || self.received?.readableBytes == 0 {
            self.received = bytes
        } else {
            self.received?.writeBuffer(&bytes)
        }
        self.processReceived()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.state.upstream?.handler.flush()
        context.fireChannelReadComplete()
    }

    /// Takes what it can from `received`: a head, or the next part of the current body.
    private func processReceived() {
        while self.context != nil {
            switch self.state {
            case .awaitingHead(let kept, let lastRequest):
                guard self.takeHead(kept: kept, lastRequest: lastRequest) else { return }
            case .exchanging(let exchange, let upstream):
                self.passRequestBody(exchange, to: upstream)
                return
            case .routing, .tunnel, .closing:
                return
            }
        }
    }

    /// Takes a request head from `received` if all of it is there, and starts routing it (or
    /// answers it). Returns whether a head was taken (or a refusal sent).
    private func takeHead(kept: Upstream?, lastRequest: Bool) -> Bool {
        guard var received = self.received else { return false }
        // Empty lines between requests are allowed (RFC 9112 §2.2).
        while let byte = received.getInteger(at: received.readerIndex, as: UInt8.self), byte == 13 || byte == 10 {
            received.moveReaderIndex(forwardBy: 1)
            self.headSearched = 0
        }
        guard received.readableBytes > 0 else {
            self.received = nil
            return false
        }
        let searched = self.headSearched
        let end = received.withUnsafeReadableBytes { HTTPFraming.headEnd(in: $0, searchedBefore: searched) }
        switch end {
        case .incomplete:
            self.headSearched = received.readableBytes
            self.received = received
            return false
        case .tooLarge:
            self.received = nil
            self.refuse(status: 431, reason: "Request Header Fields Too Large", detail: "the request head is over \(HTTPFraming.maxHeadLength / 1024) KiB")
            return true
        case .complete(let length):
            self.headSearched = 0
            // Read where it lies, and the forwarded head written into buffers this connection keeps:
            // the usual request allocates nothing here.
            let parsed = received.withUnsafeReadableBytes { raw in
                let head = UnsafeRawBufferPointer(rebasing: raw[..<length])
                return Result { () throws(HTTPFraming.Refusal) in
                    let request = try RequestHead(head)
                    let action = Self.headAction(for: request, head: head, browser: self.settings.browser)
                    if case .forward = action {
                        // A page that gets the live-reload script names the generation that served
                        // it, so no copy a browser kept may stand in for it: a navigation is never
                        // answered 304 (a copy cached before safe-watch sent no-store, or by another
                        // tool on this address, kept a tab on an old generation).
                        let navigation = self.settings.browser != nil && HeadBytes.field(HeadBytes.accept, has: HeadBytes.textHTML, atStart: false, in: head)
                        request.forwarded(from: head, self.forwarding, droppingConditions: navigation, into: &self.headScratch)
                    }
                    return (request, action)
                }
            }
            received.moveReaderIndex(forwardBy: length)
            self.received = received.readableBytes > 0 ? received : nil
            let request: RequestHead
            let action: HeadAction
            switch parsed {
            case .success(let taken):
                (request, action) = taken
            case .failure(let refusal):
                self.received = nil
                self.refuse(status: refusal.status, reason: "Bad Request", detail: refusal.reason)
                return true
            }
            self.requestNumber += 1
            self.forwardedHeads.clear()
            if case .forward = action { self.forwardedHeads.writeBytes(self.headScratch) }
            let exchange = Exchange(
                request: request, forwardedHead: self.forwardedHeads, requestBody: BodyProgress(request.body),
                clientKeeps: request.keepAlive && !lastRequest)
            self.state = .routing(exchange, kept: kept)
            switch action {
            case .forward:
                self.route()
            case .answerLocally(let answer):
                self.answer(answer)
            case .handOver(let local):
                if let browser = self.settings.browser { self.handOver { browser.respond(to: local, on: $0) } }
            }
            return true
        }
    }

    /// Whether the proxy answers a request itself rather than forward it: the one place that
    /// decides it. `head` is the request head as received. Requests under `[browser] prefix` go to
    /// the browser side; every other request is forwarded (one comparison of bytes).
    static func headAction(for request: RequestHead, head: UnsafeRawBufferPointer, browser: BrowserEndpoints?) -> HeadAction {
        guard let browser, HeadBytes.targetStarts(with: browser.prefixBytes, in: head),
            let local = BrowserEndpoints.Request(head: Array(head))
        else { return .forward }
        return .handOver(local)
    }

    // MARK: Routing

    private func route() {
        guard let context = self.context, case .routing(let exchange, _) = self.state else { return }
        // The usual case, a server is healthy, needs no future.
        if let target = self.router.acquireActive() {
            self.routed(to: target)
            return
        }
        // A browser is not held while nothing serves: it gets a page that turns into the app.
        if let browser = self.settings.browser, exchange.attempts == 0, let head = exchange.forwardedHead,
            head.withUnsafeReadableBytes({ HeadBytes.field(HeadBytes.accept, has: HeadBytes.textHTML, atStart: false, in: $0) }),
            let request = BrowserEndpoints.Request(head: Array(head.readableBytesView)), request.wantsHTML
        {
            self.handOver { browser.respondNothingServing(to: request, on: $0) }
            return
        }
        let number = self.requestNumber
        self.router.acquire(on: context.eventLoop, hold: self.settings.hold).assumeIsolated().whenSuccess { target in
            guard self.requestNumber == number, self.context != nil, case .routing = self.state else {
                if let target { self.router.release(target.generation) }
                return
            }
            self.routed(to: target)
        }
    }

    private func routed(to target: TrafficRouter.Target?) {
        guard case .routing(let exchange, let kept) = self.state else { return }
        guard let target else {
            self.answer(
                LocalAnswer(
                    status: 503, reason: "Service Unavailable",
                    body: "safe-watch: no healthy server yet; safe-watch's output (its terminal, or the journal under systemd) says which build or health check failed\n"))
            return
        }
        exchange.counted = target.generation
        let request = exchange.request
        let hasBody = request.body != .none
        let now = self.context?.eventLoop.now ?? .now()
        if let kept, kept.generation == target.generation, kept.channel.isActive,
            ProxyExchangePolicy.mayReuse(
                idleFor: kept.idleSince.map { .nanoseconds((now - $0).nanoseconds) }, method: request.method, hasBody: hasBody)
        {
            var kept = kept
            kept.idleSince = nil
            self.beginExchange(exchange, on: kept)
            return
        }
        self.state = .routing(exchange, kept: nil)
        kept?.channel.close(promise: nil)
        let idleAtMost = ProxyExchangePolicy.idleLimit(method: request.method, hasBody: hasBody).map { TimeAmount(saturating: $0) }
        if let (channel, handler) = self.pool?.take(generation: target.generation, idleAtMost: idleAtMost) {
            handler.owner = self
            self.beginExchange(exchange, on: Upstream(handler: handler, channel: channel, generation: target.generation))
            return
        }
        self.connect(to: target)
    }

    private func connect(to target: TrafficRouter.Target) {
        guard let context = self.context else { return }
        let number = self.requestNumber
        self.settings.connector.connect(to: target, on: context.eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard self.requestNumber == number, self.context != nil, case .routing(let exchange, _) = self.state,
                        let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                    else {
                        channel.close(promise: nil)
                        return
                    }
                    handler.owner = self
                    self.beginExchange(exchange, on: Upstream(handler: handler, channel: channel, generation: target.generation))
                case .failure:
                    guard self.requestNumber == number, case .routing = self.state else { return }
                    // Refused: nothing reached the server, so any request may go again, maybe to
                    // a newer generation (the refusing one is gone or going).
                    self.retry()
                }
            }
    }

    /// Routes the current request again after a pause. A generation that refuses is treated as
    /// one that is not there: the request is held, as while nothing is healthy, for at most
    /// `serve.hold_timeout` from its first refusal, then answered 502.
    private func retry() {
        guard let context = self.context, case .routing(let exchange, _) = self.state else { return }
        self.release(exchange)
        exchange.attempts += 1
        // The loop's clock: the wall clock on a real loop, virtual time on a test's.
        let now = context.eventLoop.now
        let firstFailure = exchange.firstFailure ?? now
        exchange.firstFailure = firstFailure
        let decision = ProxyExchangePolicy.afterRefusal(
            attempts: exchange.attempts, sinceFirstRefusal: .nanoseconds((now - firstFailure).nanoseconds),
            hold: .nanoseconds(self.settings.hold.nanoseconds))
        let pause: Duration
        switch decision {
        case .badGateway:
            self.answer(LocalAnswer(status: 502, reason: "Bad Gateway", body: "safe-watch: the server refused or dropped the connection\n"))
            return
        case .retry(let after):
            pause = after
        }
        let number = self.requestNumber
        context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(saturating: pause)) {
            guard self.requestNumber == number, case .routing = self.state else { return }
            self.route()
        }
    }

    /// The upstream connection is there: the head goes, then the body as it arrives.
    private func beginExchange(_ exchange: Exchange, on upstream: Upstream) {
        self.state = .exchanging(exchange, upstream)
        exchange.response = .awaitingHead(partial: nil)
        if let head = exchange.forwardedHead { upstream.handler.write(head) }
        self.passRequestBody(exchange, to: upstream)
        upstream.handler.flush()
        upstream.handler.resumeReads()
    }

    /// Passes the part of the request body that has arrived to the server.
    private func passRequestBody(_ exchange: Exchange, to upstream: Upstream) {
        guard var received = self.received else {
            self.resumeClientReads()
            return
        }
        switch exchange.requestBody {
        case .done:
            return
        case .length(let left):
            let take = Int(min(UInt64(received.readableBytes), left))
            if let slice = received.readSlice(length: take) { upstream.handler.write(slice) }
            exchange.requestBody = left == UInt64(take) ? .done : .length(left - UInt64(take))
            exchange.sentBody = true
        case .chunked(var scanner):
            do {
                let taken = try received.withUnsafeReadableBytes { bytes throws(HTTPFraming.Refusal) in try scanner.scan(bytes) }
                if let slice = received.readSlice(length: taken) { upstream.handler.write(slice) }
                exchange.requestBody = scanner.isDone ? .done : .chunked(scanner)
                exchange.sentBody = true
            } catch {
                // The server has part of a request it will never see the end of: its connection goes too.
                self.received = nil
                self.refuse(status: 400, reason: "Bad Request", detail: error.reason)
                return
            }
        case .untilClose:
            upstream.handler.write(received)
            received.moveReaderIndex(to: received.writerIndex)
        }
        self.received = received.readableBytes > 0 ? received : nil
        self.resumeClientReads()
    }

    // MARK: The server's side

    /// Whether the server's next bytes can be taken now.
    fileprivate func readsUpstream(_ channel: any Channel) -> Bool {
        guard let upstream = self.state.upstream, upstream.channel === channel else { return true }
        // Idle keep-alive connections are read too, to see them close.
        return self.context?.channel.isWritable ?? true
    }

    fileprivate func upstreamWritabilityChanged(_ channel: any Channel) {
        guard self.state.upstream?.channel === channel, channel.isWritable else { return }
        self.resumeClientReads()
    }

    fileprivate func upstreamRead(_ bytes: ByteBuffer, from channel: any Channel) {
        guard let context = self.context, let upstream = self.state.upstream, upstream.channel === channel else { return }
        switch self.state {
        case .tunnel:
            self.writeToClient(bytes, context)
        case .exchanging(let exchange, _):
            self.readResponse(bytes, exchange, context)
        case .awaitingHead(_, let lastRequest):
            // Bytes from an idle server connection: not an answer to anything; it cannot be reused.
            self.state = .awaitingHead(kept: nil, lastRequest: lastRequest)
            upstream.channel.close(promise: nil)
        case .routing(let exchange, _):
            self.state = .routing(exchange, kept: nil)
            upstream.channel.close(promise: nil)
        case .closing:
            break
        }
    }

    /// Takes the server's bytes for the exchange in progress: the response head, then its body.
    private func readResponse(_ bytes: ByteBuffer, _ exchange: Exchange, _ context: ChannelHandlerContext) {
        var bytes = bytes
        while bytes.readableBytes > 0 {
            switch exchange.response {
            case .awaitingHead(let partial):
                if var head = partial {
                    head.writeBuffer(&bytes)
                    bytes = head
                }
                let end = bytes.withUnsafeReadableBytes { HTTPFraming.headEnd(in: $0) }
                switch end {
                case .incomplete:
                    exchange.response = .awaitingHead(partial: bytes)
                    return
                case .tooLarge:
                    self.failUpstream(detail: "the server's response head is over \(HTTPFraming.maxHeadLength / 1024) KiB")
                    return
                case .complete(let length):
                    exchange.response = .awaitingHead(partial: nil)
                    let method = exchange.request.method
                    let parsed = bytes.withUnsafeReadableBytes { raw in
                        Result { () throws(HTTPFraming.Refusal) in
                            try ResponseHead(UnsafeRawBufferPointer(rebasing: raw[..<length]), requestMethod: method)
                        }
                    }
                    let response: ResponseHead
                    switch parsed {
                    case .success(let head):
                        response = head
                    case .failure(let refusal):
                        self.failUpstream(detail: "the server answered with \(refusal.reason)")
                        return
                    }
                    if response.isInterim {
                        // 100 Continue and friends reach the client; the final answer follows.
                        let head = self.forwardedResponseHead(
                            response, length: length, from: &bytes, clientKeeps: true, clientVersion: exchange.request.version,
                            dechunking: false, allocator: context.channel.allocator)
                        self.writeToClient(head, context)
                        continue
                    }
                    if response.status == 101 && exchange.request.isUpgrade, let head = bytes.readSlice(length: length) {
                        self.beginTunnel(head: head, rest: bytes, context: context)
                        return
                    }
                    self.forwardResponseHead(response, length: length, from: &bytes, exchange, context)
                    if case .body(.done, _) = exchange.response {
                        self.finishResponse(extraBytes: bytes.readableBytes > 0)
                        return
                    }
                }
            case .body(let progress, let keepAlive):
                if exchange.rewriter != nil {
                    self.gather(&bytes, exchange, keepAlive: keepAlive, context: context)
                    return
                }
                switch progress {
                case .done:
                    break
                case .length(let left):
                    let take = Int(min(UInt64(bytes.readableBytes), left))
                    if let slice = bytes.readSlice(length: take) { self.writeResponseBody(slice, context) }
                    exchange.response = .body(left == UInt64(take) ? .done : .length(left - UInt64(take)), keepAlive: keepAlive)
                case .chunked(var scanner):
                    do {
                        if exchange.dechunking {
                            let start = bytes.readerIndex
                            var dataRanges: [Range<Int>] = []
                            let taken = try bytes.withUnsafeReadableBytes { raw throws(HTTPFraming.Refusal) in
                                try scanner.scan(raw) { dataRanges.append($0) }
                            }
                            for range in dataRanges {
                                if let slice = bytes.getSlice(at: start + range.lowerBound, length: range.count) {
                                    self.writeResponseBody(slice, context)
                                }
                            }
                            bytes.moveReaderIndex(forwardBy: taken)
                        } else {
                            let taken = try bytes.withUnsafeReadableBytes { raw throws(HTTPFraming.Refusal) in try scanner.scan(raw) }
                            if let slice = bytes.readSlice(length: taken) { self.writeResponseBody(slice, context) }
                        }
                        exchange.response = .body(scanner.isDone ? .done : .chunked(scanner), keepAlive: keepAlive)
                    } catch {
                        // Half an answer cannot be mended: end the client's connection as it stands.
                        self.abortExchange()
                        return
                    }
                case .untilClose:
                    self.writeResponseBody(bytes, context)
                    bytes.moveReaderIndex(to: bytes.writerIndex)
                }
                if case .body(.done, _) = exchange.response {
                    self.finishResponse(extraBytes: bytes.readableBytes > 0)
                    return
                }
            }
        }
    }

    /// Sends the final response head (`length` bytes at the start of `bytes`) to the client, with
    /// the body too when it came whole with the head; `bytes` moves past what was sent. Where
    /// the response's framing for the client is decided: the one place to change a response's
    /// head (or to hold it back, to rewrite the body that follows).
    private func forwardResponseHead(
        _ response: ResponseHead, length: Int, from bytes: inout ByteBuffer, _ exchange: Exchange, _ context: ChannelHandlerContext
    ) {
        exchange.dechunking = response.body == .chunked && exchange.request.version < .http1_1
        if response.body == .untilClose || exchange.dechunking { exchange.clientKeeps = false }
        exchange.forwardedHead = nil  // answered: never replayed
        exchange.response = .body(BodyProgress(response.body), keepAlive: response.keepAlive)
        // A full HTML page is held back, gathered and sent with the live-reload script (`[browser]`).
        if let browser = self.settings.browser, !exchange.dechunking,
            let tag = self.injection(by: browser, response, length: length, bytes: bytes, exchange: exchange)
        {
            let head = self.forwardedResponseHead(
                response, length: length, from: &bytes, clientKeeps: exchange.clientKeeps, clientVersion: exchange.request.version,
                dechunking: false, allocator: context.channel.allocator)
            exchange.rewriter = HTMLResponseRewriter(head: Array(head.readableBytesView), framing: response.body, tag: tag)
            // A page still coming by then (a stream, or a server that pauses mid-page) goes out as it
            // came, without the script: the client must not wait for its end.
            exchange.gatheringLimit = context.eventLoop.assumeIsolated().scheduleTask(in: Self.gatheringLimit) { [weak exchange] in
                guard let exchange, let rewriter = exchange.rewriter, case .exchanging(let current, _) = self.state, current === exchange,
                    case .body(_, let keepAlive) = exchange.response, let context = self.context
                else { return }
                exchange.rewriter = nil
                self.settings.browser?.sayOnce(
                    "an HTML page still coming after \(Self.gatheringLimit.nanoseconds / 1_000_000) ms (a streamed page) goes out as it comes, "
                        + "without the live-reload script: such a page does not reload by itself after a swap")
                self.gathered(rewriter.letGo(), exchange, keepAlive: keepAlive, context: context)
                self.flushClient()
            }
            return
        }
        // A body that came whole with its head goes out with it: one write, not two.
        var bodyWithHead = 0
        if case .length(let bodyLength) = response.body, UInt64(bytes.readableBytes - length) >= bodyLength {
            bodyWithHead = Int(bodyLength)
            exchange.response = .body(.done, keepAlive: response.keepAlive)
        }
        let head: ByteBuffer
        if response.passesUnchanged(
            clientKeepsConnection: exchange.clientKeeps, clientVersion: exchange.request.version, dechunking: exchange.dechunking),
            let asSent = bytes.readSlice(length: length + bodyWithHead)
        {
            // The usual answer: the server's own bytes, not copied.
            head = asSent
        } else {
            var rewritten = self.forwardedResponseHead(
                response, length: length, from: &bytes, clientKeeps: exchange.clientKeeps,
                clientVersion: exchange.request.version, dechunking: exchange.dechunking,
                allocator: context.channel.allocator, extraCapacity: bodyWithHead)
            if var body = bytes.readSlice(length: bodyWithHead) { rewritten.writeBuffer(&body) }
            head = rewritten
        }
        self.writeToClient(head, context)
    }

    /// Sends the next part of a response body to the client (de-chunked already if it is sent so):
    /// every body byte after the head's own write passes here.
    private func writeResponseBody(_ bytes: ByteBuffer, _ context: ChannelHandlerContext) {
        self.writeToClient(bytes, context)
    }

    fileprivate func upstreamReadComplete(from channel: any Channel) {
        guard self.state.upstream?.channel === channel else { return }
        self.flushClient()
    }

    fileprivate func upstreamClosed(_ channel: any Channel) {
        guard self.state.upstream?.channel === channel else { return }
        switch self.state {
        case .awaitingHead(_, let lastRequest):
            self.state = .awaitingHead(kept: nil, lastRequest: lastRequest)
        case .routing(let exchange, _):
            self.state = .routing(exchange, kept: nil)
        case .tunnel:
            self.context?.close(promise: nil)
        case .closing:
            break
        case .exchanging(let exchange, _):
            self.state = .routing(exchange, kept: nil)
            if var rewriter = exchange.rewriter, case .body(_, let keepAlive) = exchange.response, let context = self.context {
                exchange.rewriter = nil
                self.gathered(rewriter.serverClosed(), exchange, keepAlive: keepAlive, context: context)
                return
            }
            switch exchange.response {
            case .body(.untilClose, _):
                self.finishResponse(extraBytes: false)
            case .body:
                // Half an answer cannot be mended: end the client's connection as the server did.
                self.abortExchange()
            case .awaitingHead(let partial):
                // Closed before answering. `forwardedHead` is nil once a final answer's head came.
                let decision = ProxyExchangePolicy.afterUnansweredClose(
                    method: exchange.request.method, replays: exchange.replays, sentBody: exchange.sentBody,
                    answerBegan: partial != nil || exchange.forwardedHead == nil)
                switch decision {
                case .replay:
                    exchange.replays += 1
                    self.retry()
                case .badGateway:
                    self.failUpstream(detail: "the server closed the connection without answering")
                }
            }
        }
    }

    // MARK: Ending an exchange

    /// The server's answer is all in. The request was counted against its generation until now,
    /// so a swap drains a download in flight: with backpressure the answer's end arrives only once
    /// the client has taken nearly all of it.
    private func finishResponse(extraBytes: Bool) {
        guard self.context != nil else { return }
        let exchange: Exchange
        let upstream: Upstream?
        switch self.state {
        case .exchanging(let current, let currentUpstream):
            exchange = current
            upstream = currentUpstream
        case .routing(let current, .none):
            exchange = current  // the server closed its connection to end the response
            upstream = nil
        case .awaitingHead, .routing, .tunnel, .closing:
            return
        }
        var serverKeeps = false
        if case .body(_, let keepAlive) = exchange.response { serverKeeps = keepAlive }
        let after = ProxyExchangePolicy.afterResponse(
            serverKeeps: serverKeeps, clientKeeps: exchange.clientKeeps, requestDone: exchange.requestBody.isDone, extraBytes: extraBytes)
        var kept = after.keepsServerConnection ? upstream : nil
        kept?.idleSince = self.context?.eventLoop.now
        self.state = .awaitingHead(kept: kept, lastRequest: false)
        if !after.keepsServerConnection { upstream?.channel.close(promise: nil) }
        // The server has done its part: what is left of the answer (at most a read and the write
        // buffer, backpressure saw to that) goes from here, so the generation may be stopped.
        self.release(exchange)
        self.flushClient()
        guard after.keepsClientConnection else {
            self.closeGracefully(lingering: self.closeLingers(after: exchange))
            return
        }
        self.processReceived()
        if case .awaitingHead = self.state { self.resumeClientReads() }
    }

    /// The response broke off after it began (or the request's body will never end): the
    /// client's connection ends, as the server's did.
    private func abortExchange() {
        self.enterClosing()
        self.context?.close(promise: nil)
    }

    /// Moves to `.closing`: the request in hand leaves the router's count and the server
    /// connection is closed, not pooled.
    private func enterClosing() {
        let leaving = self.state
        self.state = .closing
        switch leaving {
        case .routing(let exchange, _), .exchanging(let exchange, _):
            self.release(exchange)
        case .awaitingHead, .tunnel, .closing:
            break
        }
        leaving.upstream?.channel.close(promise: nil)
    }

    /// The server failed the request before answering it: 502.
    private func failUpstream(detail: String) {
        if case .exchanging(let exchange, let upstream) = self.state {
            self.state = .routing(exchange, kept: nil)
            upstream.channel.close(promise: nil)
        }
        self.answer(LocalAnswer(status: 502, reason: "Bad Gateway", body: "safe-watch: \(detail)\n"))
    }

    /// Answers the current request from the proxy itself. The connection stays open only when
    /// the client keeps it and no unread body is on its way.
    private func answer(_ answer: LocalAnswer) {
        guard let context = self.context, case .routing(let exchange, let kept) = self.state else { return }
        self.release(exchange)
        let keeps = exchange.clientKeeps && exchange.requestBody.isDone
        self.writeAnswer(answer, keeps: keeps, context: context)
        self.state = .awaitingHead(kept: kept, lastRequest: false)
        if keeps {
            self.processReceived()
            if case .awaitingHead = self.state { self.resumeClientReads() }
        } else {
            self.received = nil
            self.closeGracefully(lingering: true)
        }
    }

    /// Whether the client's connection, closed after `exchange`'s answer, lingers.
    private func closeLingers(after exchange: Exchange) -> Bool {
        ProxyExchangePolicy.closeLingers(
            clientAskedToClose: !exchange.request.keepAlive, requestDone: exchange.requestBody.isDone, receivedMore: self.received != nil)
    }

    /// Answers a request the proxy cannot forward, then closes the connection.
    private func refuse(status: Int, reason: String, detail: String) {
        guard let context = self.context else { return }
        self.enterClosing()
        self.writeAnswer(LocalAnswer(status: status, reason: reason, body: "safe-watch: \(detail)\n"), keeps: false, context: context)
        self.closeGracefully(lingering: true)
    }

    private func writeAnswer(_ answer: LocalAnswer, keeps: Bool, context: ChannelHandlerContext) {
        var head = "HTTP/1.1 \(answer.status) \(answer.reason)\r\ncontent-type: \(answer.contentType)\r\ncontent-length: \(answer.body.utf8.count)\r\n"
        if !keeps { head += "connection: close\r\n" }
        head += "\r\n"
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(string: head + answer.body)), promise: nil)
        self.clientUnflushed = false
    }

    /// Closes the client's connection once the last answer is out. `lingering`
    /// (`ProxyExchangePolicy.closeLingers`): shuts the write side, then discards what the client
    /// still sends until it closes (or `lingerTimeout`). A server connection left reusable goes to
    /// the pool.
    private func closeGracefully(lingering: Bool) {
        guard let context = self.context else { return }
        let leaving = self.state
        self.state = .closing
        self.received = nil
        if case .awaitingHead(let kept, _) = leaving {
            self.pool(kept)
        } else {
            leaving.upstream?.channel.close(promise: nil)
        }
        let channel = context.channel
        // After the writes before it: a client that shut its side already is closed outright,
        // which would drop writes still queued.
        self.clientUnflushed = false
        let answered = context.writeAndFlush(self.wrapOutboundOut(channel.allocator.buffer(capacity: 0)))
        guard lingering else {
            answered.whenComplete { _ in channel.close(promise: nil) }
            return
        }
        answered.whenComplete { _ in
            channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
        }
        context.eventLoop.scheduleTask(in: Self.lingerTimeout) { channel.close(promise: nil) }
        self.resumeClientReads()
    }

    // MARK: Tunnels (WebSocket and other upgrades)

    /// The server agreed to switch protocols: from here on bytes pass both ways untouched. The
    /// tunnel stays counted against its generation until it closes, so a swap drains it.
    private func beginTunnel(head: ByteBuffer, rest: ByteBuffer, context: ChannelHandlerContext) {
        guard case .exchanging(let exchange, let upstream) = self.state else { return }
        self.state = .tunnel(upstream, counted: exchange.counted)
        self.writeToClient(head, context)
        if rest.readableBytes > 0 { self.writeToClient(rest, context) }
        self.flushClient()
        if let received = self.received, received.readableBytes > 0 {
            upstream.handler.write(received)
            upstream.handler.flush()
        }
        self.received = nil
        self.resumeClientReads()
    }

    // MARK: Stopping

    /// safe-watch is stopping: finish what is in progress, then close; an idle connection gets
    /// `idleGrace` to send one last request. A tunnel cannot be finished: it is closed.
    private func shutdownBegan(idleGrace: TimeAmount) {
        guard let context = self.context else { return }
        switch self.state {
        case .tunnel:
            context.close(promise: nil)
        case .awaitingHead(let kept, _):
            self.state = .awaitingHead(kept: kept, lastRequest: true)
            let number = self.requestNumber
            context.eventLoop.assumeIsolated().scheduleTask(in: idleGrace) {
                guard self.requestNumber == number, case .awaitingHead = self.state, self.received == nil else { return }
                self.context?.close(promise: nil)
            }
        case .routing(let exchange, _), .exchanging(let exchange, _):
            exchange.clientKeeps = false
        case .closing:
            break
        }
    }

    // MARK: Helpers

    /// Queues bytes for the client; `flushClient` sends them.
    private func writeToClient(_ bytes: ByteBuffer, _ context: ChannelHandlerContext) {
        context.write(self.wrapOutboundOut(bytes), promise: nil)
        self.clientUnflushed = true
    }

    /// Sends what is queued for the client, if anything is: a response flushed as it ends is not
    /// flushed again when the server's read completes (each flush is a trip down the pipeline).
    private func flushClient() {
        guard self.clientUnflushed, let context = self.context else { return }
        self.clientUnflushed = false
        context.flush()
    }

    // MARK: The browser side

    /// The script tag a response gets (`[browser]`), or nil. Only a `text/html` head is looked at
    /// closer, so other responses cost one scan of their head's bytes.
    private func injection(by browser: BrowserEndpoints, _ response: ResponseHead, length: Int, bytes: ByteBuffer, exchange: Exchange) -> String? {
        guard response.status >= 200, response.status != 101, HTMLResponseRewriter.accepts(response.body) else { return nil }
        let html = bytes.withUnsafeReadableBytes {
            HeadBytes.field(HeadBytes.contentType, has: HeadBytes.textHTML, atStart: true, in: UnsafeRawBufferPointer(rebasing: $0[..<length]))
        }
        guard html, let head = bytes.getBytes(at: bytes.readerIndex, length: length) else { return nil }
        return browser.injection(
            requestMethod: exchange.request.method, status: response.status, head: head, generation: self.state.upstream?.generation)
    }

    /// Takes body bytes of a page being gathered; writes the page once it is whole.
    private func gather(_ bytes: inout ByteBuffer, _ exchange: Exchange, keepAlive: Bool, context: ChannelHandlerContext) {
        guard var rewriter = exchange.rewriter else { return }
        let step = rewriter.take(Array(bytes.readableBytesView))
        bytes.moveReaderIndex(to: bytes.writerIndex)
        exchange.rewriter = rewriter
        if step == .needMore { return }
        exchange.rewriter = nil
        self.gathered(step, exchange, keepAlive: keepAlive, context: context)
    }

    private func gathered(_ step: HTMLResponseRewriter.Step, _ exchange: Exchange, keepAlive: Bool, context: ChannelHandlerContext) {
        if step != .needMore {
            exchange.gatheringLimit?.cancel()
            exchange.gatheringLimit = nil
        }
        switch step {
        case .needMore:
            return
        case .complete(let output, _, let leftover):
            exchange.response = .body(.done, keepAlive: keepAlive)
            self.writeToClient(context.channel.allocator.buffer(bytes: output), context)
            self.finishResponse(extraBytes: !leftover.isEmpty)
        case .malformed:
            // Half an answer cannot be mended: end the client's connection as the server did.
            self.abortExchange()
        case .letGo(let output, let rest):
            // Too big to hold, or too slow to wait for: what came so far goes out as it came, the
            // rest streams after it.
            let progress: BodyProgress
            switch rest {
            case .length(let left): progress = left == 0 ? .done : .length(left)
            case .chunked(let scanner): progress = .chunked(scanner)
            case .untilClose: progress = .untilClose
            }
            exchange.response = .body(progress, keepAlive: keepAlive)
            self.writeToClient(context.channel.allocator.buffer(bytes: output), context)
        }
    }

    /// Gives the client's connection to the browser side, which answers on it from here on (and
    /// closes it, or streams events on it): this handler leaves the pipeline.
    private func handOver(_ answer: (any Channel) -> Void) {
        guard let context = self.context else { return }
        let leaving = self.state
        self.state = .closing
        switch leaving {
        case .routing(let exchange, let kept):
            self.release(exchange)
            self.pool(kept)
        case .awaitingHead(let kept, _):
            self.pool(kept)
        case .exchanging, .tunnel, .closing:
            leaving.upstream?.channel.close(promise: nil)
        }
        self.received = nil
        let channel = context.channel
        if let id = self.clientID {
            self.clientID = nil
            self.router.clientClosed(id)
            // An event stream never ends by itself: it closes when safe-watch stops, which waits
            // for every accepted connection to close.
            let router = self.router
            let stream = router.clientOpened { _ in channel.eventLoop.execute { channel.close(promise: nil) } }
            channel.closeFuture.whenComplete { _ in router.clientClosed(stream) }
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        answer(channel)
        // A read this handler held back would otherwise never be asked for again.
        channel.read()
    }

    /// The response head at the start of `bytes` (`length` bytes), rewritten for the client, in a
    /// new buffer; `bytes` moves past it.
    private func forwardedResponseHead(
        _ response: ResponseHead, length: Int, from bytes: inout ByteBuffer, clientKeeps: Bool, clientVersion: HTTPVersionNumber,
        dechunking: Bool, allocator: ByteBufferAllocator, extraCapacity: Int = 0
    ) -> ByteBuffer {
        bytes.withUnsafeReadableBytes { raw in
            response.forwarded(
                from: UnsafeRawBufferPointer(rebasing: raw[..<length]), clientKeepsConnection: clientKeeps, clientVersion: clientVersion,
                dechunking: dechunking, into: &self.headScratch)
        }
        bytes.moveReaderIndex(forwardBy: length)
        var head = allocator.buffer(capacity: self.headScratch.count + extraCapacity)
        head.writeBytes(self.headScratch)
        return head
    }

    /// The exchange is answered (or given up): the router stops counting it against its generation.
    private func release(_ exchange: Exchange) {
        if let generation = exchange.counted {
            exchange.counted = nil
            self.router.release(generation)
        }
    }

    /// Hands an idle server connection to the pool, for the next client connection on this event
    /// loop (a client per request, as `curl` in a loop, then reuses the server's); one the pool
    /// cannot take is closed.
    private func pool(_ upstream: Upstream?) {
        guard let upstream else { return }
        guard upstream.channel.isActive, let pool = self.pool else {
            upstream.channel.close(promise: nil)
            return
        }
        upstream.handler.owner = nil
        pool.put(upstream.channel, upstream.handler, generation: upstream.generation, since: upstream.idleSince)
    }
}

/// The proxy's connection to one generation: hands everything to the client's handler it serves
/// (same event loop), and reads only while that client can take more. While it waits in the pool
/// it belongs to no client: it is read only to see the server close it.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The client connection this one serves; nil while it waits in a pool.
    weak var owner: ProxyConnection?
    /// The pool it waits in, if any.
    weak var pool: UpstreamPool?
    private var context: ChannelHandlerContext?
    private var readPending = false
    private var unflushed = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func write(_ bytes: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(bytes), promise: nil)
        self.unflushed = true
    }

    /// Sends what was written since the last flush, if anything was (a request is flushed as its
    /// head goes, and the client's read completing would flush it again).
    func flush() {
        guard self.unflushed else { return }
        self.unflushed = false
        self.context?.flush()
    }

    func read(context: ChannelHandlerContext) {
        if self.owner?.readsUpstream(context.channel) ?? true {
            context.read()
        } else {
            self.readPending = true
        }
    }

    func resumeReads() {
        guard self.readPending, let context = self.context, self.owner?.readsUpstream(context.channel) ?? true else { return }
        self.readPending = false
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let owner = self.owner else {
            // A server talking on an idle connection: it answers nothing anyone asked.
            context.close(promise: nil)
            return
        }
        owner.upstreamRead(self.unwrapInboundIn(data), from: context.channel)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.owner?.upstreamReadComplete(from: context.channel)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.owner?.upstreamWritabilityChanged(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.pool?.closed(context.channel)
        self.owner?.upstreamClosed(context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Idle keep-alive connections to the servers, shared by the client connections of one event
/// loop, so a client that opens a connection per request does not cost the server one too.
/// Only the newest are kept, and none for long: a server may close an idle connection at any
/// time, and a request sent on one it just closed can only be repeated if it is idempotent.
/// Nothing stays pooled once idle for `maximumIdleTime` (as nginx's keepalive_timeout), nor once
/// its generation no longer gets new requests: an idle proxy holds no descriptors, and a draining
/// server is not kept waiting on connections nobody will use.
final class UpstreamPool {
    private struct Idle {
        var channel: any Channel
        var handler: UpstreamHandler
        var generation: Generation
        var since: NIODeadline
    }

    static let capacity = 32

    /// How long a connection may wait unused: 2 s by default (the proxy's), longer in tests that
    /// are about something else.
    let maximumIdleTime: TimeAmount

    private var idle: [Idle] = []
    /// The loop the pool is used on; nil in tests without one (then nothing expires on its own).
    let eventLoop: (any EventLoop)?
    /// The generation the router sends new requests to, as last heard (nil: not heard yet, or no
    /// healthy server): a connection to another one is closed rather than pooled.
    private var routed: Generation?
    /// Set while anything is pooled: when the oldest entry will have been idle too long.
    private var expiry: Scheduled<Void>?

    init(eventLoop: (any EventLoop)? = nil, maximumIdleTime: TimeAmount = .seconds(2)) {
        self.eventLoop = eventLoop
        self.maximumIdleTime = maximumIdleTime
    }

    /// The most recently idle live connection to `generation`, if any; with `idleAtMost`, only one
    /// idle for less than that (the others stay).
    func take(generation: Generation, idleAtMost: TimeAmount? = nil) -> (any Channel, UpstreamHandler)? {
        let now = NIODeadline.now()
        let limit = min(idleAtMost ?? self.maximumIdleTime, self.maximumIdleTime)
        while let index = self.idle.lastIndex(where: { $0.generation == generation && now - $0.since < limit }) {
            let entry = self.idle.remove(at: index)
            entry.handler.pool = nil
            if entry.channel.isActive { return (entry.channel, entry.handler) }
            entry.channel.close(promise: nil)
        }
        return nil
    }

    /// `since`: when it last carried a request (default: now).
    func put(_ channel: any Channel, _ handler: UpstreamHandler, generation: Generation, since: NIODeadline? = nil) {
        if let routed = self.routed, generation != routed {
            channel.close(promise: nil)
            return
        }
        let now = NIODeadline.now()
        // Stale ones go first (an older generation's, or idle too long), then the oldest if full.
        for entry in self.idle where now - entry.since >= self.maximumIdleTime || entry.generation != generation {
            self.evict(entry)
        }
        if self.idle.count >= Self.capacity, let oldest = self.idle.first { self.evict(oldest) }
        handler.pool = self
        self.idle.append(Idle(channel: channel, handler: handler, generation: generation, since: min(since ?? now, now)))
        self.scheduleExpiry()
    }

    /// The router now sends new requests to `generation` (nil: to none for now).
    func routed(to generation: Generation?) {
        self.routed = generation
        for entry in self.idle where entry.generation != generation { self.evict(entry) }
    }

    /// Closes what has been idle for `maximumIdleTime` when the oldest entry gets there, and again
    /// for the next while anything is left.
    private func scheduleExpiry() {
        guard self.expiry == nil, let eventLoop = self.eventLoop, let oldest = self.idle.map(\.since).min() else { return }
        let pool = NIOLoopBound(self, eventLoop: eventLoop)
        self.expiry = eventLoop.scheduleTask(deadline: oldest + self.maximumIdleTime) {
            let pool = pool.value
            pool.expiry = nil
            let now = NIODeadline.now()
            for entry in pool.idle where now - entry.since >= pool.maximumIdleTime { pool.evict(entry) }
            pool.scheduleExpiry()
        }
    }

    private func evict(_ entry: Idle) {
        self.idle.removeAll { $0.channel === entry.channel }
        entry.handler.pool = nil
        entry.channel.close(promise: nil)
    }

    /// A pooled connection was closed (by the server, most often).
    func closed(_ channel: any Channel) {
        self.idle.removeAll { $0.channel === channel }
    }

    /// How many connections are pooled (for tests).
    var count: Int { self.idle.count }
}

/// One `UpstreamPool` per event loop of the group, made when the proxy starts; each is used only
/// on its own loop.
struct UpstreamPools: @unchecked Sendable {
    // Unchecked: each pool is touched only on the event loop it is keyed by (`pool(for:)` is
    // called from handlers, on that loop; `routed(to:)` goes to each loop); the dictionary itself
    // never changes after `init`.
    private let pools: [ObjectIdentifier: UpstreamPool]

    init(group: (any EventLoopGroup)?, maximumIdleTime: TimeAmount = .seconds(2)) {
        var pools: [ObjectIdentifier: UpstreamPool] = [:]
        if let group {
            for loop in group.makeIterator() {
                pools[ObjectIdentifier(loop)] = UpstreamPool(eventLoop: loop, maximumIdleTime: maximumIdleTime)
            }
        }
        self.pools = pools
    }

    func pool(for loop: any EventLoop) -> UpstreamPool? {
        self.pools[ObjectIdentifier(loop)]
    }

    /// Follows the router: each pool, on its own loop, closes its connections to the generation
    /// that no longer gets new requests.
    func follow(_ router: TrafficRouter) {
        router.onActiveChange { target in
            for (key, pool) in self.pools {
                pool.eventLoop?.execute { self.pools[key]?.routed(to: target?.generation) }
            }
        }
    }
}
