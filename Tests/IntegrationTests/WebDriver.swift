import Foundation
import Glibc
import SafeWatchProcesses
import Synchronization
import TestSupport

/// A headless Chromium driven over WebDriver (W3C, plain HTTP with JSON bodies), by Debian's
/// `chromedriver`, both run as the test account like safe-watch: what a developer's browser does
/// with safe-watch's pages (the injected script, the overlay, the reloads) is checked in a real
/// browser, not inferred from the bytes.
final class Chromium: Sendable {
    /// Where Debian installs them (`script/bootstrap --test` does).
    static let browserPath = "/usr/bin/chromium"
    static let driverPath = "/usr/bin/chromedriver"

    /// Why the browser tests cannot run here, nil if they can: the packages are missing (the test
    /// command installs them; a machine without them skips these tests and says why).
    static var unavailableReason: String? {
        let missing = [browserPath, driverPath].filter { !FileManager.default.isExecutableFile(atPath: $0) }
        guard !missing.isEmpty else { return nil }
        return "\(missing.joined(separator: " and ")) not installed: run script/bootstrap --test (installs Debian's chromium and chromium-driver)"
    }

    let driverPID: pid_t
    let driverLog: LineLog
    let driverPort: Int
    let session: String
    private let exit: Task<ExitStatus, Never>
    private let outputClosed: Task<Void, Never>
    private let profile: String
    private let quitted = Mutex(false)

    /// Starts chromedriver and a headless Chromium session. `hostRules` maps host names to
    /// addresses inside the browser (Chromium's `--host-resolver-rules`, such as
    /// `MAP other.test 127.0.0.1`): a second origin, or a DNS-rebinding name, without a DNS server.
    static func start(hostRules: String? = nil) async throws -> Chromium {
        if let reason = unavailableReason { throw HarnessError(reason) }
        let account = try TestAccount.required()
        Reaper.shared.start()
        let output = try OutputPipe()
        let log = LineLog()
        let (closed, finishClosed) = AsyncStream<Void>.makeStream()
        output.start(onLine: { log.append($0) }, onClose: { finishClosed.finish() })
        let outputClosed = Task { for await _ in closed {} }
        var command = [driverPath, "--port=0"]
        var environment = ProcessInfo.processInfo.environment
        if let account {
            command = account.command(command)
            environment = account.environment(environment)
        }
        let profile = makeTemporaryDirectory("chromium-profile")
        let pid = try await Spawner.shared.spawn(
            SpawnRequest(
                executable: command[0], arguments: command, environment: environment, workingDirectory: profile,
                standardOutput: output.writeEnd, standardError: output.writeEnd))
        output.closeWriteEnd()
        let exit = Task { await Reaper.shared.wait(for: pid) }
        // "ChromeDriver was started successfully on port 41235."
        guard let ready = await log.waitForLine(containing: "started successfully on port", limit: .seconds(30)),
            let port = ready.split(separator: " ").last.flatMap({ Int($0.trimmingCharacters(in: .punctuationCharacters)) })
        else {
            kill(pid, SIGKILL)
            throw HarnessError("chromedriver did not start:\n\(log.all.joined(separator: "\n"))")
        }
        var arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(profile)", "--no-first-run",
                         "--disable-background-networking", "--disable-dev-shm-usage"]
        if let hostRules { arguments.append("--host-resolver-rules=\(hostRules)") }
        let capabilities: [String: Any] = [
            "capabilities": ["alwaysMatch": ["goog:chromeOptions": ["binary": browserPath, "args": arguments]]]
        ]
        let created: Any?
        do {
            created = try await WebDriverWire.call(port: port, "POST", "/session", capabilities, limit: .seconds(60))
        } catch {
            kill(pid, SIGKILL)
            throw HarnessError("no Chromium session: \(error)\n\(log.all.joined(separator: "\n"))")
        }
        guard let session = (created as? [String: Any])?["sessionId"] as? String else {
            kill(pid, SIGKILL)
            throw HarnessError("no session id in \(String(describing: created))")
        }
        return Chromium(pid: pid, log: log, port: port, session: session, exit: exit, outputClosed: outputClosed, profile: profile)
    }

    private init(pid: pid_t, log: LineLog, port: Int, session: String, exit: Task<ExitStatus, Never>, outputClosed: Task<Void, Never>, profile: String) {
        self.driverPID = pid
        self.driverLog = log
        self.driverPort = port
        self.session = session
        self.exit = exit
        self.outputClosed = outputClosed
        self.profile = profile
    }

    /// Ends the session (Chromium quits) and chromedriver, and leaves no browser process behind.
    func quit() async {
        guard !self.quitted.withLock({ quitted in defer { quitted = true }; return quitted }) else { return }
        let browsers = processTree(below: self.driverPID).compactMap(ProcessIdentity.init)
        _ = try? await WebDriverWire.call(port: self.driverPort, "DELETE", "/session/\(self.session)", nil, limit: .seconds(20))
        kill(self.driverPID, SIGTERM)
        _ = await exitStatus(of: self.driverPID, exit: self.exit, outputClosed: self.outputClosed, limit: .seconds(10))
        for browser in browsers where browser.isRunning { kill(browser.pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: self.profile)
    }

    /// Opens `url` and waits for it to load (WebDriver returns once the document is complete).
    func open(_ url: String) async throws {
        _ = try await self.command("POST", "url", ["url": url])
    }

    /// Runs `script` (a function body: `return …`) in the page; its result as JSON text (`"null"`
    /// when it returned nothing), so callers decode what they expect.
    func run(_ script: String) async throws -> String {
        let value = try await self.command("POST", "execute/sync", ["script": script, "args": [Any]()])
        return jsonText(value)
    }

    /// Runs an asynchronous `script`: it gets a callback as `arguments[0]` and calls it once with
    /// its result (for `fetch` and other promises).
    func runAsync(_ script: String, limit: Duration = .seconds(30)) async throws -> String {
        let value = try await self.command("POST", "execute/async", ["script": script, "args": [Any]()], limit: limit)
        return jsonText(value)
    }

    /// Polls the page until `script` returns something other than null/false/undefined, and
    /// returns it as JSON text; nil after `limit`. What the page shows is the readiness here: a
    /// reload or an overlay has no event the test could wait on, so the DOM is checked every 20 ms
    /// and the limit only bounds a failing test. A script error (the page is mid-reload) counts as
    /// "not yet".
    func waitFor(_ script: String, limit: Duration = .seconds(60)) async -> String? {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let value = try? await self.run(script), value != "null", value != "false" { return value }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// The text of the whole page, the insides of shadow roots included (an overlay may draw in
    /// one so that the app's styles cannot reach it).
    static let pageTextScript = """
        const parts = [];
        const visit = (root) => {
          for (const element of root.querySelectorAll('*')) {
            if (element.shadowRoot) { parts.push(element.shadowRoot.textContent || ''); visit(element.shadowRoot); }
          }
        };
        if (document.body) { parts.push(document.body.innerText || ''); visit(document); }
        return parts.join('\\n');
        """

    /// `pageTextScript`'s text of the current page ("" while it is between documents).
    func pageText() async -> String {
        guard let text = try? await self.run(Self.pageTextScript) else { return "" }
        return (try? JSONDecoder().decode(String.self, from: Data(text.utf8))) ?? ""
    }

    private func command(_ method: String, _ path: String, _ body: [String: Any]?, limit: Duration = .seconds(30)) async throws -> Any? {
        try await WebDriverWire.call(port: self.driverPort, method, "/session/\(self.session)/\(path)", body, limit: limit)
    }
}

/// The `value` as compact JSON text.
private func jsonText(_ value: Any?) -> String {
    guard let value, !(value is NSNull) else { return "null" }
    guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) else {
        return "\(value)"
    }
    return String(decoding: data, as: UTF8.self)
}

/// WebDriver's wire: one request per connection, JSON in and out; a response's `value` is the
/// result, or an error object (`error`, `message`) with a 4xx/5xx status.
enum WebDriverWire {
    static func call(port: Int, _ method: String, _ path: String, _ body: [String: Any]?, limit: Duration) async throws -> Any? {
        let payload = try body.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        let bytes = Array(payload)
        let hasBody = body != nil
        let response = try await offPool { () throws -> RawResponse in
            let client = try RawClient(port: port)
            var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
            if hasBody { head += "Content-Type: application/json; charset=utf-8\r\nContent-Length: \(bytes.count)\r\n" }
            try client.send(Array((head + "\r\n").utf8) + bytes)
            return try client.readResponse(method: method, limit: limit)
        }
        let decoded = response.body.isEmpty ? nil : try? JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])
        let value = (decoded as? [String: Any])?["value"]
        guard response.status == 200 else {
            let error = value as? [String: Any]
            throw WebDriverError(
                status: response.status, error: error?["error"] as? String ?? "",
                message: error?["message"] as? String ?? response.text)
        }
        return value
    }
}

struct WebDriverError: Error, CustomStringConvertible {
    var status: Int
    var error: String
    var message: String
    var description: String { "WebDriver \(self.status) \(self.error): \(self.message.prefix(500))" }
}
