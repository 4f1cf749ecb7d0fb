import NIOCore
import NIOEmbedded
import SafeWatchCore
import TestSupport
import Testing

@testable import SafeWatch

/// The proxy's two browser hooks on EmbeddedChannels: a request under the prefix is handed over
/// (no server sees it), a full HTML page is gathered and sent with the script and an exact length.
struct BrowserProxyTests {
    private static let settings = LiveReloadSettings(
        prefix: "/_safe-watch/", assetDirectories: [], publicHosts: [], listenAddresses: [ListenAddress(host: "127.0.0.1", port: 8080)])

    /// A proxy with browser endpoints of its own.
    private func proxy(serving: Bool = true) throws -> EmbeddedProxy {
        try EmbeddedProxy(
            serving: serving, browser: BrowserEndpoints(settings: Self.settings, projectDirectory: "/nonexistent", events: EventLog()))
    }

    /// The response's head fields and body, split at the blank line.
    private func split(_ response: String) -> (head: String, body: String) {
        guard let end = response.range(of: "\r\n\r\n") else { return (response, "") }
        return (String(response[..<end.upperBound]), String(response[end.upperBound...]))
    }

    @Test func aChunkedPageInPiecesGetsTheScriptWithAnExactLengthAndTheConnectionGoesOn() throws {
        let proxy = try self.proxy()
        try proxy.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n<body>hi<")
        #expect(try proxy.heard().isEmpty, "held back until the page is whole")
        try proxy.answer("\r\n7\r\n/body>\n\r\n0\r\n\r\n")
        let (head, body) = split(try proxy.heard())
        #expect(head.contains("Content-Length: \(body.utf8.count)\r\n"), "\(head)")
        #expect(!head.lowercased().contains("transfer-encoding"))
        #expect(body.hasPrefix("<body>hi<script src=\"/_safe-watch/client.js\" data-generation=\"1\" data-run=\""), "\(body)")
        #expect(body.hasSuffix("defer></script></body>\n"))
        #expect(proxy.router.inFlight(1) == 0)
        // The same connections carry the next exchange: nothing was left half-read.
        try proxy.send("GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        #expect(try proxy.heard() == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        #expect(proxy.servers.connections.count == 1)
    }

    /// A page still coming after the gathering limit (a stream, or a server pausing mid-page) is
    /// not held for its end: what came goes out as it came, without the script, and the rest
    /// streams after it; the connection goes on.
    @Test func aPageStillComingAfterTheLimitStreamsAsItCame() throws {
        let browser = BrowserEndpoints(settings: Self.settings, projectDirectory: "/nonexistent", events: EventLog())
        let said = Recorder<String>()
        browser.use(answer: { _ in ControlReply(ok: false, message: "") }, say: { said.append($0) })
        let proxy = try EmbeddedProxy(serving: true, browser: browser)
        try proxy.send("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
        try proxy.answer(head + "c\r\n<html><body>\r\n")
        #expect(try proxy.heard().isEmpty, "gathered at first")
        proxy.advance(by: ProxyConnection.gatheringLimit - .milliseconds(1))
        #expect(try proxy.heard().isEmpty)
        proxy.advance(by: .milliseconds(1))
        #expect(try proxy.heard() == head + "c\r\n<html><body>\r\n")
        #expect(said.all.count == 1 && said.all.first?.contains("still coming after 500 ms") == true, "\(said.all)")
        try proxy.answer("8\r\n<p>1</p>\r\n")
        #expect(try proxy.heard() == "8\r\n<p>1</p>\r\n", "the rest streams as it comes")
        try proxy.answer("e\r\n</body></html>\r\n0\r\n\r\n")
        #expect(try proxy.heard() == "e\r\n</body></html>\r\n0\r\n\r\n")
        #expect(proxy.router.inFlight(1) == 0)
        // A whole page after it gets the script as usual.
        try proxy.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        try proxy.answer("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<body></body>")
        #expect(try proxy.heard().contains("data-generation=\"1\""))
        #expect(proxy.servers.connections.count == 1)
    }

    /// A page names the generation that served it, so a browser's copy may not stand in for it:
    /// a navigation goes without its conditions (no 304 can bring an old page back); a stylesheet
    /// keeps them.
    @Test func aNavigationGoesWithoutItsConditionsOtherRequestsKeepThem() throws {
        let proxy = try self.proxy()
        try proxy.send("GET /p HTTP/1.1\r\nHost: a\r\nAccept: text/html,*/*\r\nIf-None-Match: \"x\"\r\nIf-Modified-Since: Mon\r\n\r\n")
        #expect(try proxy.serverGot() == "GET /p HTTP/1.1\r\nHost: a\r\nAccept: text/html,*/*\r\n\r\n")
        try proxy.answer("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        _ = try proxy.heard()
        let css = "GET /s.css HTTP/1.1\r\nHost: a\r\nAccept: text/css\r\nIf-None-Match: \"x\"\r\n\r\n"
        try proxy.send(css)
        #expect(try proxy.serverGot().hasSuffix(css))
    }

    @Test func aFragmentAndAHeadPassAsTheServerSentThem() throws {
        let proxy = try self.proxy()
        try proxy.send("GET /row HTTP/1.1\r\nHost: a\r\n\r\n")
        let fragment = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n<li>x</li"
        try proxy.answer(fragment)
        #expect(try proxy.heard() == fragment)
        try proxy.send("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 500\r\n\r\n"
        try proxy.answer(head)
        #expect(try proxy.heard() == head)
    }

    @Test func aRequestUnderThePrefixIsAnsweredByTheBrowserSideAndNeverForwarded() throws {
        let proxy = try self.proxy()
        try proxy.send("GET /_safe-watch/client.js HTTP/1.1\r\nHost: a\r\n\r\n")
        let (head, body) = split(try proxy.heard())
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/javascript"), "\(head)")
        #expect(body.contains("new EventSource(\"/_safe-watch/events\")"))
        #expect(proxy.servers.connections.isEmpty)
        #expect(!proxy.client.isActive, "closed after its answer")
    }

    @Test func whileNothingServesABrowserGetsThePageAndOtherClientsAreHeld() throws {
        let browser = try self.proxy(serving: false)
        try browser.send("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html,*/*\r\n\r\n")
        let (head, body) = split(try browser.heard())
        #expect(head.hasPrefix("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html"), "\(head)")
        #expect(body.contains("Nothing is serving yet") && body.contains("data-generation=\"0\""))
        let other = try self.proxy(serving: false)
        try other.send("GET / HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\n\r\n")
        #expect(try other.heard().isEmpty, "held, as before")
        other.router.setActive(.init(generation: 1, port: 8001))
        other.client.embeddedEventLoop.run()
        #expect(other.servers.connections.count == 1)
    }
}
