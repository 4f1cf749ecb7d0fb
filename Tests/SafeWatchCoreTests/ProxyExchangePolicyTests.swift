import SafeWatchCore
import Testing

struct ProxyExchangePolicyTests {
    @Test func refusalsAreRetriedWithAGrowingPauseUntilTheHoldEnds() {
        let hold = Duration.seconds(5)
        #expect(ProxyExchangePolicy.afterRefusal(attempts: 1, sinceFirstRefusal: .zero, hold: hold) == .retry(after: .milliseconds(20)))
        #expect(ProxyExchangePolicy.afterRefusal(attempts: 3, sinceFirstRefusal: .seconds(1), hold: hold) == .retry(after: .milliseconds(60)))
        #expect(ProxyExchangePolicy.afterRefusal(attempts: 100, sinceFirstRefusal: .seconds(4), hold: hold) == .retry(after: .milliseconds(250)))
        #expect(ProxyExchangePolicy.afterRefusal(attempts: .max, sinceFirstRefusal: .seconds(4), hold: hold) == .retry(after: .milliseconds(250)))
        #expect(ProxyExchangePolicy.afterRefusal(attempts: 2, sinceFirstRefusal: .seconds(5), hold: hold) == .badGateway)
    }

    @Test func onlyASafeBodilessUnansweredRequestIsReplayedAndOnce() {
        #expect(ProxyExchangePolicy.afterUnansweredClose(method: "GET", replays: 0, sentBody: false, answerBegan: false) == .replay)
        #expect(ProxyExchangePolicy.afterUnansweredClose(method: "PUT", replays: 0, sentBody: false, answerBegan: false) == .replay)
        #expect(ProxyExchangePolicy.afterUnansweredClose(method: "GET", replays: 1, sentBody: false, answerBegan: false) == .badGateway)
        #expect(ProxyExchangePolicy.afterUnansweredClose(method: "POST", replays: 0, sentBody: false, answerBegan: false) == .badGateway)
        #expect(ProxyExchangePolicy.afterUnansweredClose(method: "PUT", replays: 0, sentBody: true, answerBegan: false) == .badGateway)
        #expect(ProxyExchangePolicy.afterUnansweredClose(method: "GET", replays: 0, sentBody: false, answerBegan: true) == .badGateway)
    }

    @Test func connectionsStayOnlyWhenBothSidesAreInAKnownState() {
        func after(server: Bool = true, client: Bool = true, done: Bool = true, extra: Bool = false) -> ProxyExchangePolicy.AfterResponse {
            ProxyExchangePolicy.afterResponse(serverKeeps: server, clientKeeps: client, requestDone: done, extraBytes: extra)
        }
        #expect(after() == .init(keepsServerConnection: true, keepsClientConnection: true))
        #expect(after(server: false) == .init(keepsServerConnection: false, keepsClientConnection: true))
        #expect(after(client: false) == .init(keepsServerConnection: true, keepsClientConnection: false))
        #expect(after(done: false) == .init(keepsServerConnection: false, keepsClientConnection: false), "the body's rest would be read as a request")
        #expect(after(extra: true) == .init(keepsServerConnection: false, keepsClientConnection: true))
    }

    @Test func aCloseLingersUnlessTheClientAskedForItAndSentNothingMore() {
        func lingers(asked: Bool = true, done: Bool = true, more: Bool = false) -> Bool {
            ProxyExchangePolicy.closeLingers(clientAskedToClose: asked, requestDone: done, receivedMore: more)
        }
        #expect(!lingers(), "nothing is unread: the connection simply closes")
        #expect(lingers(asked: false), "a client that expected to keep its connection may be sending its next request")
        #expect(lingers(done: false), "the rest of the body is unread")
        #expect(lingers(more: true), "bytes after the request are unread")
    }

    @Test func onlyARequestThatCouldGoAgainTakesAConnectionThatSatIdle() {
        let limit = ProxyExchangePolicy.idleLimitForUnrepeatable
        #expect(ProxyExchangePolicy.mayReuse(idleFor: nil, method: "POST", hasBody: true), "a new connection")
        #expect(ProxyExchangePolicy.mayReuse(idleFor: .seconds(10), method: "GET", hasBody: false))
        #expect(ProxyExchangePolicy.mayReuse(idleFor: limit - .milliseconds(1), method: "POST", hasBody: true))
        #expect(!ProxyExchangePolicy.mayReuse(idleFor: limit, method: "POST", hasBody: false))
        #expect(!ProxyExchangePolicy.mayReuse(idleFor: .seconds(1), method: "PUT", hasBody: true), "a body cannot go again")
        #expect(ProxyExchangePolicy.mayReuse(idleFor: .seconds(1), method: "DELETE", hasBody: false))
    }
}

