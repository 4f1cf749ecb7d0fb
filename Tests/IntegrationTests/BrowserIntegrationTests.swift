import Foundation
import Glibc
import TestSupport
import Testing

/// The browser side (README, "In the browser") through the real proxy: safe-watch as the test
/// account in front of Tests/Fixtures/conformance-server.py, raw sockets as the browser.
struct BrowserSetup: Sendable {
    let safeWatch: SafeWatchProcess
    let port: Int
    let directory: String
}

/// A build that fails, like swiftc, while Version.swift holds `BROKEN`: a file:line:column error.
private let buildCommand = #"""
    if grep -q BROKEN Sources/hello-server/Version.swift; then echo "$PWD/Sources/hello-server/Version.swift:3:19: error: cannot convert value of type 'String' to specified type 'Int'"; exit 1; fi
    """#

private let brokenSource = versionSource("broken") + "let broken: Int = \"BROKEN\"\n"

/// One event of a `text/event-stream`.
struct StreamEvent: Sendable, CustomStringConvertible {
    var name: String
    var data: String
    var id: String?
    var description: String { "\(self.name) \(self.data)" }
}

/// A browser's `EventSource`, on a raw socket: the head, then one event at a time.
final class EventStream: @unchecked Sendable {
    let client: RawClient
    let head: RawResponse

    init(port: Int, host: String? = nil) throws {
        self.client = try RawClient(port: port)
        try self.client.send("GET /_safe-watch/events HTTP/1.1\r\nHost: \(host ?? "127.0.0.1:\(port)")\r\nAccept: text/event-stream\r\n\r\n")
        self.head = try self.client.readHead(by: ContinuousClock.now + .seconds(10))
    }

    /// The next event (comments and `retry:` skipped).
    func next(limit: Duration = .seconds(60)) throws -> StreamEvent {
        var event = StreamEvent(name: "message", data: "", id: nil)
        var sawField = false
        while true {
            let line = try self.client.readLine(limit: limit)
            if line.isEmpty {
                if sawField { return event }
                continue
            }
            if line.hasPrefix(":") || line.hasPrefix("retry:") { continue }
            sawField = true
            if line.hasPrefix("event: ") { event.name = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { event.data += String(line.dropFirst(6)) }
            if line.hasPrefix("id: ") { event.id = String(line.dropFirst(4)) }
        }
    }

    /// Events up to and including the first named `name`.
    func until(_ name: String, limit: Duration = .seconds(60)) throws -> [StreamEvent] {
        var events: [StreamEvent] = []
        while true {
            let event = try self.next(limit: limit)
            events.append(event)
            if event.name == name { return events }
        }
    }
}

extension SupervisorIntegrationTests {
    func withBrowserSetup(
        version: String = "browser-1", configuration extra: String = "", stopTimeout: String = "3s", waitForServing: Bool = true, prepare: (String) throws -> Void = { _ in },
        _ body: (BrowserSetup) async throws -> Void
    ) async throws {
        let directory = try await Fixture.shared.reset(version: version)
        try installConformanceServer(in: directory)
        try? FileManager.default.removeItem(atPath: directory + "/Public")
        try prepare(directory)
        var configuration = "[build]\ncommand = '''\(buildCommand)'''\nbinary = \"conformance-server.py\"\n[watch]\ndebounce = \"50ms\"\n"
        configuration += "[health]\ninterval = \"50ms\"\n[run]\nstop_timeout = \"\(stopTimeout)\"\n" + extra
        try configuration.save(to: directory + "/safe-watch.toml")
        try await withSafeWatchOnAFreePort(in: directory, removing: ["Public"]) { safeWatch, port in
            if waitForServing {
                try #require(await firstLine(safeWatch, containing: "✓ gen 1 healthy") != nil, "gen 1 never served:\n\(safeWatch.output)")
            }
            try await body(BrowserSetup(safeWatch: safeWatch, port: port, directory: directory))
        }
    }

    /// One request on a new connection, its response read as a client must frame it.
    func browserExchange(_ port: Int, _ request: String, method: String = "GET") async throws -> RawResponse {
        try await offPool {
            let client = try RawClient(port: port)
            try client.send(request)
            return try client.readResponse(method: method)
        }
    }

    @Test func fullPagesGetTheScriptWithExactFramingFragmentsAndOthersPassUntouched() async throws {
        try await withBrowserSetup { setup in
            let port = setup.port
            let tag = "<script src=\"/_safe-watch/client.js\" data-generation=\"1\" data-run=\""
            // Content-Length and chunked pages, twice on one keep-alive connection: a wrong length
            // would break the second response's framing.
            for path in ["/html", "/html-chunked"] {
                await conformanceCase(path) {
                    let responses = try await offPool {
                        let client = try RawClient(port: port)
                        try client.send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        return [try client.readResponse(), try client.readResponse()]
                    }
                    for response in responses {
                        #expect(response.status == 200)
                        #expect(response.value("content-length") == String(response.body.count), "\(printable(response.head))")
                        #expect(response.value("transfer-encoding") == nil)
                        #expect(response.text.components(separatedBy: tag).count == 2, "\(response.text)")
                        #expect(response.text.hasSuffix("defer></script></body></html>\n"), "\(response.text)")
                    }
                }
            }
            await conformanceCase("a chunked page past the largest document streams as it came, without the script") {
                let pad = (8 << 20) + (1 << 20)  // past HTMLResponseRewriter.largestDocument (8 MiB)
                let response = try await self.browserExchange(
                    port, "GET /html-chunked?pad=\(pad) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(response.status == 200)
                #expect(response.value("transfer-encoding") == "chunked")
                #expect(response.body.count > pad)
                #expect(!response.text.contains("<script"))
                #expect(response.text.hasSuffix("</body></html>\n"))
            }
            await conformanceCase("until close") {
                let response = try await self.browserExchange(port, "GET /html-close HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                #expect(response.value("content-length") == String(response.body.count))
                #expect(response.text.contains(tag))
            }
            await conformanceCase("HEAD keeps the server's length, no body") {
                let response = try await self.browserExchange(port, "HEAD /html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method: "HEAD")
                let plain = try await self.browserExchange(port, "GET /html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                // The server's own length: the GET's body without the tag.
                let start = try #require(plain.text.range(of: "<script"))
                let end = try #require(plain.text.range(of: "</script>"))
                let original = String(plain.text[..<start.lowerBound]) + String(plain.text[end.upperBound...])
                #expect(response.value("content-length") == String(original.utf8.count))
                #expect(response.body.isEmpty)
            }
            await conformanceCase("304 passes as sent") {
                let response = try await self.browserExchange(port, "GET /html?code=304 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(response.status == 304 && response.value("content-length") == "1234" && response.body.isEmpty)
            }
            await conformanceCase("a fragment passes byte for byte") {
                let response = try await self.browserExchange(port, "GET /html-fragment HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(response.text == "<li>gen 1 row</li>")
            }
            await conformanceCase("gzip is left alone and said once") {
                for _ in 0..<2 {
                    let response = try await self.browserExchange(port, "GET /html-gzip HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    #expect(response.value("content-encoding") == "gzip" && response.value("content-length") == String(response.body.count))
                    #expect(response.body.starts(with: [0x1f, 0x8b]))
                }
                let said = await firstLine(setup.safeWatch, containing: "Content-Encoding: gzip gets no live-reload script")
                #expect(said != nil, "\(setup.safeWatch.output)")
                #expect(setup.safeWatch.log.all.filter { $0.contains("Content-Encoding: gzip gets no") }.count == 1)
            }
            await conformanceCase("a policy's nonce is used; a forbidding policy means no script") {
                let nonce = try await self.browserExchange(
                    port, "GET /html?policy=script-src%20%27nonce-abc%27 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(nonce.text.contains("nonce=\"abc\" defer></script>"), "\(nonce.text)")
                let strict = try await self.browserExchange(
                    port, "GET /html?policy=script-src%20%27none%27 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(!strict.text.contains("<script"))
                #expect(strict.value("content-length") == String(strict.body.count))
            }
            await conformanceCase("client.js is served, never forwarded") {
                let script = try await self.browserExchange(port, "GET /_safe-watch/client.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                #expect(script.status == 200 && script.value("content-type")?.hasPrefix("text/javascript") == true)
                #expect(script.text.contains("new EventSource(\"/_safe-watch/events\")"))
                let count = try await self.browserExchange(port, "GET /count?path=/_safe-watch/client.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(count.text == "0")
            }
        }
    }

    @Test func oneEventStreamSeesTheSwapThenTheFailedBuildWithDiagnosticsThenTheFix() async throws {
        try await withBrowserSetup { setup in
            let stream = try await offPool { try EventStream(port: setup.port) }
            #expect(stream.head.status == 200 && stream.head.value("content-type")?.hasPrefix("text/event-stream") == true)
            let hello = try await offPool { try stream.next() }
            #expect(hello.name == "hello" && hello.data.contains(#""generation":1"#), "\(hello)")

            try setVersion("browser-2", in: setup.directory)
            let toSwap = try await offPool { try stream.until("reload") }
            #expect(toSwap.map(\.name).contains("build-started"), "\(toSwap)")
            #expect(toSwap.last?.data == #"{"generation":2}"#)
            // Right after the swap (within the debounce, ~50 ms later the build starts): the
            // failure must reach the same stream.
            try brokenSource.save(to: setup.directory + "/Sources/hello-server/Version.swift")
            let toFailure = try await offPool { try stream.until("build-failed") }
            #expect(toFailure.map(\.name).contains("build-started"), "\(toFailure)")
            let failed = try #require(toFailure.last)
            #expect(failed.data.contains(#""file":"Sources/hello-server/Version.swift","line":3"#), "\(failed.data)")
            #expect(failed.data.contains(#""column":19"#) && failed.data.contains("cannot convert value of type"), "\(failed.data)")
            #expect(failed.data.contains(#""source":"let broken: Int = \"BROKEN\"""#), "\(failed.data)")
            #expect(failed.data.contains(#""caret":"                  ^""#), "\(failed.data)")
            // No reload for a failed build: the next reload is the fix's, gen 3.
            try setVersion("browser-3", in: setup.directory)
            let toFix = try await offPool { try stream.until("reload") }
            #expect(toFix.last?.data == #"{"generation":3}"#, "\(toFix)")
            #expect(toFix.filter { $0.name == "reload" }.count == 1)

            // A page connecting while a build fails hears of it right after hello.
            try brokenSource.save(to: setup.directory + "/Sources/hello-server/Version.swift")
            _ = try await offPool { try stream.until("build-failed") }
            let late = try await offPool { try EventStream(port: setup.port) }
            let greeting = try await offPool { [try late.next(), try late.next()] }
            #expect(greeting.map(\.name) == ["hello", "build-failed"], "\(greeting)")
            #expect(greeting[0].data.contains(#""generation":3"#))
        }
    }

    @Test func anOpenEventStreamDoesNotHoldUpStopping() async throws {
        // With a 30 s stop_timeout safe-watch waits up to 15 s for open client connections: an
        // event stream, which never ends by itself, must be closed by safe-watch as it stops.
        try await withBrowserSetup(stopTimeout: "30s") { setup in
            let stream = try await offPool { try EventStream(port: setup.port) }
            _ = try await offPool { try stream.next() }
            let started = ContinuousClock.now
            setup.safeWatch.signal(SIGTERM)
            let outcome = try await offPool { stream.client.closes(within: .seconds(20)) }
            #expect(outcome != .stillOpen, "the event stream was still open as safe-watch stopped")
            #expect(await setup.safeWatch.waitForExit(limit: .seconds(20)) == .exited(0))
            let took = ContinuousClock.now - started
            #expect(took < .seconds(8), "stopping took \(took) with an event stream open")
        }
    }

    @Test func aBlockedMigrationReachesTheStreamWithItsFindingAndFix() async throws {
        let database = makeTemporaryDirectory("browser-gate-db") + "/dev.db"
        let users = "CREATE TABLE users (id integer PRIMARY KEY);\n"
        try await withBrowserSetup(
            configuration: "[migrations]\ndatabase_url = \"sqlite:\(database)\"\napply = \"safe-watch\"\n",
            prepare: { directory in
                try createAccountDirectory(directory + "/migrations")
                try users.save(to: directory + "/migrations/0001_users.sql")
            }
        ) { setup in
            let stream = try await offPool { try EventStream(port: setup.port) }
            _ = try await offPool { try stream.next() }
            // An applied migration edited: the next generation is blocked, the page hears why and how to fix it.
            try "CREATE TABLE users (id integer PRIMARY KEY, name text);\n".save(to: setup.directory + "/migrations/0001_users.sql")
            try setVersion("browser-mig-2", in: setup.directory)
            let events = try await offPool { try stream.until("migrations-blocked") }
            let blocked = try #require(events.last)
            #expect(blocked.data.contains("SW101") && blocked.data.contains("0001_users.sql"), "\(blocked.data)")
            #expect(blocked.data.contains(#""fix":""#), "\(blocked.data)")
            #expect(!events.contains { $0.name == "reload" }, "\(events)")
            try users.save(to: setup.directory + "/migrations/0001_users.sql")
        }
    }

    @Test func assetChangesReachTheBrowserWithoutABuildAndTemporaryFilesDoNot() async throws {
        try await withBrowserSetup(prepare: { directory in
            try createAccountDirectory(directory + "/Public/css")
            try "p { color: red }\n".save(to: directory + "/Public/css/site.css")
        }) { setup in
            let stream = try await offPool { try EventStream(port: setup.port) }
            _ = try await offPool { try stream.next() }
            let mark = setup.safeWatch.log.count
            // An editor's atomic save: a temporary file, then the real one.
            try "p { color: blue }\n".save(to: setup.directory + "/Public/css/.site.css.swp", atomically: false)
            try "p { color: blue }\n".save(to: setup.directory + "/Public/css/site.css~", atomically: false)
            try "p { color: blue }\n".save(to: setup.directory + "/Public/css/site.css")
            let css = try await offPool { try stream.next() }
            #expect(css.name == "css" && css.data == #"{"path":"Public/css/site.css","url_path":"/css/site.css"}"#, "\(css)")
            try "<p>x</p>\n".save(to: setup.directory + "/Public/about.html")
            let page = try await offPool { try stream.next() }
            #expect(page.name == "page" && page.data.contains("Public/about.html"), "\(page)")
            #expect(!setup.safeWatch.log.all.dropFirst(mark).contains { $0.contains("▸ build") }, "\(setup.safeWatch.output)")
            #expect(await firstLine(setup.safeWatch, containing: "↻ Public/css/site.css changed", after: mark) != nil)
        }
    }

    @Test func actionsNeedTheTokenAndTheirOwnOriginAndHost() async throws {
        try await withBrowserSetup { setup in
            let port = setup.port
            let own = "127.0.0.1:\(port)"
            let page = try await self.browserExchange(port, "GET /_safe-watch/ HTTP/1.1\r\nHost: \(own)\r\n\r\n")
            #expect(page.status == 200 && page.text.contains("gen 1 serving"), "\(page.text)")
            let token = try #require(
                page.text.components(separatedBy: "data-token=\"").dropFirst().first?.split(separator: "\"").first.map(String.init))
            func post(host: String, origin: String?, token: String?) async throws -> Int {
                var request = "POST /_safe-watch/rebuild HTTP/1.1\r\nHost: \(host)\r\nContent-Length: 0\r\n"
                if let origin { request += "Origin: \(origin)\r\n" }
                if let token { request += "X-Safe-Watch-Token: \(token)\r\n" }
                return try await self.browserExchange(port, request + "\r\n").status
            }
            #expect(try await post(host: own, origin: "http://evil.example", token: token) == 403)
            #expect(try await post(host: "evil.example:\(port)", origin: "http://evil.example:\(port)", token: token) == 403)
            #expect(try await post(host: own, origin: "http://\(own)", token: nil) == 403)
            #expect(try await post(host: own, origin: "http://\(own)", token: "0" + token.dropFirst()) == 403)
            #expect(!setup.safeWatch.output.contains("▸ build 2"))
            // A rebinding name gets the page without the token.
            let foreign = try await self.browserExchange(port, "GET /_safe-watch/ HTTP/1.1\r\nHost: evil.example:\(port)\r\n\r\n")
            #expect(foreign.status == 200 && !foreign.text.contains("data-token"))
            // The page's own request works.
            #expect(try await post(host: "localhost:\(port)", origin: "http://localhost:\(port)", token: token) == 200)
            #expect(await firstLine(setup.safeWatch, containing: "▸ build 2 started") != nil, "\(setup.safeWatch.output)")
        }
    }

    @Test func aBrowserGetsTheNothingServingPageOtherClientsTheHeldRequest() async throws {
        try await withBrowserSetup(
            configuration: "[serve]\nhold_timeout = \"500ms\"\n", waitForServing: false,
            prepare: { directory in try brokenSource.save(to: directory + "/Sources/hello-server/Version.swift") }
        ) { setup in
            #expect(await firstLine(setup.safeWatch, containing: "✗ build 1 failed") != nil, "\(setup.safeWatch.output)")
            let page = try await self.browserExchange(
                setup.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html,application/xhtml+xml\r\nConnection: close\r\n\r\n")
            #expect(page.status == 503 && page.value("content-type")?.hasPrefix("text/html") == true)
            #expect(page.text.contains("Sources/hello-server/Version.swift:3:19"), "\(page.text)")
            #expect(page.text.contains("data-generation=\"0\""))
            let other = try await self.browserExchange(setup.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            #expect(other.status == 503 && other.value("content-type")?.hasPrefix("text/html") != true)
            // The fix: a page waiting on the stream hears the reload.
            let stream = try await offPool { try EventStream(port: setup.port) }
            let greeting = try await offPool { [try stream.next(), try stream.next()] }
            #expect(greeting.map(\.name) == ["hello", "build-failed"])
            try setVersion("browser-fixed", in: setup.directory)
            let reload = try await offPool { try stream.until("reload") }
            #expect(reload.last?.data == #"{"generation":1}"#)
        }
    }
}
