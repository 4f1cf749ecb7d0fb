import Crypto
import Foundation
import Glibc
import TestSupport
import Testing

/// safe-watch in proxy mode in front of a real server, Tests/Fixtures/conformance-server.py
/// (Python's standard library, HTTP spoken by hand), run as the unprivileged test account. Clients
/// are raw sockets (exact bytes out, exact bytes in) or curl where a real client's behaviour is
/// the point. Each case asserts what a user's client or server would notice; several ask the
/// server directly too, to show the server itself does what the case expects of the proxy.
struct ConformanceSetup: Sendable {
    let safeWatch: SafeWatchProcess
    /// The proxy's port.
    let port: Int
    /// Generation 1's own port: the server asked without the proxy.
    let serverPort: Int
    let directory: String
}

private let mebibyte = 1 << 20
/// How much safe-watch's private memory may grow during any transfer, however large or slow.
private let memoryBound = 16 * mebibyte
private let obsText: [UInt8] = Array("caf".utf8) + [0xE9, 0x20, 0x80, 0xA0, 0xFF] + Array(" end".utf8)

extension SupervisorIntegrationTests {

    // MARK: Streaming, bounded

    @Test func largeUploadsArriveIntactAndDoNotGrowSafeWatchsMemory() async throws {
        try await withConformanceServer { setup in
            // The first upload sets up what later ones reuse (buffers, the upstream connection).
            _ = try await offPool { try uploadPattern(port: setup.port, size: mebibyte, chunked: false) }
            for chunked in [false, true] {
                let framing = chunked ? "chunked" : "Content-Length"
                let memory = MemoryPeak(pid: setup.safeWatch.pid)
                await conformanceCase("200 MiB \(framing) upload") {
                    let (answer, sent) = try await offPool { try uploadPattern(port: setup.port, size: 200 * mebibyte, chunked: chunked) }
                    #expect(answer.status == 200 && answer.text == "bytes=\(200 * mebibyte) sha256=\(sent)\n", "\(answer.statusLine): \(answer.text)")
                }
                let growth = memory.stop()
                #expect(growth < memoryBound, "safe-watch's private memory grew by \(mebibytes(growth)) during a 200 MiB \(framing) upload")
            }
        }
    }

    @Test func aSlowReaderHoldsBackTheServerNotSafeWatchsMemory() async throws {
        try await withConformanceServer { setup in
            _ = try await offPool { try downloadPattern(port: setup.port, size: mebibyte, slowFor: .zero) }
            let size = 200 * mebibyte
            let memory = MemoryPeak(pid: setup.safeWatch.pid)
            // 1 MB/s for 3 s, then as fast as it comes.
            let outcome = try await offPool { try downloadPattern(port: setup.port, size: size, slowFor: .seconds(3)) }
            let growth = memory.stop()
            #expect(outcome.status == 200 && outcome.completed && outcome.bytes == size, "\(outcome)")
            #expect(outcome.sha256 == TestPattern.sha256(size: size), "the 200 MiB download arrived changed")
            #expect(growth < memoryBound, "safe-watch's private memory grew by \(mebibytes(growth)) while a client read a 200 MiB download at 1 MB/s")
        }
    }

    @Test func sixtyFourSlowReadersAtOnceStayWithinTheMemoryBound() async throws {
        try await withConformanceServer { setup in
            _ = try await offPool { try downloadPattern(port: setup.port, size: mebibyte, slowFor: .zero) }
            let memory = MemoryPeak(pid: setup.safeWatch.pid)
            // Each reads 1 MB/s for 2.5 s of a 32 MiB download (more than the kernel's buffers
            // on the way hold: the server is always ahead), then closes. A proxy that buffers
            // would take gigabytes: the clients stop early once the bound is far behind.
            let outcomes = await onThreads(64) { _ -> (DownloadOutcome?, String?) in
                do {
                    let outcome = try downloadPattern(
                        port: setup.port, size: 32 * mebibyte, slowFor: .milliseconds(2500), thenFinish: false,
                        abort: { memory.growth > 4 * memoryBound })
                    return (outcome, nil)
                } catch {
                    return (nil, "\(error)")
                }
            }
            let growth = memory.stop()
            let failures = outcomes.compactMap(\.1)
            #expect(failures.isEmpty, "\(failures.count) of 64 slow downloads failed, e.g. \(failures.prefix(3))")
            let served = outcomes.compactMap(\.0).filter { $0.status == 200 && $0.bytes >= 512 * 1024 }
            #expect(growth > 4 * memoryBound || served.count == 64, "only \(served.count) of 64 slow readers got their bytes")
            #expect(growth < memoryBound, "safe-watch's private memory grew by \(mebibytes(growth)) while 64 clients read downloads at 1 MB/s")
        }
    }

    // MARK: Faithful

    @Test func expectContinueIsAnsweredByTheServerBeforeTheBodyIsSent() async throws {
        try await withConformanceServer { setup in
            for (way, port) in [("directly", setup.serverPort), ("through the proxy", setup.port)] {
                await conformanceCase("100 Continue \(way)") {
                    let (interim, final) = try await offPool { () throws -> (RawResponse, RawResponse?) in
                        let client = try RawClient(port: port)
                        try client.send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(mebibyte)\r\nExpect: 100-continue\r\n\r\n")
                        // No byte of the body goes out before the server's interim answer.
                        let interim = try client.readResponse(limit: .seconds(3))
                        guard interim.status == 100 else { return (interim, nil) }
                        for block in TestPattern.blocks(size: mebibyte) { try client.send(block) }
                        return (interim, try client.readResponse())
                    }
                    #expect(interim.statusLine == "HTTP/1.1 100 Continue")
                    #expect(final?.text == "bytes=\(mebibyte) sha256=\(TestPattern.sha256(size: mebibyte))\n", "\(String(describing: final?.text))")
                }
                await conformanceCase("413 instead of 100 \(way)") {
                    let answer = try await exchange(
                        port: port, "POST /reject-upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(200 * mebibyte)\r\nExpect: 100-continue\r\n\r\n",
                        limit: .seconds(3))
                    #expect(answer.status == 413, "\(answer.statusLine)")
                }
            }
            // curl, as users upload: without a 100 it waits --expect100-timeout before it sends.
            await conformanceCase("curl with Expect: 100-continue") {
                let directory = makeTemporaryDirectory("sw-upload")
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let file = directory + "/body"
                _ = FileManager.default.createFile(atPath: file, contents: Data(TestPattern.blocks(size: mebibyte).joined()))
                let begun = ContinuousClock.now
                let (status, output) = try await run(
                    "/usr/bin/curl",
                    ["-sS", "--noproxy", "*", "--expect100-timeout", "6", "-H", "Expect: 100-continue", "--data-binary", "@" + file,
                     "http://127.0.0.1:\(setup.port)/upload"],
                    in: "/")
                let took = ContinuousClock.now - begun
                #expect(status == .exited(0) && output == "bytes=\(mebibyte) sha256=\(TestPattern.sha256(size: mebibyte))", "\(output)")
                #expect(took < .seconds(3), "curl's upload took \(seconds(took)): it waited for a 100 Continue that did not come")
            }
        }
    }

    @Test func headerBytesOutsideASCIIArriveUnchangedBothWays() async throws {
        try await withConformanceServer { setup in
            let request = Array("GET /echo-head HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Obs-Text: ".utf8) + obsText + Array("\r\nConnection: close\r\n\r\n".utf8)
            for (way, port) in [("directly", setup.serverPort), ("through the proxy", setup.port)] {
                await conformanceCase(way) {
                    let answer = try await exchange(port: port, request)
                    let received = try requestHead(answer.body)
                    let arrived = received.fields.filter { $0.name == "x-obs-text" }.map(\.value)
                    #expect(arrived == [obsText], "\(way): the server received \(printable(answer.body))")
                    #expect(answer.values("x-obs-text") == [obsText], "\(way): the client received \(printable(answer.head))")
                }
            }
        }
    }

    @Test func http10ClientsGetABodyTheyCanReadAndNoInventedHost() async throws {
        try await withConformanceServer { setup in
            // The server chunks even for an HTTP/1.0 client: the case the proxy must mend.
            let direct = try await exchange(port: setup.serverPort, "GET /chunked HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(direct.value("transfer-encoding") == "chunked", "the server no longer chunks for HTTP/1.0: \(printable(direct.head))")
            let bodies = [("/chunked", "hello chunked world"), ("/plain", "hello plain world"), ("/close-delimited", "hello close-delimited world")]
            for (path, expected) in bodies {
                await conformanceCase("HTTP/1.0 GET \(path)") {
                    let answer = try await exchange(port: setup.port, "GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", http10: true)
                    // An HTTP/1.0 client knows no chunked coding (RFC 9112 §6.1).
                    #expect(answer.value("transfer-encoding") == nil, "an HTTP/1.0 client got \(printable(answer.head))")
                    #expect(answer.status == 200 && answer.text == expected, "\(answer.statusLine): \(printable(answer.body))")
                }
            }
            await conformanceCase("HTTP/1.0 without Host") {
                let answer = try await exchange(port: setup.port, "GET /echo-head HTTP/1.0\r\n\r\n", http10: true)
                let received = try requestHead(answer.body)
                let hosts = received.fields.filter { $0.name == "host" }
                let invented = hosts.contains { !$0.value.isEmpty }
                #expect(!invented, "the server received a Host the client never sent: \(printable(answer.body))")
                #expect(
                    !received.line.hasSuffix("HTTP/1.1") || !hosts.isEmpty,
                    "the server received an HTTP/1.1 request without Host (invalid): \(printable(answer.body))")
            }
        }
    }

    @Test func malformedRequestsGet400AndTheirConnectionIsClosed() async throws {
        try await withConformanceServer { setup in
            let cases = [
                ("Content-Length with Transfer-Encoding",
                 "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                ("a garbage request line", "THIS IS NOT HTTP\r\n\r\n"),
            ]
            for (name, request) in cases {
                await conformanceCase(name) {
                    let (answer, after) = try await offPool {
                        let client = try RawClient(port: setup.port)
                        try client.send(request)
                        return (try client.readResponse(limit: .seconds(5)), client.closes(within: .seconds(2)))
                    }
                    #expect(answer.status == 400, "\(answer.statusLine)")
                    #expect(after == .closed, "after its 400 the connection was \(after) 2 s later")
                }
                #expect(await body(port: setup.port, "/gen") == "gen 1", "safe-watch stopped serving after \(name)")
            }
        }
    }

    @Test func headsOver64KiBGet431AndLargeOnesPass() async throws {
        try await withConformanceServer { setup in
            let fill = String(repeating: "x", count: 1000)
            func request(fields: Int) -> String {
                "GET /echo-head HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (0..<fields).map { "X-Fill-\($0): \(fill)\r\n" }.joined() + "Connection: close\r\n\r\n"
            }
            await conformanceCase("16 KiB of header fields") {
                let answer = try await exchange(port: setup.port, request(fields: 16))
                let received = try requestHead(answer.body)
                #expect(answer.status == 200 && received.fields.filter { $0.name.hasPrefix("x-fill-") }.count == 16, "\(answer.statusLine)")
            }
            let oversized = request(fields: 72)
            await conformanceCase("72 KiB of header fields") {
                let (answer, after) = try await offPool {
                    let client = try RawClient(port: setup.port)
                    try client.send(oversized)
                    return (try client.readResponse(limit: .seconds(5)), client.closes(within: .seconds(2)))
                }
                #expect(answer.status == 431, "\(answer.statusLine)")
                #expect(after == .closed, "after its 431 the connection was \(after) 2 s later")
            }
            #expect(await body(port: setup.port, "/gen") == "gen 1")
        }
    }

    @Test func forwardingHeadersAreAppendedAndCanBeTurnedOff() async throws {
        let relayed = "GET /echo-head HTTP/1.1\r\nHost: app.example:8080\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\nConnection: close\r\n\r\n"
        let first = "GET /echo-head HTTP/1.1\r\nHost: app.example:8080\r\nConnection: close\r\n\r\n"
        let added: Set<String> = ["for=127.0.0.1", "proto=http", "host=\"app.example:8080\""]
        try await withConformanceServer { setup in
            await conformanceCase("a request another proxy forwarded") {
                let received = try requestHead(try await exchange(port: setup.port, relayed).body)
                #expect(received.value("x-forwarded-for") == "1.2.3.4, 127.0.0.1", "\(received.text)")
                #expect(received.value("x-forwarded-proto") == "http", "\(received.text)")
                let elements = forwardedElements(received.value("forwarded"))
                #expect(elements.first == ["for=1.2.3.4"] && elements.count == 2 && elements.last == added, "Forwarded: \(received.text)")
            }
            await conformanceCase("a request from the client itself") {
                let received = try requestHead(try await exchange(port: setup.port, first).body)
                #expect(received.value("x-forwarded-for") == "127.0.0.1", "\(received.text)")
                #expect(received.value("x-forwarded-proto") == "http", "\(received.text)")
                #expect(forwardedElements(received.value("forwarded")) == [added], "\(received.text)")
            }
        }
        try await withConformanceServer(serve: "forwarded_headers = false") { setup in
            let received = try requestHead(try await exchange(port: setup.port, relayed).body)
            #expect(received.value("x-forwarded-for") == "1.2.3.4", "\(received.text)")
            #expect(received.value("x-forwarded-proto") == nil, "\(received.text)")
            #expect(received.value("forwarded") == "for=1.2.3.4", "\(received.text)")
        }
    }

    @Test func headNoContentNotModifiedPipeliningTrailersAbsoluteFormAndRepeatedFields() async throws {
        try await withConformanceServer { setup in
            let port = setup.port
            let host = "Host: 127.0.0.1\r\n"
            let bodiless = [("HEAD", "HEAD /download?bytes=1000", 200), ("204", "GET /status?code=204", 204), ("304", "GET /status?code=304", 304)]
            for (name, request, status) in bodiless {
                await conformanceCase(name) {
                    let (first, next) = try await offPool {
                        let client = try RawClient(port: port)
                        try client.send("\(request) HTTP/1.1\r\n\(host)\r\n")
                        let first = try client.readResponse(method: name == "HEAD" ? "HEAD" : "GET", limit: .seconds(5))
                        // The same connection answers the next request: no body was waited for or left behind.
                        try client.send("GET /echo-path?id=next HTTP/1.1\r\n\(host)\r\n")
                        return (first, try client.readResponse(limit: .seconds(5)))
                    }
                    #expect(first.status == status, "\(first.statusLine)")
                    if name == "HEAD" { #expect(first.value("content-length") == "1000", "\(printable(first.head))") }
                    if name == "304" { #expect(first.value("etag") == "\"v1\"", "\(printable(first.head))") }
                    #expect(next.status == 200 && next.text == "next", "after the \(name) response: \(next.statusLine) \(printable(next.body))")
                }
            }
            await conformanceCase("pipelining") {
                let answers = try await offPool {
                    let client = try RawClient(port: port)
                    // One write; the first is answered last by the server's clock, first on the wire.
                    try client.send(
                        "GET /echo-path?id=first&delay_ms=200 HTTP/1.1\r\n\(host)\r\nGET /echo-path?id=second HTTP/1.1\r\n\(host)\r\n"
                            + "GET /echo-path?id=third HTTP/1.1\r\n\(host)Connection: close\r\n\r\n")
                    return try (0..<3).map { _ in try client.readResponse(limit: .seconds(5)).text }
                }
                #expect(answers == ["first", "second", "third"])
            }
            await conformanceCase("trailers") {
                let answer = try await exchange(port: port, "GET /trailers HTTP/1.1\r\n\(host)TE: trailers\r\nConnection: close\r\n\r\n")
                #expect(answer.text == "with trailers")
                #expect(
                    answer.trailers.map(\.name) == ["x-checksum"] && answer.trailers.first?.value == Array("7f3a".utf8),
                    "head: \(printable(answer.head)) trailers: \(answer.trailers)")
            }
            await conformanceCase("absolute-form target") {
                let answer = try await exchange(
                    port: port, "GET http://127.0.0.1:\(port)/echo-head HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n")
                #expect(answer.status == 200, "\(answer.statusLine)")
                let received = try requestHead(answer.body)
                #expect(received.line.hasSuffix("/echo-head HTTP/1.1"), "the server received \(received.line)")
            }
            await conformanceCase("repeated Set-Cookie") {
                let answer = try await exchange(port: port, "GET /set-cookies HTTP/1.1\r\n\(host)Connection: close\r\n\r\n")
                let cookies = [Array("a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT".utf8), Array("b=2; Path=/".utf8)]
                #expect(answer.values("set-cookie") == cookies, "\(printable(answer.head))")
            }
        }
    }

    // MARK: Retries only when safe

    @Test func aPostTheServerDroppedGets502AndIsNeverSentTwice() async throws {
        try await withConformanceServer { setup in
            let size = 256 * 1024
            let answer = try await offPool {
                let client = try RawClient(port: setup.port)
                try client.send("POST /post-drop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(size)\r\n\r\n")
                // The server resets the connection after 64 KiB: the rest of the body may not get out.
                for block in TestPattern.blocks(size: size) {
                    do { try client.send(block) } catch { break }
                }
                return try client.readResponse(limit: .seconds(10))
            }
            #expect(answer.status == 502, "\(answer.statusLine): \(answer.text)")
            // Asked of the server itself.
            #expect(await body(port: setup.serverPort, "/count?path=/post-drop") == "1", "the server did not see the POST exactly once")
        }
    }

    @Test func aRequestTheOldGenerationRefusesIsAnsweredByTheNewest() async throws {
        // Generation 2 listens a second after it starts: the request must wait for it.
        try await withConformanceServer(environment: "CONFORMANCE_STARTUP_DELAY = \"1\"") { setup in
            let safeWatch = setup.safeWatch
            let mark = safeWatch.log.count
            #expect(await body(port: setup.port, "/close-listener") == "closing the listener")
            try #require(await firstLine(safeWatch, containing: "gen 1 stopped listening", after: mark) != nil, "\(safeWatch.output)")
            // Generation 1 is still the one routed to, and refuses: nothing of the request reached it.
            try setVersion("conformance-2", in: setup.directory)
            let answer = await httpGet(port: setup.port, "/gen")
            #expect((try? answer.get().body) == "gen 2", "\(answer)")
        }
    }

    // MARK: Long-lived connections drain at a swap

    @Test func anUpgradedConnectionKeepsItsGenerationUntilStopTimeoutOrItsClose() async throws {
        try await withConformanceServer(stopTimeout: "3s") { setup in
            let safeWatch = setup.safeWatch
            let tunnel = try await openEchoTunnel(port: setup.port)
            #expect(try await echo(tunnel, "before the swap") == "gen 1: before the swap")

            var mark = safeWatch.log.count
            let gen1Stopped = timeOfLine(safeWatch, containing: "conformance server gen 1 got SIGTERM", after: mark)
            try setVersion("conformance-2", in: setup.directory)
            try #require(await firstLine(safeWatch, containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
            let swapped = ContinuousClock.now
            // Echo through gen 1's tunnel a few times a second until gen 1 is told to stop.
            var lastEcho: Duration?
            var broken: String?
            while await safeWatch.log.waitForLine(containing: "gen 1 got SIGTERM", after: mark, limit: .milliseconds(250)) == nil,
                ContinuousClock.now - swapped < .seconds(10)
            {
                do {
                    let reply = try await echo(tunnel, "ping")
                    guard reply == "gen 1: ping" else {
                        broken = "answered \(reply)"
                        break
                    }
                    lastEcho = ContinuousClock.now - swapped
                } catch {
                    // Stopped, the server exits and the tunnel closes: that close may overtake
                    // the line saying so on its way through safe-watch's log.
                    if await safeWatch.log.waitForLine(containing: "gen 1 got SIGTERM", after: mark, limit: .seconds(1)) == nil {
                        broken = "\(error)"
                    }
                    break
                }
            }
            let stopped = await gen1Stopped.value
            #expect(broken == nil, "the tunnel to gen 1 broke after the swap (last echo at +\(seconds(lastEcho))): \(broken ?? "")")
            let drained = stopped.map { $0 - swapped }
            #expect(
                drained.map { $0 >= .milliseconds(2500) && $0 < .seconds(6) } == true,
                "with a tunnel open, gen 1 got its stop signal \(seconds(drained)) after the swap; expected at stop_timeout (3 s)")
            #expect((lastEcho ?? .zero) >= .seconds(2), "echoes through gen 1 worked until +\(seconds(lastEcho)) after the swap")
            // A new tunnel goes to gen 2; when it closes, gen 2's drain ends at once.
            let second = try await openEchoTunnel(port: setup.port)
            #expect(try await echo(second, "on gen 2") == "gen 2: on gen 2")
            mark = safeWatch.log.count
            let gen2Stopped = timeOfLine(safeWatch, containing: "conformance server gen 2 got SIGTERM", after: mark)
            try setVersion("conformance-3", in: setup.directory)
            try #require(await firstLine(safeWatch, containing: "✓ gen 3 healthy", after: mark) != nil, "\(safeWatch.output)")
            await conformanceCase("gen 2's tunnel after the swap") {
                let reply = try await echo(second, "still")
                #expect(reply == "gen 2: still")
            }
            let stoppedEarly = safeWatch.log.all.dropFirst(mark).contains { $0.contains("gen 2 got SIGTERM") }
            #expect(!stoppedEarly, "gen 2 got its stop signal while its tunnel was open")
            second.shutdown()
            let closed = ContinuousClock.now
            let stoppedAt = await gen2Stopped.value
            #expect(
                stoppedAt.map { $0 - closed < .milliseconds(1500) } == true,
                "gen 2 got its stop signal \(seconds(stoppedAt.map { $0 - closed })) after its last tunnel closed; expected at once")
        }
    }

    @Test func streamsInFlightAtASwapCompleteFromTheOldGenerationBeforeItStops() async throws {
        try await withConformanceServer(stopTimeout: "10s") { setup in
            let safeWatch = setup.safeWatch
            let mark = safeWatch.log.count
            let gen1Stopped = timeOfLine(safeWatch, containing: "conformance server gen 1 got SIGTERM", after: mark, limit: .seconds(30))
            let (started, start) = AsyncStream<Void>.makeStream()
            // An event stream (20 events, 100 ms apart) and a 64 MiB download read at 1 MB/s for 4 s.
            let events = Task {
                try await offPool { () throws -> (RawResponse, ContinuousClock.Instant) in
                    let client = try RawClient(port: setup.port)
                    try client.send("GET /slow-stream?chunks=20&interval_ms=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    var response: RawResponse
                    do {
                        response = try client.readHead(by: .now + .seconds(10))
                    } catch {
                        start.yield()  // no head to wait for
                        throw error
                    }
                    start.yield()
                    var body: [UInt8] = []
                    try client.readBody(response.framing(after: "GET"), by: .now + .seconds(30), into: &response) { body += $0 }
                    response.body = body
                    return (response, ContinuousClock.now)
                }
            }
            let size = 64 * mebibyte
            let download = Task {
                try await offPool {
                    do {
                        return try downloadPattern(port: setup.port, size: size, slowFor: .seconds(4), started: { start.yield() })
                    } catch {
                        start.yield()  // no head to wait for
                        throw error
                    }
                }
            }
            var heads = 0
            for await _ in started {
                heads += 1
                if heads == 2 { break }
            }
            try setVersion("conformance-2", in: setup.directory)
            try #require(await firstLine(safeWatch, containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
            let swapped = ContinuousClock.now

            let (stream, streamEnded) = try await events.value
            let downloaded = try await download.value
            let ends = "\(seconds(streamEnded - swapped)), \(seconds(downloaded.finished - swapped))"
            #expect(streamEnded > swapped && downloaded.finished > swapped, "the swap came after the streams had ended (\(ends)):\n\(safeWatch.output)")
            #expect(stream.text == (0..<20).map { "gen 1 event \($0)\n" }.joined(), "\(stream.text)")
            #expect(downloaded.completed && downloaded.bytes == size && downloaded.sha256 == TestPattern.sha256(size: size), "\(downloaded)")
            // Its stop comes once the last stream has ended, not at stop_timeout (10 s). The client
            // reads the last bytes a moment after the proxy has passed them on: 0.5 s of slack.
            let lastEnded = max(streamEnded, downloaded.finished)
            let stopped = await gen1Stopped.value
            let after = seconds(stopped.map { $0 - lastEnded })
            #expect(
                stopped.map { $0 - lastEnded > .milliseconds(-500) && $0 - lastEnded < .seconds(2) } == true,
                "gen 1 got its stop signal \(after) after its last stream ended (negative: while one was still in flight); expected just after")
        }
    }

    // MARK: The setup

    /// Runs `body` with safe-watch proxying to the conformance server (gen 1 healthy), then stops
    /// safe-watch whatever happened. `serve` adds lines to `[serve]`; `environment` is the inline
    /// table of the server's `[run] env`.
    func withConformanceServer(
        serve: String = "", stopTimeout: String = "3s", environment: String? = nil, _ body: (ConformanceSetup) async throws -> Void
    ) async throws {
        let directory = try await Fixture.shared.reset(version: "conformance-1")
        try installConformanceServer(in: directory)
        // Build "true": a change under Sources/ (setVersion) makes the next generation of the same script.
        var configuration = "[build]\ncommand = \"true\"\nbinary = \"conformance-server.py\"\n[watch]\ndebounce = \"50ms\"\n"
        configuration += "[health]\ninterval = \"50ms\"\n[run]\nstop_timeout = \"\(stopTimeout)\"\n"
        if let environment { configuration += "env = { \(environment) }\n" }
        if !serve.isEmpty { configuration += "[serve]\n\(serve)\n" }
        try configuration.save(to: directory + "/safe-watch.toml")
        try await withSafeWatchOnAFreePort(in: directory) { safeWatch, port in
            let listening = await firstLine(safeWatch, containing: "[gen 1] conformance server gen 1 listening on 127.0.0.1:")
            let serverPort = try #require(listening?.split(separator: ":").last.flatMap { Int($0) }, "the server never listened:\n\(safeWatch.output)")
            try #require(await firstLine(safeWatch, containing: "✓ gen 1 healthy") != nil, "gen 1 never served:\n\(safeWatch.output)")
            try await body(ConformanceSetup(safeWatch: safeWatch, port: port, serverPort: serverPort, directory: directory))
        }
    }
}

/// One case of a test: an error fails the case, named, and the next case still runs.
func conformanceCase(_ name: String, _ body: () async throws -> Void) async {
    do {
        try await body()
    } catch {
        Issue.record("\(name): \(error)")
    }
}

/// Copies the conformance server into the project `directory` (as its account may run it).
func installConformanceServer(in directory: String) throws {
    let script = directory + "/conformance-server.py"
    try? FileManager.default.removeItem(atPath: script)
    try FileManager.default.copyItem(atPath: Paths.packageRoot + "/Tests/Fixtures/conformance-server.py", toPath: script)
    giveToAccount(script)
    chmod(script, 0o755)
}

/// Runs safe-watch on `directory` (its safe-watch.toml written already) on a free port, gives
/// `body` the process and that port, then stops it whatever happened (exit 0 expected when `body`
/// passed) and removes the conformance server, safe-watch.toml and `removing`.
func withSafeWatchOnAFreePort(
    in directory: String, removing: [String] = [], _ body: (SafeWatchProcess, Int) async throws -> Void
) async throws {
    let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
    var failure: (any Error)?
    do {
        let start = await firstLine(safeWatch, containing: "mode on http://")
        let port = try #require(start?.split(separator: ":").last.flatMap { Int($0) }, "no start line:\n\(safeWatch.output)")
        try await body(safeWatch, port)
    } catch {
        failure = error
    }
    let status = await safeWatch.terminate()
    if failure == nil { #expect(status == .exited(0), "\(safeWatch.output)") }
    for path in ["conformance-server.py", "safe-watch.toml"] + removing {
        try? FileManager.default.removeItem(atPath: directory + "/" + path)
    }
    if let failure { throw failure }
}

/// The first line containing `text` after index `from`: nil after `limit`, or as soon as safe-watch
/// has exited without printing it.
func firstLine(_ safeWatch: SafeWatchProcess, containing text: String, after from: Int = 0, limit: Duration = .seconds(30)) async -> String? {
    let (found, report) = AsyncStream<String?>.makeStream()
    let line = Task { report.yield(await safeWatch.log.waitForLine(containing: text, after: from, limit: limit)) }
    let exit = Task {
        _ = await safeWatch.exit.value
        _ = await safeWatch.waitForExit(limit: .seconds(5))  // its last lines
        report.yield(safeWatch.log.all.dropFirst(from).first { $0.contains(text) })
    }
    defer {
        line.cancel()
        exit.cancel()
    }
    for await first in found { return first }
    return nil
}

/// When the first line containing `text` after `from` arrives (nil if not within `limit`), waited
/// for from now on, beside whatever the test does meanwhile.
func timeOfLine(
    _ safeWatch: SafeWatchProcess, containing text: String, after from: Int, limit: Duration = .seconds(20)
) -> Task<ContinuousClock.Instant?, Never> {
    Task { await safeWatch.log.waitForLine(containing: text, after: from, limit: limit) != nil ? ContinuousClock.now : nil }
}

/// One request on a new connection, one response (read as an HTTP/1.0 client would if `http10`).
func exchange(port: Int, _ request: String, http10: Bool = false, limit: Duration = .seconds(10)) async throws -> RawResponse {
    try await exchange(port: port, Array(request.utf8), http10: http10, limit: limit)
}

func exchange(port: Int, _ request: [UInt8], http10: Bool = false, limit: Duration = .seconds(10)) async throws -> RawResponse {
    try await offPool {
        let client = try RawClient(port: port)
        try client.send(request)
        return try client.readResponse(http10: http10, limit: limit)
    }
}

/// A request head as the server received it (its /echo-head body).
struct ReceivedHead {
    var line: String
    var fields: [HeaderField]
    var text: String

    /// The field's values as one list, as text; nil if absent.
    func value(_ name: String) -> String? {
        let values = self.fields.filter { $0.name == name }.map { String(decoding: $0.value, as: UTF8.self) }
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }
}

func requestHead(_ bytes: [UInt8]) throws -> ReceivedHead {
    var lines = bytes.split(separator: 10, omittingEmptySubsequences: false).map { Array($0.last == 13 ? $0.dropLast() : $0) }
    while lines.last?.isEmpty == true { lines.removeLast() }
    guard let first = lines.first else { throw RawHTTPError("the server received no request head") }
    return ReceivedHead(
        line: String(decoding: first, as: UTF8.self), fields: try lines.dropFirst().map(HeaderField.init(line:)), text: printable(bytes))
}

/// A Forwarded value's elements, each as its set of parameters (names lower-cased).
func forwardedElements(_ value: String?) -> [Set<String>] {
    guard let value else { return [] }
    return value.split(separator: ",").map { element in
        Set(element.split(separator: ";").map { pair in
            let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            return parts.count == 2 ? parts[0].lowercased() + "=" + parts[1] : String(pair)
        })
    }
}

/// POSTs a `size`-byte pattern body to /upload, with Content-Length or chunked, generated as it is
/// sent; the server's answer and the SHA-256 of what was sent.
func uploadPattern(port: Int, size: Int, chunked: Bool) throws -> (RawResponse, String) {
    let client = try RawClient(port: port)
    try client.send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n\(chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(size)")\r\n\r\n")
    var hasher = SHA256()
    for block in TestPattern.blocks(size: size) {
        hasher.update(data: block)
        try client.send(chunked ? Array("\(String(block.count, radix: 16))\r\n".utf8) + block + [13, 10] : block)
    }
    if chunked { try client.send("0\r\n\r\n") }
    return (try client.readResponse(limit: .seconds(60)), hex(hasher.finalize()))
}

struct DownloadOutcome: Sendable, CustomStringConvertible {
    var status: Int
    var bytes: Int
    var sha256: String
    /// The whole body arrived (not stopped after the slow part).
    var completed: Bool
    var finished: ContinuousClock.Instant
    var description: String { "HTTP \(self.status), \(self.bytes) bytes\(self.completed ? "" : " (stopped early)"), sha256 \(self.sha256)" }
}

/// GET /download of a `size`-byte pattern body read at 1 MB/s for `slowFor`, then as fast as it
/// comes, or closed then (`thenFinish` false). `abort` is asked during the slow part; `started`
/// is called once the head is in.
func downloadPattern(
    port: Int, size: Int, slowFor: Duration, thenFinish: Bool = true, abort: () -> Bool = { false }, started: () -> Void = {}
) throws -> DownloadOutcome {
    let rate = 1_000_000.0
    let client = try RawClient(port: port)
    try client.send("GET /download?bytes=\(size) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    var response = try client.readHead(by: .now + .seconds(15))
    started()
    let begun = ContinuousClock.now
    var hasher = SHA256()
    var received = 0
    struct Enough: Error {}
    client.receiveSize = 16384
    var completed = true
    do {
        try client.readBody(response.framing(after: "GET"), by: .now + .seconds(120), into: &response) { piece in
            hasher.update(data: piece)
            received += piece.count
            let elapsed = ContinuousClock.now - begun
            if elapsed < slowFor {
                if abort() { throw Enough() }
                // The client's own pace: it reads no more than 1 MB a second.
                let due = Double(received) / rate - elapsed.seconds
                if due > 0 { usleep(UInt32(min(due, 1) * 1_000_000)) }
            } else if thenFinish {
                client.receiveSize = 262_144
            } else {
                throw Enough()
            }
        }
    } catch is Enough {
        completed = false
    }
    return DownloadOutcome(status: response.status, bytes: received, sha256: hex(hasher.finalize()), completed: completed, finished: .now)
}

/// Opens an `Upgrade: echo` tunnel (the server echoes each line back with its generation).
func openEchoTunnel(port: Int) async throws -> RawClient {
    try await offPool {
        let client = try RawClient(port: port)
        try client.send("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        let switched = try client.readHead(by: .now + .seconds(10))
        guard switched.status == 101 else { throw RawHTTPError("the upgrade was answered \(switched.statusLine)") }
        return client
    }
}

func echo(_ tunnel: RawClient, _ line: String) async throws -> String {
    try await offPool {
        try tunnel.send(line + "\n")
        return try tunnel.readLine(limit: .seconds(5))
    }
}

extension Duration {
    var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

func seconds(_ duration: Duration?) -> String {
    duration.map { String(format: "%.2f s", $0.seconds) } ?? "never"
}
