import NIOCore
import NIOEmbedded
import SafeWatchCore
import Testing

@testable import SafeWatch

/// Server connections made on demand, or refused: the `UpstreamConnector` the proxy's
/// EmbeddedChannel tests stand in for the servers with.
final class StandInServers: UpstreamConnector, @unchecked Sendable {
    // Unchecked: touched only on the embedded loop, which is the test's own thread.
    let loop: EmbeddedEventLoop
    /// Every connection made, in order.
    private(set) var connections: [EmbeddedChannel] = []
    /// Where each connection attempt went, refused ones too.
    private(set) var attempts: [TrafficRouter.Target] = []
    /// Attempts still to refuse, before any byte.
    var refusing = 0

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func connect(to target: TrafficRouter.Target, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        self.attempts.append(target)
        if self.refusing > 0 {
            self.refusing -= 1
            return eventLoop.makeFailedFuture(IOError(errnoCode: 111, reason: "connect"))  // ECONNREFUSED
        }
        let channel = EmbeddedChannel(handler: UpstreamHandler(), loop: self.loop)
        do {
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: target.port)).wait()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        self.connections.append(channel)
        return eventLoop.makeSucceededFuture(channel)
    }
}

/// A client connection to a `ProxyConnection` on an EmbeddedChannel, with stand-in servers behind
/// it on the same loop (virtual time); the router sends to generation 1 when `serving`.
struct EmbeddedProxy {
    let router = TrafficRouter()
    let client: EmbeddedChannel
    let servers: StandInServers

    init(hold: TimeAmount = .seconds(5), serving: Bool = true, browser: BrowserEndpoints? = nil) throws {
        let loop = EmbeddedEventLoop()
        self.servers = StandInServers(loop: loop)
        if serving { self.router.setActive(.init(generation: 1, port: 8001)) }
        let settings = ProxyConnection.Settings(hold: hold, addsForwardingFields: false, connector: self.servers, browser: browser)
        self.client = EmbeddedChannel(handler: ProxyConnection(router: self.router, settings: settings), loop: loop)
        try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    func send(_ text: String) throws {
        try self.client.writeInbound(ByteBuffer(string: text))
    }

    /// Everything written to the client so far.
    func heard() throws -> String {
        try Self.drain(self.client)
    }

    /// The server connection made `index`th.
    func server(_ index: Int) throws -> EmbeddedChannel {
        try #require(self.servers.connections.count > index, "server connection \(index) was made")
        return self.servers.connections[index]
    }

    /// Everything the proxy sent to server connection `index` so far.
    func serverGot(_ index: Int = 0) throws -> String {
        try Self.drain(try self.server(index))
    }

    func answer(_ text: String, on index: Int = 0) throws {
        try self.server(index).writeInbound(ByteBuffer(string: text))
    }

    func advance(by time: TimeAmount) {
        self.client.embeddedEventLoop.advanceTime(by: time)
    }

    private static func drain(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }
}
