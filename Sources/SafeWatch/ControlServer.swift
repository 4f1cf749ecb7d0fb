import Foundation
import Glibc
import NIOCore
import NIOPosix
import SafeWatchCore

/// Serves the control socket. Nothing a client does reaches the supervisor except a parsed
/// request: garbage, an oversized line, a client that never sends or never reads each cost that
/// client its connection and nothing else.
public final class ControlServer: Sendable {
    /// What answers a request (the runtime).
    public typealias Answer = @Sendable (ControlRequest) async -> ControlReply

    /// How long a client may take to send its request.
    static let requestTimeout: TimeAmount = .seconds(10)
    /// An `events` client that lets this much pile up unread is dropped rather than let memory grow.
    static let unreadLimit = 1 << 20

    private let channel: any Channel
    private let path: String
    private let inode: ino_t?

    private init(channel: any Channel, path: String) {
        self.channel = channel
        self.path = path
        var status = stat()
        self.inode = stat(path, &status) == 0 ? status.st_ino : nil
    }

    /// Serves on `fd`, a listening socket bound at `path`.
    public static func start(
        fd: Int32, path: String, group: any EventLoopGroup, events: EventLog, answer: @escaping Answer
    ) async throws -> ControlServer {
        let channel = try await ServerBootstrap(group: group)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: Self.unreadLimit / 2, high: Self.unreadLimit))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlConnection(events: events, answer: answer))
                }
            }
            .withBoundSocket(fd).get()
        return ControlServer(channel: channel, path: path)
    }

    /// Stops serving and removes the socket file — unless another safe-watch has replaced it since.
    public func close() async {
        try? await self.channel.close()
        var status = stat()
        if let inode = self.inode, stat(self.path, &status) == 0, status.st_ino == inode {
            unlink(self.path)
        }
    }
}

/// One client: reads a request line, then answers once (and closes) or streams events.
private final class ControlConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let events: EventLog
    private let answer: ControlServer.Answer
    private var received: [UInt8] = []
    private var requested = false
    private var subscription: Int?
    private var timeout: Scheduled<Void>?
    /// The answer being worked out; the connection owns it and cancels it when the client leaves.
    private var answering: Task<Void, Never>?

    init(events: EventLog, answer: @escaping ControlServer.Answer) {
        self.events = events
        self.answer = answer
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        self.timeout = context.eventLoop.scheduleTask(in: ControlServer.requestTimeout) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timeout?.cancel()
        self.answering?.cancel()
        if let subscription { self.events.unsubscribe(subscription) }
        self.subscription = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.requested else { return }  // one request per connection; the rest is ignored
        var buffer = self.unwrapInboundIn(data)
        self.received += buffer.readBytes(length: buffer.readableBytes) ?? []
        guard let newline = self.received.firstIndex(of: UInt8(ascii: "\n")) else {
            if self.received.count > ControlRequest.maximumLength {
                self.refuse("request longer than \(ControlRequest.maximumLength) bytes without a newline", context: context)
            }
            return
        }
        self.requested = true
        self.timeout?.cancel()
        let line = self.received[..<newline]
        self.received = []
        guard line.count <= ControlRequest.maximumLength else {
            self.refuse("request longer than \(ControlRequest.maximumLength) bytes", context: context)
            return
        }
        let request: ControlRequest
        do {
            request = try ControlRequest(parsing: String(decoding: line, as: UTF8.self))
        } catch {
            self.refuse(error.description, context: context)
            return
        }
        switch request {
        case .events(let since):
            self.stream(since: since ?? 0, context: context)
        default:
            self.respond(to: request, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func refuse(_ error: String, context: ChannelHandlerContext) {
        self.requested = true
        sendReply(ControlReply.refused(error), on: context.channel, thenClose: true)
    }

    private func respond(to request: ControlRequest, context: ChannelHandlerContext) {
        let answer = self.answer
        let channel = context.channel
        self.answering = Task {
            let reply = await answer(request)
            // `stop` keeps the connection until safe-watch has stopped: its end is the answer.
            sendReply(reply, on: channel, thenClose: !(request == .stop && reply.ok))
        }
    }

    private func stream(since: Int, context: ChannelHandlerContext) {
        let channel = context.channel
        let eventLoop = context.eventLoop
        let dropped = NIOLoopBoundBox(false, eventLoop: eventLoop)
        let (backlog, id) = self.events.subscribe(since: since) { line in
            eventLoop.execute {
                guard channel.isActive, !dropped.value else { return }
                // A client that does not read: no more events for it, one line that says why, and
                // the connection ends once it has read that far.
                guard channel.isWritable else {
                    dropped.value = true
                    sendReply(
                        .refused(
                            "events: this client fell more than \(ControlServer.unreadLimit >> 20) MiB behind and was disconnected; run `safe-watch events` again"),
                        on: channel, thenClose: true)
                    return
                }
                channel.writeAndFlush(ByteBuffer(string: line), promise: nil)
            }
        }
        self.subscription = id
        guard !backlog.isEmpty else { return }
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: backlog.joined())), promise: nil)
    }
}

/// One answer line; then the connection closes unless `thenClose` is false.
private func sendReply(_ reply: ControlReply, on channel: any Channel, thenClose: Bool) {
    let data = (try? JSONEncoder.controlLine.encode(reply)) ?? Data(#"{"ok":false}"#.utf8)
    let written = channel.writeAndFlush(ByteBuffer(bytes: data + [UInt8(ascii: "\n")]))
    if thenClose {
        written.whenComplete { _ in channel.close(promise: nil) }
    }
}
