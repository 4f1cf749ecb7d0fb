import Foundation

/// What safe-watch serves under its prefix: the client script, the status page, the page a
/// browser gets while nothing serves yet. Pure; every value from outside is escaped.
public enum BrowserPages {
    /// The script every full page loads. It follows the event stream of the page's own origin (a
    /// path, no host: tunnels and other names work), reloads once for a swap to a generation other
    /// than the one that served the page (never for a failed build), restyles for CSS, shows the
    /// overlay for a failed build or blocked migrations, and reconnects after safe-watch restarts.
    /// Styles are set through the CSSOM, which a Content-Security-Policy without 'unsafe-inline'
    /// still allows.
    public static func clientScript(settings: LiveReloadSettings) -> String {
        let events = jsonString(settings.eventsPath)
        return """
            (function () {
              "use strict";
              if (window.__safeWatch) return;
              var me = document.currentScript || document.querySelector("script[data-run]");
              var pageGeneration = me ? me.getAttribute("data-generation") : "0";
              var pageRun = me ? me.getAttribute("data-run") : "";
              var state = { reloading: false, run: null, dismissed: null, source: null, retry: 500 };
              window.__safeWatch = state;
              // Set before each reload: the page that asked for it, to see a reload that brought back
              // the same page (a copy the browser kept, e.g. from before safe-watch sent no-store).
              var reloadMark = "safe-watch-reloaded-from";
              function reload() {
                if (state.reloading) return;
                var page = pageRun + "/" + pageGeneration;
                try {
                  if (sessionStorage.getItem(reloadMark) === page) {
                    console.warn("safe-watch: the reload brought back the same page (a cached copy?); not reloading again");
                    return;
                  }
                  sessionStorage.setItem(reloadMark, page);
                } catch (e) {}
                state.reloading = true;
                if (state.source) state.source.close();
                location.reload();
              }
              function isOtherGeneration(generation) {
                return generation != null && (state.run !== pageRun || String(generation) !== pageGeneration);
              }
              function el(tag, text, style) {
                var node = document.createElement(tag);
                if (text != null) node.textContent = text;
                if (style) for (var key in style) node.style[key] = style[key];
                return node;
              }
              function hideOverlay() {
                var old = document.getElementById("safe-watch-overlay");
                if (old) old.remove();
              }
              function showOverlay(title, key, body) {
                if (state.dismissed === key) return;
                hideOverlay();
                var box = el("div", null, { position: "fixed", inset: "0", zIndex: "2147483647", background: "rgba(20,20,24,0.92)",
                  color: "#eee", font: "14px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace", overflow: "auto", padding: "24px" });
                box.id = "safe-watch-overlay";
                box.setAttribute("role", "alert");
                var close = el("button", "\\u00d7", { position: "absolute", top: "12px", right: "16px", font: "inherit", fontSize: "20px",
                  background: "none", color: "#eee", border: "0", cursor: "pointer" });
                close.id = "safe-watch-overlay-close";
                close.title = "Dismiss (the old server keeps serving)";
                close.onclick = function () { state.dismissed = key; hideOverlay(); };
                box.appendChild(close);
                box.appendChild(el("h2", title, { margin: "0 0 12px", color: "#ff6b6b", font: "inherit", fontSize: "17px", fontWeight: "bold" }));
                body.forEach(function (node) { box.appendChild(node); });
                box.appendChild(el("p", "safe-watch keeps the last good server serving this page; the overlay leaves at the next good swap.",
                  { color: "#999", marginTop: "16px" }));
                (document.body || document.documentElement).appendChild(box);
              }
              function buildFailed(data) {
                var body = [el("p", data.message, { margin: "0 0 12px" })];
                (data.diagnostics || []).forEach(function (d) {
                  var item = el("div", null, { margin: "0 0 14px" });
                  item.className = "safe-watch-diagnostic";
                  var where = d.file + ":" + d.line + (d.column != null ? ":" + d.column : "");
                  item.appendChild(el("div", where + ": " + d.severity + ": " + d.message, { color: d.severity === "error" ? "#ffb3b3" : "#ffe08a" }));
                  if (d.source != null) {
                    item.appendChild(el("pre", d.source + (d.caret ? "\\n" + d.caret : ""), { margin: "4px 0 0", padding: "6px 10px",
                      background: "#000", color: "#ddd", whiteSpace: "pre", overflow: "auto", tabSize: "4" }));
                  }
                  body.push(item);
                });
                showOverlay("Build " + (data.build != null ? data.build + " " : "") + "failed", "build-" + data.build, body);
              }
              function migrationsBlocked(data) {
                var body = [el("p", data.message, { margin: "0 0 12px" })];
                if (data.verdict) body.push(el("p", data.verdict, { margin: "0 0 12px" }));
                (data.findings || []).forEach(function (f) {
                  var item = el("div", null, { margin: "0 0 12px" });
                  item.appendChild(el("div", f.text, { color: "#ffb3b3" }));
                  if (f.fix) item.appendChild(el("div", "fix: " + f.fix, { color: "#9fe0a0" }));
                  body.push(item);
                });
                showOverlay("Migrations blocked", "migrations-" + data.generation, body);
              }
              function restyle(urlPath) {
                var links = document.querySelectorAll('link[rel~="stylesheet"]');
                var matched = [];
                links.forEach(function (link) {
                  var url = new URL(link.href, location.href);
                  if (url.pathname === urlPath || url.pathname.endsWith(urlPath)) matched.push(link);
                });
                if (matched.length === 0) matched = Array.prototype.slice.call(links);
                if (matched.length === 0) { reload(); return; }
                matched.forEach(function (link) {
                  var url = new URL(link.href, location.href);
                  url.searchParams.set("_safe_watch", String(Date.now()));
                  var next = link.cloneNode();
                  next.href = url.href;
                  next.onload = next.onerror = function () { link.remove(); };
                  link.parentNode.insertBefore(next, link.nextSibling);
                });
              }
              function progress(text) {
                var node = document.getElementById("safe-watch-progress");
                if (node) node.textContent = text;
              }
              function on(source, name, handle) {
                source.addEventListener(name, function (event) { handle(JSON.parse(event.data)); });
              }
              function connect() {
                var source = new EventSource(\(events));
                state.source = source;
                on(source, "hello", function (d) {
                  state.retry = 500;
                  state.run = d.run;
                  if (isOtherGeneration(d.generation)) reload();
                });
                on(source, "reload", function (d) { if (isOtherGeneration(d.generation)) { hideOverlay(); reload(); } });
                on(source, "build-started", function (d) { progress(d.message); });
                on(source, "build-failed", function (d) { progress(d.message); buildFailed(d); });
                on(source, "migrations-blocked", function (d) { progress(d.message); migrationsBlocked(d); });
                on(source, "css", function (d) { restyle(d.url_path); });
                on(source, "page", function () { reload(); });
                on(source, "progress", function (d) { progress(d.message); });
                source.onerror = function () {
                  // A closed stream (safe-watch stopped and something else answered) is not retried
                  // by the browser itself: try again, more slowly each time.
                  if (source.readyState === 2 && !state.reloading) {
                    setTimeout(connect, state.retry);
                    state.retry = Math.min(state.retry * 2, 5000);
                  }
                };
              }
              connect();
            })();

            """
    }

    /// The page a browser gets while no generation serves: the build's progress or its errors,
    /// and the client script, which loads the app once a generation is healthy.
    public static func nothingServing(settings: LiveReloadSettings, feed: BrowserFeed, run: String) -> String {
        var errors = ""
        switch feed.overlay {
        case .buildFailed(let failure, _):
            errors = "<h2>" + escapeHTML(failure.message) + "</h2>\n<ul class=\"diagnostics\">"
            for diagnostic in failure.diagnostics {
                let column = diagnostic.column.map { ":\($0)" } ?? ""
                errors += "\n<li><code>\(escapeHTML(diagnostic.file)):\(diagnostic.line)\(column)</code> \(escapeHTML(diagnostic.severity)): \(escapeHTML(diagnostic.message))"
                if let source = diagnostic.source {
                    errors += "<pre>\(escapeHTML(source))\(diagnostic.caret.map { "\n" + escapeHTML($0) } ?? "")</pre>"
                }
                errors += "</li>"
            }
            errors += "\n</ul>"
        case .migrationsBlocked(let blocked, _):
            errors = "<h2>" + escapeHTML(blocked.message) + "</h2>\n<ul>"
            for finding in blocked.findings {
                errors += "\n<li>\(escapeHTML(finding.text))\(finding.fix.map { "<br>fix: " + escapeHTML($0) } ?? "")</li>"
            }
            errors += "\n</ul>"
        case nil:
            break
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>safe-watch: nothing is serving yet</title>
            <meta name="viewport" content="width=device-width">
            <style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}code,pre{font-family:ui-monospace,monospace}pre{background:#f4f4f4;padding:.5em}</style>
            </head><body>
            <h1>Nothing is serving yet</h1>
            <p>safe-watch has no healthy server for this page yet. This page turns into the app by itself once one is.</p>
            <p id="safe-watch-progress">\(escapeHTML(feed.progress ?? "waiting for the first build"))</p>
            \(errors)
            <p><a href="\(escapeHTML(settings.prefix))">safe-watch status</a></p>
            \(HTMLInjection.scriptTag(settings: settings, generation: nil, run: run, nonce: nil))
            </body></html>

            """
    }

    /// The status page. `token` is the per-run secret the action buttons send; nil (a foreign Host)
    /// makes the page read-only.
    public static func status(
        _ snapshot: StatusSnapshot, feed: BrowserFeed, settings: LiveReloadSettings, token: String?, now: Date, watchedPaths: [String] = []
    ) -> String {
        func ago(_ date: Date) -> String {
            Duration.milliseconds(Int64((now.timeIntervalSince(date) * 1000).rounded())).humanReadable + " ago"
        }
        func seconds(_ value: Double) -> String { Duration.milliseconds(Int64((value * 1000).rounded())).humanReadable }
        var rows: [String] = []
        func row(_ label: String, _ html: String) { rows.append("<tr><th>\(escapeHTML(label))</th><td>\(html)</td></tr>") }
        row("state", "<strong id=\"state\">\(escapeHTML(snapshot.state))</strong>")
        if let problem = snapshot.problem { row("problem", escapeHTML(problem)) }
        row("serving on", escapeHTML(snapshot.serve.addresses.joined(separator: ", ")) + " (\(escapeHTML(snapshot.serve.mode)) mode)")
        row("project", escapeHTML(snapshot.project) + " · safe-watch pid \(snapshot.pid), up \(seconds(snapshot.uptimeSeconds))")
        var generations = "<ul id=\"generations\">"
        if let active = snapshot.active {
            generations += "<li>gen \(active.generation) serving" + (active.pid.map { ", pid \($0)" } ?? "") + ", since \(ago(active.since))</li>"
        }
        if let starting = snapshot.starting { generations += "<li>gen \(starting) starting (health check)</li>" }
        if snapshot.active == nil && snapshot.starting == nil { generations += "<li>none serving</li>" }
        generations += "</ul>"
        row("generations", generations)
        if let build = snapshot.build {
            row("building", "build \(build.id) for \(seconds(now.timeIntervalSince(build.startedAt))) (\(escapeHTML(build.reason)))")
        }
        row("migrations", escapeHTML(snapshot.migrations))
        let polled = snapshot.watching.polled.isEmpty ? "" : "; polling " + escapeHTML(snapshot.watching.polled.joined(separator: ", "))
        let assets = settings.assetDirectories.isEmpty ? "" : "; assets (no build): " + escapeHTML(settings.assetDirectories.joined(separator: ", "))
        let paths = watchedPaths.isEmpty ? "" : escapeHTML(watchedPaths.joined(separator: ", ")) + ": "
        row("watching", "\(paths)\(snapshot.watching.directories) directories with inotify\(polled)\(assets)")

        var builds = "<table id=\"builds\"><tr><th>build</th><th>result</th><th>took</th><th>finished</th><th></th></tr>"
        for build in feed.builds.reversed() {
            builds += "<tr><td>\(build.id)</td><td>\(escapeHTML(build.result))</td><td>\(build.seconds.map(seconds) ?? "")</td>"
                + "<td>\(build.finishedAt.map(ago) ?? "")</td><td>\(escapeHTML(build.message))</td></tr>"
        }
        builds += "</table>"
        var diagnostics = ""
        if let last = snapshot.lastBuild, !last.diagnostics.isEmpty {
            diagnostics = "<h2>Last diagnostics (build \(last.id))</h2><ul id=\"diagnostics\">"
            for diagnostic in last.diagnostics {
                let column = diagnostic.column.map { ":\($0)" } ?? ""
                diagnostics += "<li><code>\(escapeHTML(diagnostic.file)):\(diagnostic.line)\(column)</code> \(escapeHTML(diagnostic.severity)): \(escapeHTML(diagnostic.message))</li>"
            }
            diagnostics += "</ul>"
        }
        var swaps = "<ul id=\"swaps\">"
        for swap in feed.swaps.reversed() { swaps += "<li>\(ago(swap.at)): \(escapeHTML(swap.message))</li>" }
        if feed.swaps.isEmpty { swaps += "<li>none yet</li>" }
        swaps += "</ul>"
        let actions: String
        if let token {
            actions = """
                <p><button data-action="rebuild">Rebuild</button> <button data-action="rollback">Roll back</button> <span id="answer"></span></p>
                <script data-token="\(escapeHTML(token))">
                (function () {
                  var token = document.currentScript.getAttribute("data-token");
                  document.querySelectorAll("button[data-action]").forEach(function (button) {
                    button.onclick = function () {
                      fetch(\(jsonString(settings.prefix)) + button.getAttribute("data-action"), { method: "POST", headers: { "X-Safe-Watch-Token": token } })
                        .then(function (r) { return r.text(); }).then(function (t) { document.getElementById("answer").textContent = t; });
                    };
                  });
                })();
                </script>
                """
        } else {
            actions = "<p>Read-only: this page was reached under a name safe-watch does not serve actions for (add it to [browser] public_hosts).</p>"
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>safe-watch · \(escapeHTML(snapshot.state))</title>
            <meta name="viewport" content="width=device-width">
            <style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}th{text-align:left;padding-right:1em;vertical-align:top}td{padding-right:1em;vertical-align:top}code{font-family:ui-monospace,monospace}</style>
            </head><body>
            <h1>safe-watch</h1>
            <table id="summary">\(rows.joined(separator: "\n"))</table>
            \(actions)
            <h2>Recent builds</h2>
            \(builds)
            \(diagnostics)
            <h2>Swaps</h2>
            \(swaps)
            <script>
            (function () {
              // Fresh figures after each step; the page is cheap to make.
              var source = new EventSource(\(jsonString(settings.eventsPath)));
              var timer = null, shown = \(feed.lastSeq);
              ["reload", "build-started", "build-failed", "migrations-blocked", "progress"].forEach(function (name) {
                source.addEventListener(name, function (event) {
                  // The greeting repeats what the page already shows (a failure's event): only newer ones count.
                  if (Number(event.lastEventId) <= shown) return;
                  clearTimeout(timer);
                  timer = setTimeout(function () { location.reload(); }, 300);
                });
              });
            })();
            </script>
            </body></html>

            """
    }

    /// A JavaScript string literal for `text` (JSON's rules, with `<` escaped so that no `</script>` can end the script).
    static func jsonString(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let data = (try? encoder.encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
        return data.replacingOccurrences(of: "<", with: "\\u003c")
    }
}
