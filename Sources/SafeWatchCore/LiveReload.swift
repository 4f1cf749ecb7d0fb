/// The browser side, settled from the configuration: where safe-watch answers in the proxy's
/// address space, which hosts may trigger actions, which directories are assets (README, "In the
/// browser").
public struct LiveReloadSettings: Equatable, Sendable {
    /// The reserved prefix, `/_safe-watch/` by default: answered by safe-watch, never forwarded.
    public var prefix: String
    /// Asset directories relative to the project (only those that exist, when not configured).
    public var assetDirectories: [String]
    /// Host names (lower case, with or without a port) allowed besides the listen addresses.
    public var publicHosts: [String]
    /// The proxy's listen addresses (`127.0.0.1:8080`).
    public var listenAddresses: [ListenAddress]

    public init(prefix: String, assetDirectories: [String], publicHosts: [String], listenAddresses: [ListenAddress]) {
        self.prefix = prefix
        self.assetDirectories = assetDirectories
        self.publicHosts = publicHosts
        self.listenAddresses = listenAddresses
    }

    /// What the configuration says, or why the browser side is off: nil settings with a line to
    /// say once at start (socket, tcp and restart modes never see an HTTP response).
    /// - Parameter directoryExists: whether a directory relative to the project exists.
    public static func from(
        _ configuration: Configuration, listenAddresses: [ListenAddress], directoryExists: (String) -> Bool
    ) -> (settings: LiveReloadSettings?, notice: String?) {
        let browser = configuration.browser
        let mode = configuration.serve.mode
        if browser.enabled == false { return (nil, nil) }
        guard mode == .proxy else {
            return (
                nil,
                "[browser] live reload, the error overlay and the status page need proxy mode: in \(mode.rawValue) mode "
                    + "safe-watch does not see the HTTP responses (set [browser] enabled = false to silence this)"
            )
        }
        let assets = browser.assets ?? Configuration.Browser.defaultAssets.filter(directoryExists)
        return (LiveReloadSettings(prefix: browser.prefix, assetDirectories: assets, publicHosts: browser.publicHosts, listenAddresses: listenAddresses), nil)
    }

    /// The path of the client script the pages load.
    public var clientScriptPath: String { self.prefix + "client.js" }
    /// The Server-Sent Events stream.
    public var eventsPath: String { self.prefix + "events" }

    /// Whether a request target is safe-watch's own (`/_safe-watch/…`, or `/_safe-watch` alone).
    public func isReserved(_ target: String) -> Bool {
        let path = Self.path(of: target)
        return path.hasPrefix(self.prefix) || path == String(self.prefix.dropLast())
    }

    /// The target's path without query or fragment; an absolute-form target (`http://host/x`)
    /// becomes its path.
    public static func path(of target: String) -> String {
        var rest = Substring(target)
        if let scheme = rest.range(of: "://") {
            rest = rest[scheme.upperBound...]
            rest = rest.firstIndex(of: "/").map { rest[$0...] } ?? "/"
        }
        if let end = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
        return String(rest)
    }

    /// The part after the prefix: "" (the status page), "events", "client.js", "rebuild"…
    public func endpoint(of target: String) -> String {
        let path = Self.path(of: target)
        guard path.hasPrefix(self.prefix) else { return "" }
        return String(path.dropFirst(self.prefix.count))
    }

    /// Whether `Host` (and `Origin`, when the browser sent one) name this safe-watch: one of the
    /// listen addresses, `localhost` on a listen port, or a public host. A page of another site
    /// sends its own Origin; a DNS-rebinding name arrives as a foreign Host: both are refused.
    public func allowsActions(host: String?, origin: String?) -> Bool {
        guard let host, self.isOwnHost(host) else { return false }
        guard let origin else { return true }
        // "null" (a sandboxed frame, a file: page) and any other site are foreign.
        guard let schemeEnd = origin.range(of: "://") else { return false }
        let scheme = origin[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return false }
        let originHost = String(origin[schemeEnd.upperBound...])
        guard !originHost.contains("/") else { return false }
        return self.isOwnHost(originHost) || (scheme == "https" && self.isOwnHost(originHost + ":443"))
            || (scheme == "http" && self.isOwnHost(originHost + ":80"))
    }

    /// `host[:port]` is a listen address, loopback on a listen port, or a public host.
    public func isOwnHost(_ value: String) -> Bool {
        let host = value.lowercased()
        if self.publicHosts.contains(host) { return true }
        // A public host given without a port stands for any port (a tunnel's 443, say).
        if let (name, _) = Self.split(host), self.publicHosts.contains(name) { return true }
        guard let (name, port) = Self.split(host), let port else { return false }
        for address in self.listenAddresses where address.port == port {
            let listenHost = address.host.lowercased()
            if name == listenHost { return true }
            let loopbackNames: Set = ["localhost", "127.0.0.1", "::1"]
            let listensOnLoopbackOrAll = ["127.0.0.1", "::1", "0.0.0.0", "::", "localhost"].contains(listenHost)
            if listensOnLoopbackOrAll && loopbackNames.contains(name) { return true }
        }
        return false
    }

    /// `name:port`, `[v6]:port` or `name` into the name (brackets dropped) and port.
    static func split(_ host: String) -> (String, Int?)? {
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let name = String(host[host.index(after: host.startIndex)..<close])
            let rest = host[host.index(after: close)...]
            if rest.isEmpty { return (name, nil) }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()) else { return nil }
            return (name, port)
        }
        guard let colon = host.lastIndex(of: ":") else { return (host, nil) }
        guard let port = Int(host[host.index(after: colon)...]) else { return nil }
        return (String(host[..<colon]), port)
    }
}

/// Whether and how an HTML response gets the live-reload script: only whole documents, so that
/// fragments (htmx, Turbo frames) do not each open an event stream; never in a way that breaks
/// the page (encoded bodies, a Content-Security-Policy that forbids the script).
public enum HTMLInjection {
    public enum Decision: Equatable, Sendable {
        /// Buffer the body and add the script tag, with this nonce when the policy asks for one.
        case inject(nonce: String?)
        /// Pass the response as it is.
        case leave
        /// Pass it as it is, and say why once (a kind of response that will never reload).
        case leaveAndSay(reason: String)
    }

    /// Decides from the response head alone. `fields` are the response's header fields.
    public static func decide(requestMethod: String, status: Int, fields: [(name: String, value: String)]) -> Decision {
        // HEAD and 304 carry no body (their Content-Length describes the GET's); 1xx, 204 neither.
        guard requestMethod != "HEAD", status >= 200, status != 204, status != 304 else { return .leave }
        func values(_ name: String) -> [String] { fields.filter { $0.name.lowercased() == name }.map(\.value) }
        guard let contentType = values("content-type").first,
            contentType.split(separator: ";").first?.trimmingWhitespace().lowercased() == "text/html"
        else { return .leave }
        if values("content-disposition").contains(where: { $0.lowercased().hasPrefix("attachment") }) { return .leave }
        let encodings = values("content-encoding").flatMap { $0.split(separator: ",") }.map { $0.trimmingWhitespace().lowercased() }
            .filter { $0 != "identity" && !$0.isEmpty }
        if let encoding = encodings.first {
            return .leaveAndSay(
                reason: "HTML sent with Content-Encoding: \(encoding) gets no live-reload script (safe-watch does not re-encode "
                    + "bodies); turn compression off in development to have it")
        }
        // Every policy applies: the script must be allowed by each.
        var nonce: String?
        for policy in values("content-security-policy") {
            switch ContentSecurityPolicy(policy).allowsSameOriginScript() {
            case .allowed: continue
            case .withNonce(let value): nonce = value
            case .forbidden(let why):
                return .leaveAndSay(reason: "the page's Content-Security-Policy forbids the live-reload script (\(why)); add 'self' to script-src and connect-src to have it")
            }
        }
        return .inject(nonce: nonce)
    }

    /// The tag added before `</body>` (or `</head>`); `generation` is the one that served the page,
    /// so the script reloads only for a different one.
    public static func scriptTag(settings: LiveReloadSettings, generation: Generation?, run: String, nonce: String?) -> String {
        let nonceAttribute = nonce.map { " nonce=\"\(escapeHTML($0))\"" } ?? ""
        return "<script src=\"\(escapeHTML(settings.clientScriptPath))\" data-generation=\"\(generation ?? 0)\" data-run=\"\(escapeHTML(run))\"\(nonceAttribute) defer></script>"
    }

    /// The body with `tag` inserted before the last `</body>`, else before the last `</head>`;
    /// nil for a fragment (neither), which stays as it is.
    public static func inject(_ tag: String, into body: [UInt8]) -> [UInt8]? {
        guard let at = lastIndex(of: "</body", in: body) ?? lastIndex(of: "</head", in: body) else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(body.count + tag.utf8.count)
        result.append(contentsOf: body[..<at])
        result.append(contentsOf: tag.utf8)
        result.append(contentsOf: body[at...])
        return result
    }

    /// The last position of an ASCII `needle` in `bytes`, ignoring case.
    static func lastIndex(of needle: String, in bytes: [UInt8]) -> Int? {
        let pattern = Array(needle.utf8)
        guard bytes.count >= pattern.count else { return nil }
        var start = bytes.count - pattern.count
        while start >= 0 {
            var matches = true
            for offset in 0..<pattern.count {
                var byte = bytes[start + offset]
                if byte >= 65 && byte <= 90 { byte += 32 }
                if byte != pattern[offset] {
                    matches = false
                    break
                }
            }
            if matches { return start }
            start -= 1
        }
        return nil
    }

    /// The response head for an injected body: the server's fields without its framing
    /// (Content-Length, Transfer-Encoding), without validators that no longer match the body
    /// (Content-MD5, Digest, ETag, Last-Modified) and without its caching rules, then
    /// `Cache-Control: no-store` and `Content-Length` of the new body. `head` is the whole head,
    /// start line to the blank line.
    ///
    /// The page names the generation that served it, so no copy of it may be reused: with its
    /// ETag kept, the reload after a swap was answered 304 and the browser showed its copy, which
    /// still named the old generation, and reloaded again, for ever.
    public static func rewrittenHead(_ head: [UInt8], bodyLength: Int) -> [UInt8] {
        let text = String(decoding: head, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        while lines.last == "" { lines.removeLast() }
        let dropped: Set = [
            "content-length", "transfer-encoding", "content-md5", "digest", "repr-digest", "content-digest", "etag", "last-modified",
            "cache-control", "expires", "pragma",
        ]
        var output = lines.first.map { [$0] } ?? []
        for line in lines.dropFirst() {
            let name = line.split(separator: ":", maxSplits: 1).first.map { $0.trimmingWhitespace().lowercased() } ?? ""
            if dropped.contains(name) { continue }
            output.append(line)
        }
        output.append("Cache-Control: no-store")
        output.append("Content-Length: \(bodyLength)")
        return Array((output.joined(separator: "\r\n") + "\r\n\r\n").utf8)
    }

    /// A head's header fields as (name, value) pairs, in order. `head` is start line to blank line.
    public static func fields(of head: [UInt8]) -> [(name: String, value: String)] {
        let text = String(decoding: head, as: UTF8.self)
        return text.components(separatedBy: "\r\n").dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (line[..<colon].trimmingWhitespace(), line[line.index(after: colon)...].trimmingWhitespace())
        }
    }

    /// The data of a whole chunked body (sizes, extensions and trailers dropped); nil when it is malformed.
    public static func dechunked(_ body: [UInt8]) -> [UInt8]? {
        var scanner = ChunkedBodyScanner()
        var data: [UInt8] = []
        data.reserveCapacity(body.count)
        let ok: Bool = body.withUnsafeBytes { raw in
            do {
                _ = try scanner.scan(raw) { range in data.append(contentsOf: raw[range]) }
                return scanner.isDone
            } catch {
                return false
            }
        }
        return ok ? data : nil
    }
}

/// The parts of a Content-Security-Policy that decide whether the live-reload script may run:
/// `script-src-elem` / `script-src` / `default-src` for the script, `connect-src` / `default-src`
/// for its event stream.
public struct ContentSecurityPolicy: Sendable {
    public enum ScriptPermission: Equatable, Sendable {
        case allowed
        case withNonce(String)
        case forbidden(String)
    }

    private var directives: [String: [String]] = [:]

    public init(_ header: String) {
        for part in header.split(separator: ";") {
            let words = part.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let name = words.first?.lowercased() else { continue }
            // The first occurrence of a directive wins.
            if self.directives[name] == nil { self.directives[name] = Array(words.dropFirst()) }
        }
    }

    public func allowsSameOriginScript() -> ScriptPermission {
        if let connect = self.directives["connect-src"] ?? self.directives["default-src"], !Self.allowsSelf(connect) {
            return .forbidden("connect-src does not allow 'self'")
        }
        guard let script = self.directives["script-src-elem"] ?? self.directives["script-src"] ?? self.directives["default-src"] else {
            return .allowed
        }
        let lowered = script.map { $0.lowercased() }
        // With 'strict-dynamic' only nonces and hashes count; a nonce is what a served page can reuse.
        if let nonce = script.first(where: { $0.lowercased().hasPrefix("'nonce-") && $0.hasSuffix("'") }) {
            return .withNonce(String(nonce.dropFirst(7).dropLast()))
        }
        if lowered.contains("'strict-dynamic'") { return .forbidden("script-src has 'strict-dynamic' and no nonce") }
        return Self.allowsSelf(script) ? .allowed : .forbidden("script-src does not allow 'self'")
    }

    private static func allowsSelf(_ sources: [String]) -> Bool {
        let lowered = sources.map { $0.lowercased() }
        if lowered.contains("'none'") && lowered.count == 1 { return false }
        return lowered.contains("'self'") || lowered.contains("*") || lowered.contains("http:") || lowered.contains("https:")
    }
}

/// Text made safe for HTML content and attribute values.
public func escapeHTML(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for character in text {
        switch character {
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "\"": result += "&quot;"
        case "'": result += "&#39;"
        default: result.append(character)
        }
    }
    return result
}

/// Gathers an HTML response's body as it comes from the server, then gives the bytes the client
/// gets: the head with the new `Content-Length` and the body with the script tag, or, for a
/// fragment (no `</body>` or `</head>`), the head and body exactly as they came. Pure.
public struct HTMLResponseRewriter: Sendable {
    public enum Step: Equatable, Sendable {
        /// The body is not complete yet.
        case needMore
        /// The whole response for the client; `leftover` are bytes past the body's end (none from
        /// a well-behaved server).
        case complete(output: [UInt8], injected: Bool, leftover: [UInt8])
        /// The server's framing is malformed.
        case malformed(String)
        /// The page is let go without the script: one of unknown length grew past
        /// `largestDocument`, or it is still coming after a while (`letGo()`). `output` is the head
        /// and what came of the body so far, as it came; the rest of the body follows as it comes.
        case letGo(output: [UInt8], rest: Rest)
    }

    /// What is left of a body let go, in the server's framing.
    public enum Rest: Equatable, Sendable {
        /// This many bytes.
        case length(UInt64)
        /// The rest of a chunked body, `scanner` having read the part sent.
        case chunked(ChunkedBodyScanner)
        /// Until the server closes.
        case untilClose
    }

    /// A document longer than this is passed through as it is: at once when its length is known up
    /// front, and once it has grown past it otherwise (what one page may hold in memory).
    public static let largestDocument = 8 << 20

    private let head: [UInt8]
    private let framing: HTTPFraming.BodyFraming
    private let tag: String
    private var raw: [UInt8] = []
    private var chunked = ChunkedBodyScanner()
    private var data: [UInt8] = []

    /// - Parameters:
    ///   - head: the head as it would go to the client (already forwarded: hop-by-hop fields handled).
    ///   - framing: the server's body framing; chunked bodies are decoded and sent with a length.
    public init(head: [UInt8], framing: HTTPFraming.BodyFraming, tag: String) {
        self.head = head
        self.framing = framing
        self.tag = tag
    }

    /// Whether a body so framed can be gathered: not longer than `largestDocument` when that is known.
    public static func accepts(_ framing: HTTPFraming.BodyFraming) -> Bool {
        if case .length(let length) = framing { return length <= Self.largestDocument }
        return framing != .none
    }

    /// Takes the next bytes of the body from the server.
    public mutating func take(_ bytes: [UInt8]) -> Step {
        switch self.framing {
        case .length(let length):
            let want = Int(length) - self.raw.count
            let taken = bytes.prefix(want)
            self.raw.append(contentsOf: taken)
            guard self.raw.count == Int(length) else { return .needMore }
            return self.finish(body: self.raw, leftover: Array(bytes.dropFirst(taken.count)))
        case .chunked:
            let consumed: Int
            var data = self.data
            let result: Result<Int, HTTPFraming.Refusal> = bytes.withUnsafeBytes { buffer in
                Result { () throws(HTTPFraming.Refusal) in
                    try self.chunked.scan(buffer) { range in data.append(contentsOf: buffer[range]) }
                }
            }
            self.data = data
            switch result {
            case .failure(let refusal): return .malformed(refusal.reason)
            case .success(let count): consumed = count
            }
            self.raw.append(contentsOf: bytes.prefix(consumed))
            guard self.chunked.isDone else {
                return self.raw.count > Self.largestDocument ? self.letGo() : .needMore
            }
            return self.finish(body: self.data, leftover: Array(bytes.dropFirst(consumed)))
        case .untilClose:
            self.raw.append(contentsOf: bytes)
            return self.raw.count > Self.largestDocument ? self.letGo() : .needMore
        case .none:
            return self.finish(body: [], leftover: bytes)
        }
    }

    /// The page as it came so far, without the script, and what is left of its body: for a page
    /// still coming after a while (a stream, or a server that pauses mid-page), which the client
    /// must not wait on for its end.
    public func letGo() -> Step {
        let output = self.head + self.raw
        switch self.framing {
        case .length(let length): return .letGo(output: output, rest: .length(length - UInt64(self.raw.count)))
        case .chunked: return .letGo(output: output, rest: .chunked(self.chunked))
        case .untilClose: return .letGo(output: output, rest: .untilClose)
        case .none: return .complete(output: output, injected: false, leftover: [])
        }
    }

    /// The server closed its connection: the end of an until-close body, too early for the others.
    public mutating func serverClosed() -> Step {
        guard self.framing == .untilClose else { return .malformed("the server closed the connection before the body ended") }
        return self.finish(body: self.raw, leftover: [])
    }

    private func finish(body: [UInt8], leftover: [UInt8]) -> Step {
        guard let injected = HTMLInjection.inject(self.tag, into: body) else {
            // A fragment: as it came, in its own framing.
            return .complete(output: self.head + self.raw, injected: false, leftover: leftover)
        }
        return .complete(output: HTMLInjection.rewrittenHead(self.head, bodyLength: injected.count) + injected, injected: true, leftover: leftover)
    }
}

/// Byte-level looks at a head, for the proxy's every request and response: no strings made unless
/// the browser side has something to do with it.
public enum HeadBytes {
    /// Whether the request line's target is under `prefix` (or is the prefix without its last
    /// slash): `GET /_safe-watch/events HTTP/1.1`.
    public static func targetStarts(with prefix: [UInt8], in head: UnsafeRawBufferPointer) -> Bool {
        guard let space = head.firstIndex(of: 32) else { return false }
        var start = space + 1
        // An absolute-form target (`http://host/…`) names its path after the authority.
        if start + 7 <= head.count, head[start] == UInt8(ascii: "h") || head[start] == UInt8(ascii: "H") {
            var slashes = 0
            var index = start
            while index < head.count, head[index] != 32, head[index] != 13 {
                if head[index] == UInt8(ascii: "/") {
                    slashes += 1
                    if slashes == 3 {
                        start = index
                        break
                    }
                }
                index += 1
            }
            if slashes < 3 { return false }
        }
        var matched = 0
        while matched < prefix.count, start + matched < head.count {
            let byte = head[start + matched]
            if byte != prefix[matched] {
                // `/_safe-watch` alone (then a space or a query) is the prefix too.
                return matched == prefix.count - 1 && (byte == 32 || byte == UInt8(ascii: "?"))
            }
            matched += 1
        }
        return matched == prefix.count
    }

    /// Whether a header field `name` (lower case) has a value that starts with (`atStart`) or
    /// contains `value` (lower case), ignoring case.
    public static func field(_ name: String, has value: String, atStart: Bool, in head: UnsafeRawBufferPointer) -> Bool {
        self.field(Array(name.utf8), has: Array(value.utf8), atStart: atStart, in: head)
    }

    /// The names and values the proxy looks for, made once: its checks allocate nothing.
    public static let contentType = Array("content-type".utf8)
    public static let accept = Array("accept".utf8)
    public static let textHTML = Array("text/html".utf8)

    /// `field(_:has:atStart:in:)` with the name and value as lower-case bytes.
    public static func field(_ name: [UInt8], has value: [UInt8], atStart: Bool, in head: UnsafeRawBufferPointer) -> Bool {
        var lineStart = 0
        let count = head.count
        func lower(_ byte: UInt8) -> UInt8 { byte >= 65 && byte <= 90 ? byte + 32 : byte }
        while lineStart < count {
            var lineEnd = lineStart
            while lineEnd < count, head[lineEnd] != 10 { lineEnd += 1 }
            if lineStart > 0, lineEnd - lineStart > name.count, head[lineStart + name.count] == UInt8(ascii: ":") {
                var same = true
                for offset in 0..<name.count where lower(head[lineStart + offset]) != name[offset] {
                    same = false
                    break
                }
                if same {
                    var index = lineStart + name.count + 1
                    while index < lineEnd, head[index] == 32 || head[index] == 9 { index += 1 }
                    let last = atStart ? index : lineEnd - value.count
                    var from = index
                    while from <= last, from + value.count <= lineEnd {
                        var found = true
                        for offset in 0..<value.count where lower(head[from + offset]) != value[offset] {
                            found = false
                            break
                        }
                        if found { return true }
                        from += 1
                    }
                }
            }
            lineStart = lineEnd + 1
        }
        return false
    }
}
