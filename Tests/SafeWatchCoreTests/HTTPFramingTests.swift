import SafeWatchCore
import Testing

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

private func headEnd(_ text: [UInt8], searchedBefore: Int = 0) -> HTTPFraming.HeadEnd {
    text.withUnsafeBytes { HTTPFraming.headEnd(in: $0, searchedBefore: searchedBefore) }
}

private func refusal(_ parse: () throws -> Void) -> HTTPFraming.Refusal? {
    do {
        try parse()
        return nil
    } catch {
        return error as? HTTPFraming.Refusal
    }
}

struct HeadEndTests {
    @Test func findsTheBlankLineEvenWhenItStraddlesReads() {
        let head = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY")
        #expect(headEnd(head) == .complete(length: head.count - 4))
        // Searched up to each possible split point earlier: the end is still found.
        for split in 0..<head.count - 4 {
            #expect(headEnd(Array(head[..<split]), searchedBefore: 0) == .incomplete)
            #expect(headEnd(head, searchedBefore: split) == .complete(length: head.count - 4))
        }
    }

    @Test func acceptsBareLineFeedsAndRefusesHugeHeads() {
        #expect(headEnd(bytes("GET / HTTP/1.1\nHost: a\n\n")) == .complete(length: 24))
        let huge = bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: HTTPFraming.maxHeadLength) + "\r\n")
        #expect(headEnd(huge) == .tooLarge)
        #expect(headEnd(huge + bytes("\r\n")) == .tooLarge)
        #expect(headEnd(bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 16 * 1024) + "\r\n\r\n")) != .tooLarge)
    }
}

struct RequestHeadTests {
    @Test func framingFollowsTheHeaders() throws {
        #expect(try RequestHead(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).body == .none)
        #expect(try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")).body == .length(12))
        #expect(try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")).body == .chunked)
        #expect(try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")).body == .length(5))
        #expect(try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n")).body == .length(.max))
    }

    @Test func refusesAContentLengthThatIsNotAListOfOneNumber() {
        for value in ["", " ", "5,", ",5", "5,,5", "5 5", "+5", "0x10", "5;", "18446744073709551616", "5, 6"] {
            let refused = refusal { _ = try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(value)\r\n\r\n")) }
            #expect(refused?.status == 400, "Content-Length: \(value)")
        }
    }

    @Test func refusesWhatCouldBeReadTwoWays() {
        let both = refusal { _ = try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")) }
        #expect(both?.status == 400)
        #expect(both?.reason.contains("both") == true)
        #expect(refusal { _ = try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("\u{1}\u{2}garbage\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("GET / HTTP/2.0\r\nHost: a\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("GET  / HTTP/1.1\r\nHost: a\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("GET / HTTP/1.1\r\nHost : a\r\n\r\n")) }?.status == 400)
        #expect(refusal { _ = try RequestHead(bytes("GET / HTTP/1.1\r\n\r\n")) }?.reason.contains("Host") == true)
    }

    @Test func http10NeedsNoHostAndKeepsAliveOnlyWhenAsked() throws {
        let plainHead = bytes("GET / HTTP/1.0\r\n\r\n")
        let plain = try RequestHead(plainHead)
        #expect(plain.version == .http1_0 && !plain.keepAlive && plain.hostRange == nil)
        #expect(try RequestHead(bytes("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")).keepAlive)
        #expect(try RequestHead(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).keepAlive)
        #expect(try !RequestHead(bytes("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n")).keepAlive)
        // As received, HTTP/1.0 and without Host.
        #expect(plain.forwarded(from: plainHead, nil) == plainHead)
    }

    @Test func forwardsTheBytesReceivedWithoutTheConnectionsOwnFields() throws {
        var head = bytes("GET /caf\u{e9}?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n")
        head += [88, 45, 76, 97, 116, 105, 110, 58, 32, 0xE9, 116, 0xE9, 13, 10]  // X-Latin: \xE9t\xE9
        head += bytes("Set-Thing: a\r\nset-thing: b\r\nExpect: 100-continue\r\nUpgrade: h2c\r\n\r\n")
        let request = try RequestHead(head)
        #expect(request.expectsContinue && !request.isUpgrade)
        var expected = bytes("GET /caf\u{e9}?x=1 HTTP/1.1\r\nHost: example.test:8080\r\n")
        expected += [88, 45, 76, 97, 116, 105, 110, 58, 32, 0xE9, 116, 0xE9, 13, 10]
        expected += bytes("Set-Thing: a\r\nset-thing: b\r\nExpect: 100-continue\r\n\r\n")
        #expect(request.forwarded(from: head, nil) == expected)
    }

    @Test func conditionsAreDroppedWhenAskedAndOnlyThen() throws {
        let head = bytes("GET /p HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\nAccept: text/html\r\nif-modified-since: Mon\r\nIf-Match: \"y\"\r\n\r\n")
        let request = try RequestHead(head)
        #expect(request.forwarded(from: head, nil) == head)
        #expect(request.forwarded(from: head, nil, droppingConditions: true)
            == bytes("GET /p HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\nIf-Match: \"y\"\r\n\r\n"))
    }

    @Test func addsTheForwardingFieldsAfterEarlierHops() throws {
        let head = bytes("GET / HTTP/1.1\r\nHost: h:1\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\n\r\n")
        let request = try RequestHead(head)
        let text = String(decoding: request.forwarded(from: head, ForwardingFields(clientAddress: "127.0.0.1")), as: UTF8.self)
        #expect(text.contains("X-Forwarded-For: 1.2.3.4, 127.0.0.1\r\n"))
        #expect(text.contains("X-Forwarded-Proto: http\r\n"))
        #expect(text.contains("Forwarded: for=1.2.3.4, for=127.0.0.1;proto=http;host=\"h:1\"\r\n"))
        #expect(!text.contains("X-Forwarded-For: 1.2.3.4\r\n"), "the earlier field is merged, not repeated")

        let tlsHead = bytes("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n")
        let behindTLS = try RequestHead(tlsHead)
        let six = String(decoding: behindTLS.forwarded(from: tlsHead, ForwardingFields(clientAddress: "::1")), as: UTF8.self)
        #expect(six.contains("X-Forwarded-Proto: https\r\n") && !six.contains("X-Forwarded-Proto: http\r\n"))
        #expect(six.contains("Forwarded: for=\"[::1]\";proto=http;host=\"h\"\r\n"))
    }

    @Test func anUpgradeKeepsItsUpgradeFields() throws {
        let head = bytes("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n")
        let request = try RequestHead(head)
        #expect(request.isUpgrade)
        #expect(request.forwarded(from: head, nil) == bytes("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\n\r\n"))
    }

    @Test func aHeadWithNothingToTakeOutIsCopiedWholeAndBareLineFeedsBecomeCRLF() throws {
        let head = bytes("GET /a?b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Forwarded-Proto: https\r\n\r\n")
        let forwarded = try RequestHead(head).forwarded(from: head, ForwardingFields(clientAddress: "10.0.0.2"))
        #expect(forwarded == Array(head.dropLast(2)) + bytes("X-Forwarded-For: 10.0.0.2\r\nForwarded: for=10.0.0.2;proto=http;host=\"h\"\r\n\r\n"))

        let usual = bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(try RequestHead(usual).forwarded(from: usual, ForwardingFields(clientAddress: "::1")) == bytes(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: ::1\r\nX-Forwarded-Proto: http\r\nForwarded: for=\"[::1]\";proto=http;host=\"h\"\r\n\r\n"))

        let bare = bytes("GET / HTTP/1.1\nHost: a\r\nAccept: */*\n\n")
        #expect(try RequestHead(bare).forwarded(from: bare, nil) == bytes("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"))
        // An Upgrade field without `Connection: upgrade` asks for nothing: it does not travel.
        let lone = bytes("GET / HTTP/1.1\r\nUpgrade: h2c\r\nHost: a\r\n\r\n")
        #expect(try RequestHead(lone).forwarded(from: lone, nil) == bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    }

    @Test func connectionTokensAreReadWhateverTheirCaseAndSpacing() throws {
        let head = bytes("GET / HTTP/1.1\r\nHost: a\r\nconnection: ,Keep-Alive ,  X-Hop,\r\nCONNECTION:close\r\nx-hop: 1\r\nX-Other: 2\r\n\r\n")
        let request = try RequestHead(head)
        #expect(!request.keepAlive)
        #expect(request.forwarded(from: head, nil) == bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Other: 2\r\n\r\n"))
        #expect(try RequestHead(bytes("GET / HTTP/1.0\r\nConnection: x, KEEP-ALIVE\r\n\r\n")).keepAlive)
        #expect(try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\nTransfer-Encoding: CHUNKED \r\n\r\n")).body == .chunked)
        #expect(refusal { _ = try RequestHead(bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")) }?.status == 400)
    }
}

struct ResponseHeadTests {
    @Test func framingDependsOnTheRequestAndTheStatus() throws {
        let chunked = bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(try ResponseHead(chunked, requestMethod: "GET").body == .chunked)
        #expect(try ResponseHead(chunked, requestMethod: "HEAD").body == .none)
        #expect(try ResponseHead(bytes("HTTP/1.1 204 No Content\r\n\r\n"), requestMethod: "GET").body == .none)
        #expect(try ResponseHead(bytes("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), requestMethod: "GET").body == .none)
        #expect(try ResponseHead(bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), requestMethod: "GET").body == .length(10))
        let untilClose = try ResponseHead(bytes("HTTP/1.1 200 OK\r\n\r\n"), requestMethod: "GET")
        #expect(untilClose.body == .untilClose && !untilClose.keepAlive)
        #expect(try ResponseHead(bytes("HTTP/1.1 100 Continue\r\n\r\n"), requestMethod: "POST").isInterim)
        #expect(try !ResponseHead(bytes("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), requestMethod: "GET").keepAlive)
        #expect(refusal { _ = try ResponseHead(bytes("HTTP/1.1 2000 OK\r\n\r\n"), requestMethod: "GET") }?.status == 502)
    }

    @Test func theClientHearsWhatHappensToItsConnection() throws {
        let head = bytes("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nX-Name: \u{e9}\r\n\r\n")
        let response = try ResponseHead(head, requestMethod: "GET")
        #expect(!response.passesUnchanged(clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false))
        #expect(response.forwarded(from: head, clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false)
            == bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Name: \u{e9}\r\n\r\n"))
        #expect(response.forwarded(from: head, clientKeepsConnection: false, clientVersion: .http1_0, dechunking: true)
            == bytes("HTTP/1.1 200 OK\r\nX-Name: \u{e9}\r\nConnection: close\r\n\r\n"))
        let sizedHead = bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        let sized = try ResponseHead(sizedHead, requestMethod: "GET")
        #expect(sized.forwarded(from: sizedHead, clientKeepsConnection: true, clientVersion: .http1_0, dechunking: false)
            == bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"))
        let switching = bytes("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(try ResponseHead(switching, requestMethod: "GET").forwarded(from: switching, clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false) == switching)
    }

    @Test func theUsualAnswerPassesUnchangedAndNothingElseDoes() throws {
        let usual = bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Name: \u{e9}\r\n\r\n")
        let response = try ResponseHead(usual, requestMethod: "GET")
        #expect(response.passesUnchanged(clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false))
        #expect(response.forwarded(from: usual, clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false) == usual)
        #expect(!response.passesUnchanged(clientKeepsConnection: false, clientVersion: .http1_1, dechunking: false))
        #expect(!response.passesUnchanged(clientKeepsConnection: true, clientVersion: .http1_0, dechunking: false))

        let interim = bytes("HTTP/1.1 100 Continue\r\n\r\n")
        #expect(try ResponseHead(interim, requestMethod: "POST").passesUnchanged(clientKeepsConnection: false, clientVersion: .http1_1, dechunking: false))

        let keepAlive = bytes("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n")
        let withHopField = try ResponseHead(keepAlive, requestMethod: "GET")
        #expect(!withHopField.passesUnchanged(clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false))
        #expect(withHopField.forwarded(from: keepAlive, clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false)
            == bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))

        let bare = bytes("HTTP/1.1 204 No Content\nX: 1\n\n")
        let bareResponse = try ResponseHead(bare, requestMethod: "GET")
        #expect(!bareResponse.passesUnchanged(clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false))
        #expect(bareResponse.forwarded(from: bare, clientKeepsConnection: true, clientVersion: .http1_1, dechunking: false)
            == bytes("HTTP/1.1 204 No Content\r\nX: 1\r\n\r\n"))
    }
}

struct ChunkedBodyScannerTests {
    static let body = bytes("4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n")

    @Test func findsTheEndAndTheDataWhateverTheReadSizes() throws {
        for size in [1, 2, 3, 7, 1000] {
            var scanner = ChunkedBodyScanner()
            var data: [UInt8] = []
            var consumed = 0
            var offset = 0
            let input = Self.body + bytes("GET /next")
            while offset < input.count, !scanner.isDone {
                let piece = Array(input[offset..<min(input.count, offset + size)])
                let taken = try piece.withUnsafeBytes { raw throws(HTTPFraming.Refusal) in
                    try scanner.scan(raw) { data += piece[$0] }
                }
                consumed += taken
                offset += piece.count
            }
            #expect(scanner.isDone)
            #expect(consumed == Self.body.count, "read size \(size)")
            #expect(String(decoding: data, as: UTF8.self) == "Wikipedia in\r\n\r\nchunks.", "read size \(size)")
        }
    }

    @Test func refusesMalformedFraming() {
        for bad in ["x\r\n", "4\r\nWikiXX\r\n", "\r\n", "FFFFFFFFFFFFFFFFF\r\n"] {
            var scanner = ChunkedBodyScanner()
            let error = refusal { _ = try bytes(bad).withUnsafeBytes { raw in try scanner.scan(raw) } }
            #expect(error?.status == 400, "\(bad.debugDescription)")
        }
    }
}
