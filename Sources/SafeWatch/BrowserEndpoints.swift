import Foundation
import NIOCore
import SafeWatchCore
import Synchronization

/// What the proxy answers itself under `[browser] prefix` (`/_safe-watch/` by default), never
/// forwarding it: `client.js`, `events` (Server-Sent Events, see `BrowserEvent`), the status page
/// (the prefix itself) and its actions (`POST rebuild`, `POST rollback`), and, for a browser while
/// nothing serves, the nothing-serving page. Every answer but `events` closes its connection.
///
/// The event stream is the event log's (`safe-watch events`), folded by `BrowserFeed`: one
/// subscription for the whole run, fanned out to every connected page in the log's order.
public final class BrowserEndpoints: Sendable {
    public let settings: LiveReloadSettings
    /// The prefix as bytes, for the proxy's look at every request line.
    let prefixBytes: [UInt8]
    /// Changes when safe-watch restarts: a page from another run reloads once something serves.
    public let run: String
    /// The per-run secret the status page's actions must carry (`X-Safe-Watch-Token`).
    let token: String
    private let projectDirectory: String
    /// `[watch] paths`, for the status page.
    private let watchedPaths: [String]

    private struct Shared {
        var feed: BrowserFeed
        var pages: [Int: @Sendable (String) -> Void] = [:]
        var nextPage = 0
        var answer: ControlServer.Answer?
        /// Why some responses got no script, each said once (a gzip-encoded page, a strict policy).
        var said: Set<String> = []
        var say: (@Sendable (String) -> Void)?
    }

    /// A class around the lock, so that the event log's subscription and each stream can hold it.
    private final class SharedState: Sendable {
        let lock: Mutex<Shared>
        init(_ shared: Shared) { self.lock = Mutex(shared) }
    }

    private let shared: SharedState
    /// A page that lets this much pile up unread is dropped (it reconnects and is told the state).
    static let unreadLimit = 1 << 20
    /// A comment this often keeps idle streams open through proxies and tunnels.
    static let keepAliveInterval: TimeAmount = .seconds(15)

    public init(settings: LiveReloadSettings, projectDirectory: String, watchedPaths: [String] = [], events: EventLog) {
        self.watchedPaths = watchedPaths
        self.settings = settings
        self.prefixBytes = Array(settings.prefix.utf8)
        self.projectDirectory = projectDirectory
        self.run = Self.randomHex(bytes: 8)
        self.token = Self.randomHex(bytes: 24)
        self.shared = SharedState(Shared(feed: BrowserFeed(assetDirectories: settings.assetDirectories)))
        let directory = projectDirectory
        let decoder = JSONDecoder.controlLine
        let shared = self.shared
        let (backlog, _) = events.subscribe(since: ControlRequest.eventsKept) { line in
            guard let record = try? decoder.decode(EventRecord.self, from: Data(line.utf8)) else { return }
            shared.lock.withLock { state in
                guard let event = state.feed.take(record, sourceLine: { Self.sourceLine(directory: directory, file: $0, line: $1) }) else {
                    return
                }
                let text = event.serverSentEvent
                for page in state.pages.values { page(text) }
            }
        }
        // What happened before the browser side started (nothing, at start) folds in silently.
        self.shared.lock.withLock { state in
            for line in backlog {
                guard let record = try? decoder.decode(EventRecord.self, from: Data(line.utf8)), record.seq > state.feed.lastSeq else {
                    continue
                }
                _ = state.feed.take(record) { Self.sourceLine(directory: directory, file: $0, line: $1) }
            }
        }
    }

    /// The runtime, which answers status, rebuild and rollback (it starts after the proxy), and
    /// where to say why a page got no script.
    public func use(answer: @escaping ControlServer.Answer, say: @escaping @Sendable (String) -> Void) {
        self.shared.lock.withLock {
            $0.answer = answer
            $0.say = say
        }
    }

    /// The script tag for a response to add, or nil to pass it as it is. `head` is the response
    /// head as it goes to the client; `generation` served it.
    public func injection(requestMethod: String, status: Int, head: [UInt8], generation: Generation?) -> String? {
        switch HTMLInjection.decide(requestMethod: requestMethod, status: status, fields: HTMLInjection.fields(of: head)) {
        case .leave:
            return nil
        case .leaveAndSay(let reason):
            self.sayOnce(reason)
            return nil
        case .inject(let nonce):
            return self.scriptTag(generation: generation, nonce: nonce)
        }
    }

    /// Says why a page got no script, once per reason for the whole run.
    func sayOnce(_ reason: String) {
        let say = self.shared.lock.withLock { state in state.said.insert(reason).inserted ? state.say : nil }
        say?(reason)
    }

    /// The request a local answer needs, read from its head.
    public struct Request: Sendable {
        public var method: String
        public var target: String
        public var fields: [(name: String, value: String)]

        public init?(head: [UInt8]) {
            guard let lineEnd = head.firstIndex(of: UInt8(ascii: "\r")) ?? head.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            let parts = String(decoding: head[..<lineEnd], as: UTF8.self).split(separator: " ")
            guard parts.count >= 2 else { return nil }
            self.method = String(parts[0])
            self.target = String(parts[1])
            self.fields = HTMLInjection.fields(of: head)
        }

        public func field(_ name: String) -> String? {
            self.fields.first { $0.name.lowercased() == name }?.value
        }

        /// A browser navigating: it asks for HTML.
        public var wantsHTML: Bool {
            (self.method == "GET" || self.method == "HEAD") && (self.field("accept")?.lowercased().contains("text/html") ?? false)
        }
    }

    /// Answers a request for the prefix on `channel`, which is safe-watch's from here on: the
    /// proxy must neither read from it nor close it. `head` is the request's whole head.
    public func respond(to request: Request, on channel: any Channel) {
        let endpoint = self.settings.endpoint(of: request.target)
        switch (request.method, endpoint) {
        case ("GET", "events"):
            self.stream(on: channel)
        case ("GET", "client.js"), ("HEAD", "client.js"):
            let body = BrowserPages.clientScript(settings: self.settings)
            Self.send(status: "200 OK", type: "text/javascript; charset=utf-8", body: body, head: request.method == "HEAD", on: channel)
        case ("GET", ""), ("HEAD", ""):
            let host = request.field("host")
            let token = self.settings.allowsActions(host: host, origin: nil) ? self.token : nil
            let answer = self.shared.lock.withLock { $0.answer }
            Task {
                let snapshot = await answer?(.status).status
                let feed = self.shared.lock.withLock { $0.feed }
                guard let snapshot else {
                    Self.send(status: "503 Service Unavailable", type: "text/plain; charset=utf-8", body: "safe-watch is starting\n", on: channel)
                    return
                }
                let page = BrowserPages.status(
                    snapshot, feed: feed, settings: self.settings, token: token, now: Date(), watchedPaths: self.watchedPaths)
                Self.send(status: "200 OK", type: "text/html; charset=utf-8", body: page, head: request.method == "HEAD", on: channel)
            }
        case ("POST", "rebuild"), ("POST", "rollback"):
            guard self.settings.allowsActions(host: request.field("host"), origin: request.field("origin")),
                let given = request.field("x-safe-watch-token"), Self.equalInConstantTime(given, self.token)
            else {
                Self.send(
                    status: "403 Forbidden", type: "text/plain; charset=utf-8",
                    body: "refused: actions need this safe-watch's status page (its token, and its own Origin and Host)\n", on: channel)
                return
            }
            let answer = self.shared.lock.withLock { $0.answer }
            Task {
                let reply = await answer?(endpoint == "rebuild" ? .rebuild : .rollback)
                let ok = reply?.ok ?? false
                let text = (ok ? reply?.message : reply?.error) ?? (reply == nil ? "safe-watch is starting" : "")
                Self.send(status: ok ? "200 OK" : "409 Conflict", type: "text/plain; charset=utf-8", body: text + "\n", on: channel)
            }
        case (_, "events"), (_, "client.js"), (_, ""), (_, "rebuild"), (_, "rollback"):
            Self.send(status: "405 Method Not Allowed", type: "text/plain; charset=utf-8", body: "method not allowed\n", on: channel)
        default:
            Self.send(status: "404 Not Found", type: "text/plain; charset=utf-8", body: "safe-watch has nothing at \(request.target)\n", on: channel)
        }
    }

    /// The page a browser gets while nothing serves (instead of being held): it shows the build's
    /// progress or errors and turns into the app once a generation is healthy.
    public func respondNothingServing(to request: Request, on channel: any Channel) {
        let feed = self.shared.lock.withLock { $0.feed }
        let page = BrowserPages.nothingServing(settings: self.settings, feed: feed, run: self.run)
        Self.send(status: "503 Service Unavailable", type: "text/html; charset=utf-8", body: page, head: request.method == "HEAD", on: channel)
    }

    /// The script tag for a page `generation` served, with the policy's nonce if any.
    public func scriptTag(generation: Generation?, nonce: String?) -> String {
        HTMLInjection.scriptTag(settings: self.settings, generation: generation, run: self.run, nonce: nonce)
    }

    // MARK: The event stream

    private func stream(on channel: any Channel) {
        let eventLoop = channel.eventLoop
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\n"
            + "X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 1000\n\n"
        let dropped = NIOLoopBoundBox(false, eventLoop: eventLoop)
        let deliver: @Sendable (String) -> Void = { text in
            eventLoop.execute {
                guard channel.isActive, !dropped.value else { return }
                guard channel.isWritable else {
                    // Not reading: it reconnects later and is told the state then.
                    dropped.value = true
                    channel.close(promise: nil)
                    return
                }
                channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
            }
        }
        // The greeting and the registration under one lock: no event falls between them.
        let page = self.shared.lock.withLock { state in
            let id = state.nextPage
            state.nextPage += 1
            let greeting = state.feed.greeting(run: self.run).map(\.serverSentEvent).joined()
            deliver(head + greeting)
            state.pages[id] = deliver
            return id
        }
        let keepAlive = eventLoop.scheduleRepeatedTask(initialDelay: Self.keepAliveInterval, delay: Self.keepAliveInterval) { _ in
            if channel.isActive { channel.writeAndFlush(ByteBuffer(string: ": keep-alive\n\n"), promise: nil) }
        }
        let shared = self.shared
        channel.closeFuture.whenComplete { _ in
            keepAlive.cancel()
            _ = shared.lock.withLock { $0.pages.removeValue(forKey: page) }
        }
    }

    // MARK: Helpers

    /// A whole answer, then the connection closes.
    static func send(status: String, type: String, body: String, head: Bool = false, on channel: any Channel) {
        let bytes = Array(body.utf8)
        var text = "HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\nCache-Control: no-store\r\n"
        text += "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
        var buffer = ByteBuffer(string: text)
        if !head { buffer.writeBytes(bytes) }
        channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The line of a project file a diagnostic points at; nothing outside the project is read.
    static func sourceLine(directory: String, file: String, line: Int) -> String? {
        guard line >= 1, !file.split(separator: "/").contains("..") else { return nil }
        let path: String
        if file.hasPrefix("/") {
            guard file.hasPrefix(directory + "/") else { return nil }
            path = file
        } else {
            path = directory + "/" + file
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        // Source files are small; a diagnostic past the first megabyte is not worth a longer read.
        guard let data = try? handle.read(upToCount: 1 << 20) else { return nil }
        var current = 1
        var start = data.startIndex
        for index in data.indices where data[index] == UInt8(ascii: "\n") {
            if current == line { return String(decoding: data[start..<index], as: UTF8.self).replacingOccurrences(of: "\r", with: "") }
            current += 1
            start = index + 1
        }
        return current == line && start < data.endIndex ? String(decoding: data[start...], as: UTF8.self) : nil
    }

    static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func equalInConstantTime(_ given: String, _ expected: String) -> Bool {
        let a = Array(given.utf8)
        let b = Array(expected.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
