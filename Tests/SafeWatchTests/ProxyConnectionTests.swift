import NIOCore
import NIOEmbedded
import SafeWatchCore
import Testing

@testable import SafeWatch

/// The client side of the proxy's per-connection state machine, driven byte by byte on an
/// EmbeddedChannel with virtual time: what the client hears, and when its connection ends, for
/// the paths that need no server (refusals, the hold while nothing serves, stopping). The paths
/// through a real server are the conformance suite's.
struct ProxyConnectionTests {
    /// A client connection to a proxy whose router has no healthy server.
    private struct Client {
        let router = TrafficRouter()
        let channel: EmbeddedChannel

        init(hold: TimeAmount = .seconds(5)) throws {
            let handler = ProxyConnection(router: self.router, settings: .init(hold: hold, addsForwardingFields: true))
            self.channel = EmbeddedChannel(handler: handler)
            try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        }

        func send(_ text: String) throws {
            try self.channel.writeInbound(ByteBuffer(string: text))
        }

        /// Everything written to the client so far.
        func heard() throws -> String {
            var text = ""
            while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
                text += String(buffer: buffer)
            }
            return text
        }

        func advance(by time: TimeAmount) {
            self.channel.embeddedEventLoop.advanceTime(by: time)
        }
    }

    @Test func aMalformedRequestGets400AndTheConnectionEnds() throws {
        let client = try Client()
        try client.send("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n")
        client.advance(by: .seconds(3))  // past the linger for a client that never closes
        let heard = try client.heard()
        #expect(heard.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(heard.contains("connection: close\r\n"))
        #expect(!client.channel.isActive)
    }

    @Test func aHeadThatNeverEndsGets431() throws {
        let client = try Client()
        try client.send("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HTTPFraming.maxHeadLength))
        client.advance(by: .seconds(3))
        #expect(try client.heard().hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(!client.channel.isActive)
    }

    @Test func whileNothingServesARequestIsHeldThenAnswered503AndTheConnectionStays() throws {
        let client = try Client(hold: .seconds(5))
        try client.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        client.advance(by: .milliseconds(4_900))
        #expect(try client.heard().isEmpty, "held for the whole hold")
        client.advance(by: .milliseconds(100))
        let first = try client.heard()
        #expect(first.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n") && !first.contains("connection: close"))
        // The pipelined second request is held in its turn, on the same connection.
        client.advance(by: .seconds(5))
        #expect(try client.heard().hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(client.channel.isActive)
    }

    @Test func a503BeforeTheBodyArrivedEndsTheConnection() throws {
        let client = try Client(hold: .seconds(1))
        try client.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf")
        client.advance(by: .seconds(1))
        let heard = try client.heard()
        // The rest of the body would be read as the next request: the connection cannot stay.
        #expect(heard.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n") && heard.contains("connection: close\r\n"))
        client.advance(by: .seconds(3))
        #expect(!client.channel.isActive)
    }

    @Test func stoppingClosesAnIdleConnectionAfterItsGraceOnly() throws {
        let client = try Client()
        client.router.beginShuttingDown(idleGrace: .seconds(1))
        client.channel.embeddedEventLoop.run()
        client.advance(by: .milliseconds(900))
        #expect(client.channel.isActive, "an idle client still gets its grace")
        client.advance(by: .milliseconds(100))
        #expect(!client.channel.isActive)
    }
}
