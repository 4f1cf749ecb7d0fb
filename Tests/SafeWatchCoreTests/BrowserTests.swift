import Foundation
import SafeWatchCore
import Testing

private let settings = LiveReloadSettings(
    prefix: "/_safe-watch/", assetDirectories: ["Public", "Resources/Views"], publicHosts: ["dev.example.com"],
    listenAddresses: [ListenAddress(host: "127.0.0.1", port: 8080)])

private func head(_ text: String) -> [UInt8] { Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8) }

private func fields(_ pairs: (String, String)...) -> [(name: String, value: String)] { pairs.map { (name: $0.0, value: $0.1) } }

@Suite("[browser] configuration")
struct BrowserConfigurationTests {
    let loader = ConfigurationLoader(fileName: "safe-watch.toml")

    @Test("defaults: on in proxy mode, /_safe-watch/, existing default asset directories")
    func defaults() throws {
        let config = try loader.load("")
        #expect(config.browser.enabled == nil)
        #expect(config.browser.prefix == "/_safe-watch/")
        let (settings, notice) = LiveReloadSettings.from(config, listenAddresses: []) { $0 == "Public" }
        #expect(notice == nil)
        #expect(settings?.assetDirectories == ["Public"])
    }

    @Test("every key is read")
    func keys() throws {
        let config = try loader.load(
            """
            [browser]
            enabled = true
            prefix = "/__dev/"
            assets = ["static/", "./templates"]
            public_hosts = ["Dev.Example.com"]
            """)
        #expect(config.browser.enabled == true)
        #expect(config.browser.prefix == "/__dev/")
        #expect(config.browser.assets == ["static", "templates"])
        #expect(config.browser.publicHosts == ["dev.example.com"])
    }

    @Test(
        "bad values are refused with the key and line",
        arguments: [
            ("[browser]\nprefix = \"/\"", "browser.prefix"), ("[browser]\nprefix = \"_sw/\"", "browser.prefix"),
            ("[browser]\nprefix = \"/_sw\"", "browser.prefix"), ("[browser]\nassets = [\"../x\"]", "browser.assets"),
            ("[browser]\nassets = \"Public\"", "browser.assets"), ("[browser]\nenabled = \"yes\"", "browser.enabled"),
            ("[browser]\npublic_hosts = [\"http://x/\"]", "browser.public_hosts"), ("[browser]\nreload = true", "browser.reload"),
        ])
    func refused(text: String, key: String) {
        do {
            _ = try loader.load(text)
            Issue.record("\(text) loaded")
        } catch {
            #expect(error.key == key)
            #expect(error.line == 2)
        }
    }

    @Test("socket, tcp and restart modes cannot inject and say so; enabled = false is silent")
    func otherModes() throws {
        for mode in ["socket", "tcp", "restart"] {
            let config = try loader.load("[serve]\nmode = \"\(mode)\"")
            let (settings, notice) = LiveReloadSettings.from(config, listenAddresses: []) { _ in true }
            #expect(settings == nil)
            #expect(notice?.contains("need proxy mode") == true)
        }
        let off = try loader.load("[browser]\nenabled = false")
        let (settings, notice) = LiveReloadSettings.from(off, listenAddresses: []) { _ in true }
        #expect(settings == nil && notice == nil)
    }
}

@Suite("Assets in the change classifier")
struct AssetClassificationTests {
    var classifier: ChangeClassifier {
        var classifier = ChangeClassifier(extensions: ["swift"], configurationPath: "safe-watch.toml", ignore: IgnoreRules(patterns: []))
        classifier.assetDirectories = ["Public", "Resources/Views"]
        return classifier
    }

    @Test("CSS restyles, anything else under the assets reloads the page, nothing builds")
    func kinds() {
        #expect(classifier.classify("Public/css/site.css") == .asset(.css))
        #expect(classifier.classify("Public/STYLE.CSS") == .asset(.css))
        #expect(classifier.classify("Public/app.js") == .asset(.page))
        #expect(classifier.classify("Resources/Views/index.leaf") == .asset(.page))
        #expect(classifier.classify("Public/tool.swift") == .asset(.page))
        #expect(classifier.classify("Sources/App/routes.swift") == .build)
        #expect(classifier.classify("PublicX/a.css") == .irrelevant)
    }

    @Test(
        "an editor's temporary files never reach the browser",
        arguments: [
            "Public/.style.css.swp", "Public/.style.css.swx", "Public/style.css~", "Public/.#style.css", "Public/#style.css#",
            "Public/style.css.tmp", "Public/4913", "Public/style.css___jb_tmp___", "Public/.goutputstream-ABC123",
            "Public/style.css.crswap", "Resources/Views/sedAb12Cd",
        ])
    func temporaries(path: String) {
        #expect(classifier.classify(path) == .irrelevant)
    }

    @Test("without asset directories (the browser side off) Public stays irrelevant")
    func noAssets() {
        let plain = ChangeClassifier(extensions: ["swift"], configurationPath: "safe-watch.toml", ignore: IgnoreRules(patterns: []))
        #expect(plain.classify("Public/site.css") == .irrelevant)
    }
}

@Suite("HTML injection")
struct HTMLInjectionTests {
    @Test("full HTML documents get the script; other types, HEAD, 204 and 304 do not")
    func decide() {
        let html = fields(("Content-Type", "text/html; charset=utf-8"))
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 200, fields: html) == .inject(nonce: nil))
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 404, fields: html) == .inject(nonce: nil))
        #expect(HTMLInjection.decide(requestMethod: "HEAD", status: 200, fields: html) == .leave)
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 304, fields: html) == .leave)
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 204, fields: html) == .leave)
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 200, fields: fields(("Content-Type", "application/json"))) == .leave)
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 200, fields: fields(("Content-Type", "text/html-sandboxed"))) == .leave)
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 200, fields: []) == .leave)
        let download = fields(("Content-Type", "text/html"), ("Content-Disposition", "attachment; filename=x.html"))
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 200, fields: download) == .leave)
    }

    @Test("an encoded body is left alone, with a reason to say once")
    func encoded() {
        let gzip = fields(("Content-Type", "text/html"), ("Content-Encoding", "gzip"))
        guard case .leaveAndSay(let reason) = HTMLInjection.decide(requestMethod: "GET", status: 200, fields: gzip) else {
            Issue.record("gzip injected")
            return
        }
        #expect(reason.contains("gzip"))
        let identity = fields(("Content-Type", "text/html"), ("Content-Encoding", "identity"))
        #expect(HTMLInjection.decide(requestMethod: "GET", status: 200, fields: identity) == .inject(nonce: nil))
    }

    @Test("a Content-Security-Policy: 'self' allows, a nonce is reused, anything else forbids")
    func contentSecurityPolicy() {
        func decide(_ policy: String) -> HTMLInjection.Decision {
            HTMLInjection.decide(requestMethod: "GET", status: 200, fields: fields(("Content-Type", "text/html"), ("Content-Security-Policy", policy)))
        }
        #expect(decide("default-src 'self'") == .inject(nonce: nil))
        #expect(decide("img-src *") == .inject(nonce: nil))
        #expect(decide("script-src 'nonce-abc123' 'strict-dynamic'") == .inject(nonce: "abc123"))
        #expect(decide("default-src 'self'; script-src 'nonce-R4nd0m'") == .inject(nonce: "R4nd0m"))
        guard case .leaveAndSay = decide("script-src 'none'") else { Issue.record("'none' injected"); return }
        guard case .leaveAndSay = decide("script-src https://cdn.example.com") else { Issue.record("foreign-only injected"); return }
        guard case .leaveAndSay = decide("script-src 'self'; connect-src 'none'") else { Issue.record("connect 'none' injected"); return }
        guard case .leaveAndSay = decide("default-src 'none'") else { Issue.record("default 'none' injected"); return }
        guard case .leaveAndSay = decide("script-src 'strict-dynamic' 'sha256-x'") else { Issue.record("strict-dynamic injected"); return }
    }

    @Test("the tag goes before the last </body>, else </head>; a fragment is nil")
    func inject() {
        let tag = "<script></script>"
        #expect(HTMLInjection.inject(tag, into: Array("<html><body>x</body></html>".utf8)).map { String(decoding: $0, as: UTF8.self) }
            == "<html><body>x<script></script></body></html>")
        #expect(HTMLInjection.inject(tag, into: Array("<HTML><BODY>a</BODY >".utf8)).map { String(decoding: $0, as: UTF8.self) }
            == "<HTML><BODY>a<script></script></BODY >")
        #expect(HTMLInjection.inject(tag, into: Array("<head><title>t</title></head>text".utf8)).map { String(decoding: $0, as: UTF8.self) }
            == "<head><title>t</title><script></script></head>text")
        #expect(HTMLInjection.inject(tag, into: Array("<div hx-swap-oob='true'>row</div>".utf8)) == nil)
        #expect(HTMLInjection.inject(tag, into: []) == nil)
    }

    @Test("the script tag names the generation and run, escapes, and carries the nonce")
    func scriptTag() {
        let tag = HTMLInjection.scriptTag(settings: settings, generation: 3, run: "r1", nonce: "a\"b")
        #expect(tag == "<script src=\"/_safe-watch/client.js\" data-generation=\"3\" data-run=\"r1\" nonce=\"a&quot;b\" defer></script>")
    }
}

@Suite("HTML response rewriting keeps the framing exact")
struct HTMLResponseRewriterTests {
    let tag = "<script src=\"/_safe-watch/client.js\"></script>"

    func split(_ output: [UInt8]) -> (head: String, body: [UInt8]) {
        let text = output
        for index in 0..<(text.count - 3) where text[index..<index + 4].elementsEqual("\r\n\r\n".utf8) {
            return (String(decoding: text[..<(index + 4)], as: UTF8.self), Array(text[(index + 4)...]))
        }
        return ("", [])
    }

    func declaredLength(_ head: String) -> Int? {
        head.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
    }

    @Test("Content-Length: the new length is exactly the new body's, in pieces of any size")
    func contentLength() {
        let body = Array("<!doctype html><html><body><p>hi</p></body></html>".utf8)
        for piece in [1, 7, body.count] {
            var rewriter = HTMLResponseRewriter(
                head: head("HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: \(body.count)\nETag: \"x\"\nCache-Control: max-age=600\n\n"),
                framing: .length(UInt64(body.count)), tag: tag)
            var step = HTMLResponseRewriter.Step.needMore
            var offset = 0
            while offset < body.count {
                step = rewriter.take(Array(body[offset..<min(offset + piece, body.count)]))
                offset += piece
                if offset < body.count { #expect(step == .needMore) }
            }
            guard case .complete(let output, let injected, let leftover) = step else {
                Issue.record("not complete")
                return
            }
            #expect(injected && leftover.isEmpty)
            let (head, newBody) = split(output)
            #expect(declaredLength(head) == newBody.count)
            #expect(newBody.count == body.count + tag.utf8.count)
            #expect(head.components(separatedBy: "\r\n").filter { $0.lowercased().hasPrefix("content-length") }.count == 1)
            // The page names its generation: no copy may be kept or revalidated into a 304.
            #expect(!head.lowercased().contains("etag") && !head.lowercased().contains("max-age"), "\(head)")
            #expect(head.components(separatedBy: "\r\n").filter { $0.lowercased().hasPrefix("cache-control") } == ["Cache-Control: no-store"])
            #expect(String(decoding: newBody, as: UTF8.self).hasSuffix(tag + "</body></html>"))
        }
    }

    @Test("chunked: de-chunked, Transfer-Encoding gone, Content-Length exact")
    func chunked() {
        func chunk(_ text: String) -> String { String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n" }
        let wire = Array((chunk("<html><body>hi ") + chunk("there</bo") + chunk("dy>\n") + "0\r\n\r\n").utf8)
        var rewriter = HTMLResponseRewriter(
            head: head("HTTP/1.1 200 OK\nContent-Type: text/html\nTransfer-Encoding: chunked\n\n"), framing: .chunked, tag: tag)
        var last = HTMLResponseRewriter.Step.needMore
        for byte in wire { last = rewriter.take([byte]) }
        guard case .complete(let output, true, let leftover) = last else {
            Issue.record("not complete: \(last)")
            return
        }
        #expect(leftover.isEmpty)
        let (head, body) = split(output)
        #expect(!head.lowercased().contains("transfer-encoding"))
        #expect(declaredLength(head) == body.count)
        #expect(String(decoding: body, as: UTF8.self) == "<html><body>hi there" + tag + "</body>\n")
    }

    @Test("a fragment comes out byte for byte as it came, in its own framing")
    func fragment() {
        let wire = Array("5\r\n<li>x\r\n0\r\n\r\n".utf8)
        let original = head("HTTP/1.1 200 OK\nContent-Type: text/html\nTransfer-Encoding: chunked\n\n")
        var rewriter = HTMLResponseRewriter(head: original, framing: .chunked, tag: tag)
        #expect(rewriter.take(wire) == .complete(output: original + wire, injected: false, leftover: []))
    }

    @Test("until close: complete when the server closes; a length body that ends early is malformed")
    func untilClose() {
        var rewriter = HTMLResponseRewriter(head: head("HTTP/1.0 200 OK\nContent-Type: text/html\n\n"), framing: .untilClose, tag: tag)
        #expect(rewriter.take(Array("<body></body>".utf8)) == .needMore)
        guard case .complete(let output, true, _) = rewriter.serverClosed() else {
            Issue.record("not complete")
            return
        }
        let (head, body) = split(output)
        #expect(declaredLength(head) == body.count)
        var short = HTMLResponseRewriter(head: [], framing: .length(10), tag: tag)
        _ = short.take([1, 2])
        guard case .malformed = short.serverClosed() else {
            Issue.record("an early close passed")
            return
        }
    }

    @Test("a page of unknown length past the largest document is let go as it came, the rest to stream after it")
    func tooLarge() {
        let original = head("HTTP/1.1 200 OK\nContent-Type: text/html\nTransfer-Encoding: chunked\n\n")
        var rewriter = HTMLResponseRewriter(head: original, framing: .chunked, tag: tag)
        let chunk = Array("100000\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20) + Array("\r\n".utf8)
        var sent: [UInt8] = []
        var step = HTMLResponseRewriter.Step.needMore
        while step == .needMore {
            sent += chunk
            step = rewriter.take(chunk)
        }
        guard case .letGo(let output, .chunked(let scanner)) = step else {
            Issue.record("not let go: \(step)")
            return
        }
        #expect(output == original + sent)
        #expect(sent.count > HTMLResponseRewriter.largestDocument && sent.count <= HTMLResponseRewriter.largestDocument + chunk.count)
        #expect(!scanner.isDone)
        var untilClose = HTMLResponseRewriter(head: [], framing: .untilClose, tag: tag)
        guard case .letGo(_, .untilClose) = untilClose.take([UInt8](repeating: 0, count: HTMLResponseRewriter.largestDocument + 1)) else {
            Issue.record("an until-close page was held past the limit")
            return
        }
    }

    @Test("a page let go while it is still coming: what came, as it came, and how much is left")
    func letGoMidPage() {
        let original = head("HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: 100\n\n")
        var rewriter = HTMLResponseRewriter(head: original, framing: .length(100), tag: tag)
        let first = Array("<html><head></head><body>".utf8)
        #expect(rewriter.take(first) == .needMore)
        #expect(rewriter.letGo() == .letGo(output: original + first, rest: .length(UInt64(100 - first.count))))
        var untilClose = HTMLResponseRewriter(head: original, framing: .untilClose, tag: tag)
        #expect(untilClose.take(first) == .needMore)
        #expect(untilClose.letGo() == .letGo(output: original + first, rest: .untilClose))
    }

    @Test("bytes past the body are handed back")
    func leftover() {
        var rewriter = HTMLResponseRewriter(head: head("HTTP/1.1 200 OK\n\n"), framing: .length(6), tag: tag)
        guard case .complete(_, false, let leftover) = rewriter.take(Array("<p></p>HTTP".utf8)) else {
            Issue.record("not complete")
            return
        }
        #expect(leftover == Array(">HTTP".utf8))
    }
}

@Suite("Actions: Host and Origin")
struct BrowserAccessTests {
    @Test("the listen address, localhost on its port and public hosts may act")
    func allowed() {
        #expect(settings.allowsActions(host: "127.0.0.1:8080", origin: nil))
        #expect(settings.allowsActions(host: "localhost:8080", origin: "http://localhost:8080"))
        #expect(settings.allowsActions(host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080"))
        #expect(settings.allowsActions(host: "dev.example.com", origin: "https://dev.example.com"))
        #expect(settings.allowsActions(host: "DEV.example.com:443", origin: "https://dev.example.com"))
    }

    @Test("another site, a rebinding name, another port or no Host are refused")
    func refused() {
        #expect(!settings.allowsActions(host: "127.0.0.1:8080", origin: "http://evil.example"))
        #expect(!settings.allowsActions(host: "evil.example:8080", origin: nil))
        #expect(!settings.allowsActions(host: "evil.example:8080", origin: "http://evil.example:8080"))
        #expect(!settings.allowsActions(host: "localhost:9090", origin: nil))
        #expect(!settings.allowsActions(host: nil, origin: nil))
        #expect(!settings.allowsActions(host: "127.0.0.1:8080", origin: "null"))
        #expect(!settings.allowsActions(host: "127.0.0.1:8080", origin: "file://"))
    }

    @Test("reserved paths and endpoints")
    func reserved() {
        #expect(settings.isReserved("/_safe-watch/events"))
        #expect(settings.isReserved("/_safe-watch/?x=1"))
        #expect(settings.isReserved("/_safe-watch"))
        #expect(settings.isReserved("http://127.0.0.1:8080/_safe-watch/client.js"))
        #expect(!settings.isReserved("/_safe-watcher"))
        #expect(!settings.isReserved("/app/_safe-watch/"))
        #expect(settings.endpoint(of: "/_safe-watch/events?x") == "events")
        #expect(settings.endpoint(of: "/_safe-watch/") == "")
    }
}

@Suite("The browser's event feed")
struct BrowserFeedTests {
    var seq = 0
    mutating func record(_ event: String, _ message: String, generation: Int? = nil, build: Int? = nil, level: String = "info",
                         path: String? = nil, diagnostics: [StatusSnapshot.Diagnostic]? = nil) -> EventRecord {
        seq += 1
        return EventRecord(
            seq: seq, time: Date(timeIntervalSince1970: Double(seq)), level: level, event: event, message: message, generation: generation,
            build: build, path: path, diagnostics: diagnostics)
    }

    @Test("a swap is a reload with its generation; builds and failures carry their data, in order")
    mutating func sequence() {
        var feed = BrowserFeed(assetDirectories: ["Public"])
        let source: (String, Int) -> String? = { file, line in file == "Sources/App/a.swift" && line == 3 ? "\tlet x: Int = \"s\"" : nil }
        var names: [String] = []
        var data: [String] = []
        for record in [
            record("build_started", "▸ build 1 started", build: 1),
            record("build_succeeded", "✓ build 1 succeeded in 1.0 s", build: 1),
            record("candidate_launched", "▸ gen 1 starting", generation: 1),
            record("swapped", "✓ gen 1 healthy in 20 ms", generation: 1),
            record("build_started", "▸ build 2 started", build: 2),
            record(
                "build_failed", "✗ build 2 failed in 0.5 s — 1 error; still serving gen 1", build: 2, level: "error",
                diagnostics: [.init(file: "Sources/App/a.swift", line: 3, column: 15, severity: "error", message: "cannot convert <String>")]),
            record("diagnostic", "    Sources/App/a.swift:3: cannot convert", level: "error"),
            record("asset_changed", "↻ Public/css/site.css changed", path: "Public/css/site.css"),
            record("asset_changed", "↻ Public/index.html changed", path: "Public/index.html"),
            record("output", "[gen 1] GET /"),
        ] {
            if let event = feed.take(record, sourceLine: source) {
                names.append(event.name)
                data.append(event.data)
            }
        }
        #expect(names == ["build-started", "progress", "progress", "reload", "build-started", "build-failed", "css", "page"])
        #expect(data[3] == #"{"generation":1}"#)
        #expect(data[5].contains(#""summary":"1 error""#))
        #expect(data[5].contains(#""caret":"\t             ^""#))
        #expect(data[5].contains(#""source":"\tlet x: Int = \"s\"""#))
        #expect(data[5].contains(#""column":15"#))
        #expect(data[6] == #"{"path":"Public/css/site.css","url_path":"/css/site.css"}"#)
        #expect(feed.generation == 1)
        #expect(feed.builds.map(\.result) == ["succeeded", "failed"])
        #expect(feed.builds[0].seconds == 1)
    }

    @Test("a page connecting while the build fails gets hello then the failure; the next swap clears it")
    mutating func greeting() {
        var feed = BrowserFeed(assetDirectories: [])
        #expect(feed.greeting(run: "r").map(\.data) == [#"{"generation":null,"run":"r","state":"starting"}"#])
        _ = feed.take(record("build_failed", "✗ build 1 failed in 1 s — 2 errors; nothing is serving yet", build: 1, diagnostics: []), sourceLine: { _, _ in nil })
        let greeting = feed.greeting(run: "r")
        #expect(greeting[0].data == #"{"generation":null,"run":"r","state":"failing"}"#)
        #expect(greeting.map(\.name) == ["hello", "build-failed"])
        #expect(greeting[1].id == 1)
        #expect(greeting[1].serverSentEvent.hasPrefix("id: 1\nevent: build-failed\ndata: {"))
        _ = feed.take(record("swapped", "✓ gen 1 healthy", generation: 1), sourceLine: { _, _ in nil })
        #expect(feed.greeting(run: "r").map(\.name) == ["hello"])
        #expect(feed.state == "serving")
    }

    @Test("a blocked migration shows the verdict and each blocking finding's fix")
    mutating func migrations() {
        var feed = BrowserFeed(assetDirectories: [])
        _ = feed.take(record("migrations_verdict", "✗ migrations: block in 3 ms", level: "warning"), sourceLine: { _, _ in nil })
        _ = feed.take(
            record("migrations_finding", "  BLOCK modified-applied 3_add.sql: changed after it was applied\n    fix: restore it", level: "warning"),
            sourceLine: { _, _ in nil })
        _ = feed.take(record("migrations_finding", "  warn x 4.sql: meh\n    fix: none", level: "info"), sourceLine: { _, _ in nil })
        let event = feed.take(record("migrations_blocked", "✗ gen 2 not started: migrations blocked", generation: 2, level: "error"), sourceLine: { _, _ in nil })
        #expect(event?.name == "migrations-blocked")
        #expect(event?.data.contains(#""findings":[{"fix":"restore it","text":"BLOCK modified-applied 3_add.sql: changed after it was applied"}]"#) == true)
        #expect(event?.data.contains(#""verdict":"✗ migrations: block in 3 ms""#) == true)
    }
}

@Suite("Browser pages escape what they show")
struct BrowserPagesTests {
    @Test("the nothing-serving page shows the errors escaped, and loads the client script")
    func nothingServing() {
        var feed = BrowserFeed(assetDirectories: [])
        _ = feed.take(
            EventRecord(
                seq: 1, time: Date(), level: "error", event: "build_failed", message: "✗ build 1 failed — 1 error <b>", generation: nil, build: 1,
                diagnostics: [.init(file: "Sources/<x>.swift", line: 2, column: 1, severity: "error", message: "bad & <script>")]),
            sourceLine: { _, _ in "let a = \"</script>\"" })
        let page = BrowserPages.nothingServing(settings: settings, feed: feed, run: "r")
        #expect(page.contains("Sources/&lt;x&gt;.swift:2:1"))
        #expect(page.contains("bad &amp; &lt;script&gt;"))
        #expect(page.contains("let a = &quot;&lt;/script&gt;&quot;"))
        #expect(!page.contains("<script>alert"))
        #expect(page.contains("src=\"/_safe-watch/client.js\" data-generation=\"0\""))
    }

    @Test("the status page carries the token only when given one")
    func status() {
        var board = StatusBoard(gatesMigrations: false)
        board.record(.swapped(from: nil, to: 2, healthyAfter: .milliseconds(20)), at: Date(timeIntervalSince1970: 1))
        let facts = StatusSnapshot.Facts(
            pid: 1, project: "/p<x>", startedAt: Date(timeIntervalSince1970: 0), serve: .init(mode: "proxy", addresses: ["http://127.0.0.1:8080"]),
            watching: .init(directories: 3, polled: []), pidOf: { _ in 42 })
        let snapshot = board.snapshot(facts, at: Date(timeIntervalSince1970: 5))
        let feed = BrowserFeed(assetDirectories: [])
        let withToken = BrowserPages.status(
            snapshot, feed: feed, settings: settings, token: "t0k", now: Date(timeIntervalSince1970: 10), watchedPaths: ["Sources", "Public"])
        #expect(withToken.contains("Sources, Public: 3 directories with inotify; assets (no build): Public, Resources/Views"))
        #expect(withToken.contains("data-token=\"t0k\""))
        #expect(withToken.contains("gen 2 serving, pid 42"))
        #expect(withToken.contains("/p&lt;x&gt;"))
        let readOnly = BrowserPages.status(snapshot, feed: feed, settings: settings, token: nil, now: Date(timeIntervalSince1970: 10))
        #expect(!readOnly.contains("data-token"))
        #expect(readOnly.contains("Read-only"))
    }

    @Test("the client script follows the events path of its own origin")
    func client() {
        let script = BrowserPages.clientScript(settings: settings)
        #expect(script.contains("new EventSource(\"/_safe-watch/events\")"))
        #expect(!script.contains("http://"))
    }
}

@Suite("Head bytes")
struct HeadBytesTests {
    func reserved(_ line: String) -> Bool {
        Array((line + "\r\nHost: x\r\n\r\n").utf8).withUnsafeBytes { HeadBytes.targetStarts(with: Array("/_safe-watch/".utf8), in: $0) }
    }

    @Test("the target is matched against the prefix without making strings")
    func target() {
        #expect(reserved("GET /_safe-watch/events HTTP/1.1"))
        #expect(reserved("GET /_safe-watch/ HTTP/1.1"))
        #expect(reserved("GET /_safe-watch HTTP/1.1"))
        #expect(reserved("GET /_safe-watch?x HTTP/1.1"))
        #expect(reserved("GET http://127.0.0.1:8080/_safe-watch/client.js HTTP/1.1"))
        #expect(!reserved("GET /_safe-watcher HTTP/1.1"))
        #expect(!reserved("GET / HTTP/1.1"))
        #expect(!reserved("GET /app/_safe-watch/ HTTP/1.1"))
        #expect(!reserved("GET http://x/ HTTP/1.1"))
    }

    @Test("a field's value is found ignoring case, at its start or anywhere")
    func fields() {
        let head = Array("HTTP/1.1 200 OK\r\nContent-Type: Text/HTML; charset=utf-8\r\nAccept: application/json, text/html\r\n\r\n".utf8)
        head.withUnsafeBytes { raw in
            #expect(HeadBytes.field("content-type", has: "text/html", atStart: true, in: raw))
            #expect(!HeadBytes.field("content-type", has: "charset", atStart: true, in: raw))
            #expect(HeadBytes.field("content-type", has: "charset", atStart: false, in: raw))
            #expect(HeadBytes.field("accept", has: "text/html", atStart: false, in: raw))
            #expect(!HeadBytes.field("accept", has: "text/html", atStart: true, in: raw))
            #expect(!HeadBytes.field("content-encoding", has: "gzip", atStart: false, in: raw))
        }
    }
}
