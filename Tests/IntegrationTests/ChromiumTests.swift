import Foundation
import Glibc
import TestSupport
import Testing

extension SupervisorIntegrationTests {
    /// What a developer sees in a real browser with safe-watch between it and the app: a headless
    /// Chromium (Debian's, driven over WebDriver as the test account) on the fixture's `/page`, which
    /// links `/style.css` from `Public/` and counts its own loads in `sessionStorage`. Every wait polls
    /// the page's DOM with a deadline: a reload or an overlay announces itself nowhere else. Nested in
    /// the serialized SupervisorIntegrationTests, which share its fixture directory.
    @Suite(.enabled(if: Chromium.unavailableReason == nil, "chromium and chromium-driver are not installed: script/bootstrap --test installs them"))
    struct ChromiumTests {
        static let defaultStyle = "#version { color: rgb(0, 0, 128); }\n"

        /// safe-watch serving the fixture at `version` (generation 1 healthy), its stylesheet reset
        /// (other suites remove `Public/` from the shared fixture).
        func startServing(version: String) async throws -> (SafeWatchProcess, Int, String) {
            let directory = try await Fixture.shared.reset(version: version)
            try createAccountDirectory(directory + "/Public")
            try Self.defaultStyle.save(to: directory + "/Public/style.css")
            let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
            let port = try #require(await safeWatch.publicPort(), "no start line:\n\(safeWatch.output)")
            try #require(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "gen 1 never served:\n\(safeWatch.output)")
            return (safeWatch, port, directory)
        }

        @Test func editReloadsThePageBrokenEditShowsTheOverlayWithoutReloadAndTheFixReloadsOnce() async throws {
            let (safeWatch, port, directory) = try await startServing(version: "page-1")
            let browser = try await Chromium.start()
            defer { Task { await browser.quit() } }
            try await browser.open("http://127.0.0.1:\(port)/page")
            try await expectShown(browser, "page-1", safeWatch)
            try await waitForLiveReload(browser)
            let firstLoads = try await loads(browser)
            #expect(firstLoads == 1)

            // A good edit: the page shows the new version by itself, in one reload.
            try setVersion("page-2", in: directory)
            try await expectShown(browser, "page-2", safeWatch)
            #expect(try await loads(browser) == firstLoads + 1)
            try await waitForLiveReload(browser)

            // A broken edit: the overlay names the file and line over the old version's page, which
            // stays loaded (the marker set now survives).
            try await setMarker(browser, "before-broken-edit")
            let loadsBeforeBreak = try await loads(browser)
            let mark = safeWatch.log.count
            try (versionSource("page-3") + "let broken: Int = \"not a number\"\n").save(to: directory + "/Sources/hello-server/Version.swift")
            let overlay = await browser.waitFor(pageTextContains("Version.swift:3"), limit: .seconds(120))
            let overlayText = await browser.pageText()
            #expect(overlay != nil, "no overlay: \(overlayText)\n\(safeWatch.output)")
            #expect(await safeWatch.log.waitForLine(containing: "failed in", after: mark) != nil)
            let text = await browser.pageText()
            #expect(text.contains("cannot convert"), "the overlay should carry the compiler's message: \(text)")
            #expect(text.contains("hello-server page-2"), "the old version's page should stay underneath: \(text)")
            #expect(try await marker(browser) == "before-broken-edit", "the page reloaded after a failed build")
            #expect(try await loads(browser) == loadsBeforeBreak)

            // The fix: the overlay leaves and the page reloads into the new version, once.
            try setVersion("page-4", in: directory)
            try await expectShown(browser, "page-4", safeWatch)
            #expect(try await loads(browser) == loadsBeforeBreak + 1)
            let afterFix = await browser.pageText()
            #expect(!afterFix.contains("Version.swift:3"), "the overlay outlived the fix: \(afterFix)")
            // No second reload for that swap: a stylesheet change after it is the next thing the page
            // hears from safe-watch (one stream, in order); once it has restyled the page, a duplicate
            // reload would have come first and reset the marker set after the first one.
            try await waitForLiveReload(browser)
            try await setMarker(browser, "after-fix")
            try "#version { color: rgb(0, 128, 0); }\n".save(to: directory + "/Public/style.css")
            #expect(await browser.waitFor(colourIs("rgb(0, 128, 0)"), limit: .seconds(30)) != nil, "\(safeWatch.output)")
            #expect(try await marker(browser) == "after-fix", "the page reloaded twice for one swap")
            #expect(try await loads(browser) == loadsBeforeBreak + 1)

            await browser.quit()
            #expect(await safeWatch.terminate() == .exited(0))
        }

        /// A page the server lets the browser keep (a file from `Public/` with an ETag, answered 304
        /// while it is unchanged, as static file servers do) still shows the new generation after a
        /// swap, in one reload. The page names the generation that served it: with the server's ETag
        /// passed on, the reload was answered 304, the browser showed its copy naming the old
        /// generation, and the page reloaded for ever.
        @Test func aStaticPageTheServerRevalidatesReloadsOnceIntoTheNewGeneration() async throws {
            let (safeWatch, port, directory) = try await startServing(version: "static-1")
            try Self.staticPage.save(to: directory + "/Public/static.html")
            let browser = try await Chromium.start()
            defer { Task { await browser.quit() } }
            try await browser.open("http://127.0.0.1:\(port)/static.html")
            try await waitForLiveReload(browser)
            #expect(try await loads(browser) == 1)

            let mark = safeWatch.log.count
            try setVersion("static-2", in: directory)
            #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
            let reloaded = await browser.waitFor(generationIs(2), limit: .seconds(60))
            let text = await browser.pageText()
            let loadsSoFar = try await loads(browser)
            #expect(reloaded != nil, "the page never showed generation 2 (loads: \(loadsSoFar)): \(text)")
            // Once: the stylesheet change is the next thing the page hears; a page reloading again
            // would have lost the marker set before it.
            try await waitForLiveReload(browser)
            try await setMarker(browser, "after-swap")
            try "#version { color: rgb(0, 128, 0); }\n".save(to: directory + "/Public/style.css")
            #expect(await browser.waitFor(colourIs("rgb(0, 128, 0)"), limit: .seconds(30)) != nil, "\(safeWatch.output)")
            #expect(try await marker(browser) == "after-swap", "the page kept reloading")
            #expect(try await loads(browser) == 2)

            await browser.quit()
            #expect(await safeWatch.terminate() == .exited(0))
        }

        /// A static page that counts its loads as `/page` does.
        static let staticPage = """
            <!DOCTYPE html>
            <html>
            <head>
            <meta charset="utf-8">
            <link rel="stylesheet" href="/style.css">
            <script>sessionStorage.setItem("hello-server-loads", String(Number(sessionStorage.getItem("hello-server-loads") || 0) + 1));</script>
            </head>
            <body><h1 id="version">static</h1></body>
            </html>

            """

        @Test func stylesheetChangeRestylesInPlaceWithoutReloadOrBuild() async throws {
            let (safeWatch, port, directory) = try await startServing(version: "style-1")
            let browser = try await Chromium.start()
            defer { Task { await browser.quit() } }
            try await browser.open("http://127.0.0.1:\(port)/page")
            #expect(await browser.waitFor(colourIs("rgb(0, 0, 128)")) != nil, "the stylesheet from Public/ did not apply")
            try await waitForLiveReload(browser)
            try await setMarker(browser, "page-lifetime")

            // Saved as editors save (a temporary file renamed over it): restyled in place.
            let mark = safeWatch.log.count
            try "#version { color: rgb(128, 0, 0); }\n".save(to: directory + "/Public/style.css")
            #expect(await browser.waitFor(colourIs("rgb(128, 0, 0)"), limit: .seconds(30)) != nil, "\(safeWatch.output)")
            #expect(try await marker(browser) == "page-lifetime", "the page reloaded for a stylesheet")
            #expect(try await loads(browser) == 1)

            // And no build started for it: the next source edit's build is build 2.
            try setVersion("style-2", in: directory)
            let build = await safeWatch.log.waitForLine(containing: "▸ build", after: mark)
            #expect(build?.contains("build 2 started") == true, "a build started for the stylesheet: \(safeWatch.output)")
            try await expectShown(browser, "style-2", safeWatch)
            // The reloaded page fetched the new stylesheet too.
            #expect(await browser.waitFor(colourIs("rgb(128, 0, 0)")) != nil)

            await browser.quit()
            #expect(await safeWatch.terminate() == .exited(0))
        }

        /// The rebuild action answers only safe-watch's own status page: a page of another site (its
        /// own Origin) and a DNS-rebinding name (a foreign Host, same origin to the browser) are
        /// refused even with the right token; the status page's own button works. `other.test` maps
        /// to 127.0.0.1 inside the browser, so both arrive at this safe-watch.
        @Test func crossOriginAndRebindingRebuildsAreRefusedTheStatusPageButtonIsNot() async throws {
            let (safeWatch, port, _) = try await startServing(version: "origin-1")
            let browser = try await Chromium.start(hostRules: "MAP other.test 127.0.0.1")
            defer { Task { await browser.quit() } }
            let own = "http://127.0.0.1:\(port)"
            let foreign = "http://other.test:\(port)"

            // The token, as the status page carries it for its own origin.
            try await browser.open(own + "/_safe-watch/")
            let tokenJSON = await browser.waitFor("const s = document.querySelector('script[data-token]'); return s && s.getAttribute('data-token');", limit: .seconds(10))
            let statusText = await browser.pageText()
            try #require(tokenJSON != nil, "no token on the status page: \(statusText)")
            let token = try JSONDecoder().decode(String.self, from: Data(tokenJSON!.utf8))
            #expect(token.count >= 16)

            // Read-only for a foreign Host: no token on the page.
            try await browser.open(foreign + "/_safe-watch/")
            #expect(try await browser.run("return document.querySelector('script[data-token]') !== null;") == "false", "the status page gave its token to a foreign Host")

            let mark = safeWatch.log.count
            // A rebinding page: the browser thinks the action is same-origin, so it reads the answer.
            try await browser.open(foreign + "/page")
            let rebinding = try await browser.runAsync("""
                const done = arguments[arguments.length - 1];
                fetch('/_safe-watch/rebuild', {method: 'POST', headers: {'X-Safe-Watch-Token': \(jsonString(token))}})
                  .then(r => done('status ' + r.status), e => done('error ' + e));
                """)
            #expect(rebinding == "\"status 403\"", "a DNS-rebinding page triggered the rebuild action: \(rebinding)")
            // Another site's page, to this safe-watch: a simple POST (no preflight, no token), and one
            // with the token (preflighted). Neither may act; the promise settling means it was answered.
            for headers in ["{}", "{'X-Safe-Watch-Token': \(jsonString(token))}"] {
                let outcome = try await browser.runAsync("""
                    const done = arguments[arguments.length - 1];
                    const headers = \(headers);
                    fetch(\(jsonString(own + "/_safe-watch/rebuild")), {method: 'POST', mode: Object.keys(headers).length ? 'cors' : 'no-cors', headers, body: 'x'})
                      .then(r => done('answered ' + r.type + ' ' + r.status), e => done('error ' + e));
                    """)
                #expect(!outcome.contains("answered cors 2"), "another site's page got a 2xx: \(outcome)")
            }

            // The status page's own Rebuild button: the first build since the refused attempts.
            try await browser.open(own + "/_safe-watch/")
            _ = try await browser.run("document.querySelector('button[data-action=\"rebuild\"]').click();")
            let build = await safeWatch.log.waitForLine(containing: "▸ build", after: mark)
            #expect(build?.contains("build 2 started") == true, "\(safeWatch.output)")
            #expect(safeWatch.log.all.dropFirst(mark).filter { $0.contains("▸ build") }.count == 1, "\(safeWatch.output)")

            await browser.quit()
            #expect(await safeWatch.terminate() == .exited(0))
        }

        // MARK: - Page probes

        /// The page's `<h1>` shows `version`.
        func versionShown(_ version: String) -> String {
            "const h = document.getElementById('version'); return h !== null && h.textContent === 'hello-server \(version)';"
        }

        /// The live-reload script in the page names generation `generation` as the one that served it.
        func generationIs(_ generation: Int) -> String {
            "const s = document.querySelector('script[data-generation]'); return s !== null && s.getAttribute('data-generation') === '\(generation)';"
        }

        func pageTextContains(_ text: String) -> String {
            "return (function() { \(Chromium.pageTextScript) })().includes(\(jsonString(text)));"
        }

        /// The version heading's computed colour is `colour` (`rgb(r, g, b)`).
        func colourIs(_ colour: String) -> String {
            "const h = document.getElementById('version'); return h !== null && getComputedStyle(h).color === \(jsonString(colour));"
        }

        /// How many times this tab loaded `/page` (the page counts itself in sessionStorage).
        func loads(_ browser: Chromium) async throws -> Int {
            let value = try await browser.run("return Number(sessionStorage.getItem('hello-server-loads') || 0);")
            return Int(value) ?? -1
        }

        /// A value that lives as long as the document: a reload loses it.
        func setMarker(_ browser: Chromium, _ value: String) async throws {
            _ = try await browser.run("window.__marker = \(jsonString(value));")
        }

        func marker(_ browser: Chromium) async throws -> String? {
            let value = try await browser.run("return window.__marker === undefined ? null : window.__marker;")
            return try? JSONDecoder().decode(String.self, from: Data(value.utf8))
        }

        /// Waits until the page's live-reload script follows safe-watch's events: an edit saved
        /// before it connects must not be what a test waits on.
        func waitForLiveReload(_ browser: Chromium) async throws {
            let connected = await browser.waitFor(liveReloadConnected, limit: .seconds(30))
            let text = await browser.pageText()
            try #require(connected != nil, "the live-reload script never connected: \(text)")
        }

        /// Waits (through builds: up to 2 minutes) until the page shows `version` by itself.
        func expectShown(_ browser: Chromium, _ version: String, _ safeWatch: SafeWatchProcess) async throws {
            let shown = await browser.waitFor(versionShown(version), limit: .seconds(120))
            let text = await browser.pageText()
            try #require(shown != nil, "the page never showed \(version): \(text)\n\(safeWatch.output)")
        }

        /// The injected script keeps its state in `window.__safeWatch`; `run` is set by the stream's
        /// first event (`hello`), so it is connected and listening from then on.
        let liveReloadConnected = "const s = window.__safeWatch; return s !== undefined && s.run !== null && s.source !== null && s.source.readyState === 1;"
    }
}

/// `text` as a JavaScript string literal.
func jsonString(_ text: String) -> String {
    String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
}
