import NIOCore
import NIOEmbedded
import SafeWatchCore
import Testing

@testable import SafeWatch

/// The proxy's per-connection state machine with a server behind it: the client and each
/// server connection are EmbeddedChannels on one loop with virtual time, the servers stood in by
/// an `UpstreamConnector` that hands out channels the test answers byte by byte.
struct ProxyExchangeTests {
    private static let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"

    @Test func aRequestIsForwardedAndItsResponseReturnedAsSent() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try proxy.serverGot() == "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(proxy.router.inFlight(1) == 1, "counted while the server answers")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
        #expect(proxy.router.inFlight(1) == 0)
        #expect(proxy.client.isActive)
    }

    @Test func aKeptAliveConnectionSendsTheNextRequestOnTheSameServerConnection() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
        try proxy.send("GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try proxy.serverGot() == "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
        #expect(try proxy.heard() == "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")
        #expect(proxy.servers.connections.count == 1)
    }

    /// A server may close its idle connection just as a request goes: a GET then goes again, a
    /// POST could not (its 502 is the only honest answer), so a POST does not go on a connection
    /// idle for `idleLimitForUnrepeatable` or longer: it gets a new one. Right after an answer, or
    /// for a GET, the connection is reused.
    @Test func aPostAfterTheServerConnectionSatIdleGoesOnANewOne() throws {
        let proxy = try EmbeddedProxy()
        let idle = TimeAmount(saturating: ProxyExchangePolicy.idleLimitForUnrepeatable)
        let post = "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
        try proxy.send(post)
        #expect(proxy.servers.connections.count == 1, "just used: reused")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
        proxy.advance(by: idle)
        try proxy.send("GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(proxy.servers.connections.count == 1, "a GET may go again: it takes the idle connection")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
        proxy.advance(by: idle)
        try proxy.send(post)
        #expect(proxy.servers.connections.count == 2)
        #expect(try proxy.serverGot(1) == post)
        try proxy.answer(Self.ok, on: 1)
        #expect(try proxy.heard() == Self.ok)
    }

    @Test func pipelinedRequestsGoOneAtATime() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try proxy.serverGot() == "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", "the second waits for the first's answer")
        try proxy.answer(Self.ok)
        #expect(try proxy.serverGot() == "GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok + Self.ok)
    }

    @Test func aRefusedConnectionIsRetriedOnTheNextGeneration() throws {
        let proxy = try EmbeddedProxy()
        proxy.servers.refusing = 1
        try proxy.send("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        #expect(proxy.servers.connections.isEmpty)
        #expect(proxy.router.inFlight(1) == 0, "a refused request is not counted against the refusing generation")
        proxy.router.setActive(.init(generation: 2, port: 8002))
        proxy.advance(by: .milliseconds(20))
        #expect(proxy.servers.attempts.map(\.generation) == [1, 2])
        // Nothing reached the refusing server, so even a POST goes again, whole.
        #expect(try proxy.serverGot() == "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
    }

    @Test func aGenerationThatKeepsRefusingGets502AfterTheHold() throws {
        let proxy = try EmbeddedProxy(hold: .seconds(1))
        proxy.servers.refusing = .max
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        proxy.advance(by: .milliseconds(900))
        #expect(try proxy.heard().isEmpty, "held while the hold lasts")
        proxy.advance(by: .milliseconds(350))
        #expect(try proxy.heard().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(proxy.client.isActive, "the client keeps its connection")
    }

    @Test func aRequestWhoseBodyReachedTheServerIsNeverSentAgain() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        #expect(try proxy.serverGot().hasSuffix("\r\n\r\nhi"))
        try proxy.server(0).close().wait()
        proxy.advance(by: .seconds(1))
        #expect(try proxy.heard().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
        #expect(proxy.servers.attempts.count == 1)
        #expect(proxy.router.inFlight(1) == 0)
    }

    @Test func anIdempotentRequestDroppedBeforeAnyAnswerGoesAgainOnce() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.server(0).close().wait()
        proxy.advance(by: .milliseconds(20))
        #expect(try proxy.serverGot(1) == "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.server(1).close().wait()
        proxy.advance(by: .milliseconds(50))
        #expect(try proxy.heard().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"), "a request that kills its server every time gets its 502")
        #expect(proxy.servers.attempts.count == 2)
    }

    @Test func a100ContinueReachesTheClientThenTheBodyGoesAndTheAnswerComes() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("PUT /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        #expect(try proxy.serverGot().hasSuffix("Content-Length: 5\r\n\r\n"))
        try proxy.answer("HTTP/1.1 100 Continue\r\n\r\n")
        #expect(try proxy.heard() == "HTTP/1.1 100 Continue\r\n\r\n")
        try proxy.send("hello")
        #expect(try proxy.serverGot() == "hello")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard() == Self.ok)
    }

    @Test func anUpgradeBecomesATunnelCountedUntilItCloses() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        _ = try proxy.serverGot()
        let switching = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        try proxy.answer(switching + "\u{1}server")
        #expect(try proxy.heard() == switching + "\u{1}server")
        try proxy.send("GET not http at all")
        #expect(try proxy.serverGot() == "GET not http at all")
        #expect(proxy.router.inFlight(1) == 1)
        try proxy.server(0).close().wait()
        #expect(!proxy.client.isActive)
        #expect(proxy.router.inFlight(1) == 0)
    }

    @Test func aClientClosingMidResponseClosesTheServerConnectionAndReleasesTheRequest() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        try proxy.client.close().wait()
        #expect(!(try proxy.server(0).isActive))
        #expect(proxy.router.inFlight(1) == 0)
    }

    @Test func stoppingMidExchangeFinishesTheAnswerThenCloses() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        proxy.router.beginShuttingDown(idleGrace: .seconds(1))
        proxy.client.embeddedEventLoop.run()
        #expect(proxy.client.isActive)
        try proxy.answer(Self.ok)
        let heard = try proxy.heard()
        #expect(heard.hasPrefix("HTTP/1.1 200 OK\r\n") && heard.contains("onnection: close\r\n") && heard.hasSuffix("\r\n\r\nhi"))
        #expect(try proxy.serverGot() == "GET /a HTTP/1.1\r\nHost: a\r\n\r\n", "the pipelined request is not taken")
        proxy.advance(by: .seconds(3))
        #expect(!proxy.client.isActive)
        #expect(!(try proxy.server(0).isActive))
    }

    @Test func stoppingWhileIdleClosesBothConnectionsAfterTheGrace() throws {
        let proxy = try EmbeddedProxy()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer(Self.ok)
        proxy.router.beginShuttingDown(idleGrace: .seconds(1))
        proxy.client.embeddedEventLoop.run()
        proxy.advance(by: .milliseconds(900))
        let server = try proxy.server(0)
        #expect(proxy.client.isActive && server.isActive, "an idle client still gets its grace")
        proxy.advance(by: .milliseconds(100))
        #expect(!proxy.client.isActive)
        #expect(!(try proxy.server(0).isActive))
    }

    @Test func aRequestInTheGraceIsAnsweredAsTheLast() throws {
        let proxy = try EmbeddedProxy()
        proxy.router.beginShuttingDown(idleGrace: .seconds(1))
        proxy.client.embeddedEventLoop.run()
        try proxy.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer(Self.ok)
        #expect(try proxy.heard().contains("onnection: close\r\n"))
    }
}
