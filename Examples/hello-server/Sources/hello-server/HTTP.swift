import Glibc

// A deliberately small HTTP/1.1 server: GET and HEAD, Content-Length
// responses, keep-alive, pipelining, and request bodies read and discarded.
// Anything it does not understand gets a 4xx/5xx answer and the connection
// is closed; it never crashes on bad input.

/// How long a keep-alive connection may sit idle between requests.
let idleTimeout = 30.0
/// Once shutdown has begun, how long an idle keep-alive connection still
/// waits for its next request. The client cannot know we are stopping until
/// it sees `Connection: close` or the close itself, so one that sends its
/// next request in the same instant would see the connection close under it:
/// a failed request. The grace turns that into one more answered request
/// (with `Connection: close`); it is short because idle clients that send
/// nothing hold up the exit for that long.
let shutdownIdleGrace = 1.0
/// How long a client may take to send one complete request once it started.
let requestTimeout = 10.0
/// Largest request head (request line + headers) accepted.
let maxHeadSize = 16 * 1024
/// Largest request body accepted (it is read and discarded).
let maxBodySize = 1024 * 1024

// MARK: - Routes

struct Response {
    var status: Int
    var body: String
    var contentType = "text/plain; charset=utf-8"
    var extraHeaders: [String] = []
}

func route(method: String, path: String, ifNoneMatch: String? = nil) -> Response {
    let handler: () -> Response
    switch path {
    case "/":
        handler = { Response(status: 200, body: "hello-server \(version)\n") }
    case "/health":
        handler = { Response(status: 200, body: "ok\n") }
    case "/page":
        // A whole HTML document, for what treats pages differently from other responses (a
        // supervisor's proxy that injects a live-reload script before `</body>`).
        handler = { Response(status: 200, body: page, contentType: "text/html; charset=utf-8") }
    case "/slow":
        // Gives tests a request that is reliably still in flight when they
        // send SIGTERM or start a rolling restart.
        handler = {
            sleep(seconds: 0.3)
            return Response(status: 200, body: "slow \(version)\n")
        }
    default:
        guard let file = publicFile(path) else { return Response(status: 404, body: "not found\n") }
        // Revalidation, as static file servers do it (Vapor's FileMiddleware, Starlette's
        // StaticFiles): the file has not changed, so the browser may keep its copy.
        if let ifNoneMatch, file.extraHeaders.contains("ETag: " + ifNoneMatch) {
            handler = { Response(status: 304, body: "", extraHeaders: file.extraHeaders) }
        } else {
            handler = { file }
        }
    }
    guard method == "GET" || method == "HEAD" else {
        return Response(status: 405, body: "method not allowed\n", extraHeaders: ["Allow: GET, HEAD"])
    }
    return handler()
}

/// `GET /page`: the version in an HTML document that links `/style.css` (from `Public/`) and
/// counts its loads in the tab's `sessionStorage` (`hello-server-loads`), so a browser test can
/// tell a live reload from none, or from two.
var page: String {
    """
    <!DOCTYPE html>
    <html>
    <head>
    <meta charset="utf-8">
    <title>hello-server \(version)</title>
    <link rel="stylesheet" href="/style.css">
    <script>sessionStorage.setItem("hello-server-loads", String(Number(sessionStorage.getItem("hello-server-loads") || 0) + 1));</script>
    </head>
    <body>
    <h1 id="version">hello-server \(version)</h1>
    </body>
    </html>

    """
}

/// The file `Public/<path>` (relative to the working directory) as a response, if there is one,
/// with an ETag made of its size and modification time.
/// Paths with `..`, `.`, or empty segments (and so anything outside `Public/`) are never read.
func publicFile(_ path: String) -> Response? {
    let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
    guard path.hasPrefix("/"), !segments.isEmpty,
        segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." && !$0.hasPrefix(".") })
    else { return nil }
    guard let (text, tag) = readTextFile("Public" + path) else { return nil }
    return Response(status: 200, body: text, contentType: contentType(ofFile: path), extraHeaders: ["ETag: " + tag])
}

/// The contents of a regular file and its ETag, nil if it is not one or cannot be read.
private func readTextFile(_ path: String) -> (text: String, etag: String)? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count < 0 && errno == EINTR { continue }
        if count < 0 { return nil }
        if count == 0 { break }
        bytes += chunk[..<count]
        if bytes.count > maxBodySize { return nil }
    }
    let etag = "\"\(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)\""
    return (String(decoding: bytes, as: UTF8.self), etag)
}

private func contentType(ofFile path: String) -> String {
    switch path.split(separator: ".").last.map({ $0.lowercased() }) {
    case "css": "text/css; charset=utf-8"
    case "html": "text/html; charset=utf-8"
    case "js": "text/javascript; charset=utf-8"
    case "json": "application/json"
    case "svg": "image/svg+xml"
    default: "text/plain; charset=utf-8"
    }
}

// MARK: - Connections

/// Serves one client connection until it closes, errs, times out, or the
/// server shuts down. Runs on its own thread and owns (and closes) `fd`.
func serveConnection(_ fd: Int32) {
    defer { server.connectionClosed() }
    var buffer: [UInt8] = []
    // Set once shutdown has found this connection idle: from then on it only
    // waits out `shutdownIdleGrace` for a last request.
    var draining = false

    while true {
        // 1. Read until a complete request head has arrived.
        let request: Request
        var deadline = Deadline(after: buffer.isEmpty ? idleTimeout : requestTimeout)
        readHead: while true {
            // Skip the empty lines some clients send between requests (RFC 9112 §2.2).
            buffer.removeFirst(buffer.prefix { $0 == cr || $0 == lf }.count)

            switch parseRequestHead(buffer) {
            case .complete(let head, let length):
                buffer.removeFirst(length)
                request = head
                break readHead
            case .invalid(let status):
                return reject(fd, status: status)
            case .incomplete:
                if buffer.count > maxHeadSize { return reject(fd, status: 431) }
            }
            // Between requests the connection is idle and shutdown gives it
            // `shutdownIdleGrace` for one last request, then closes it; once
            // a request has started, it is in flight and is allowed to finish.
            let idle = buffer.isEmpty
            switch waitForInput(fd, deadline: deadline, interruptible: idle && !draining) {
            case .readable:
                guard receive(fd, into: &buffer) else { return closeNow(fd) }  // peer closed or reset
                if idle { deadline = Deadline(after: requestTimeout) }
            case .timedOut:
                return idle ? closeNow(fd) : reject(fd, status: 408)
            case .shuttingDown:
                // Keep waiting, uninterruptibly now, until the grace (or the
                // idle timeout, if sooner) runs out. A request that arrives
                // is answered as usual, and since shutdown has begun its
                // response is the last one on this connection.
                draining = true
                let grace = Deadline(after: shutdownIdleGrace)
                if grace.remainingMilliseconds < deadline.remainingMilliseconds { deadline = grace }
            }
        }

        // 2. Read and discard the body, if any, so the next request starts at
        //    the right byte.
        if request.contentLength > maxBodySize { return reject(fd, status: 413) }
        while buffer.count < request.contentLength {
            guard waitForInput(fd, deadline: deadline, interruptible: false) == .readable else {
                return reject(fd, status: 408)
            }
            guard receive(fd, into: &buffer) else { return closeNow(fd) }
        }
        buffer.removeFirst(request.contentLength)

        // 3. Answer. Once shutdown has begun, the response in progress is the
        //    last one on this connection.
        if request.path == "/echo", request.upgrade == "echo", request.method == "GET" {
            return serveEcho(fd, buffer: buffer)
        }
        let response = route(method: request.method, path: request.path, ifNoneMatch: request.ifNoneMatch)
        let keepAlive = request.keepAlive && !server.isShuttingDown
        let sent = send(fd, response, keepAlive: keepAlive, http10KeepAlive: request.minorVersion == 0,
                        includeBody: request.method != "HEAD")
        guard sent else { return closeNow(fd) }
        if !keepAlive { return closeGracefully(fd) }
    }
}

/// `GET /echo` with `Upgrade: echo`: answers 101, then each line sent is echoed back as
/// `hello-server <version>: <line>` — a stand-in for a WebSocket, to test that a supervisor's proxy
/// passes upgraded connections through. Ends when the client closes or the server shuts down.
private func serveEcho(_ fd: Int32, buffer: [UInt8]) {
    var buffer = buffer
    let switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
    guard sendAll(fd, Array(switching.utf8)) else { return closeNow(fd) }
    while true {
        while let newline = buffer.firstIndex(of: lf) {
            let line = String(decoding: buffer[..<newline], as: UTF8.self)
            buffer.removeFirst(newline + 1)
            guard sendAll(fd, Array("hello-server \(version): \(line)\n".utf8)) else { return closeNow(fd) }
        }
        switch waitForInput(fd, deadline: Deadline(after: idleTimeout), interruptible: true) {
        case .readable:
            guard receive(fd, into: &buffer) else { return closeNow(fd) }
        case .timedOut, .shuttingDown:
            return closeNow(fd)
        }
    }
}

/// Sends all of `bytes`; false if the peer is gone.
private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent < 0 && errno == EINTR { continue }
        if sent <= 0 { return false }
        offset += sent
    }
    return true
}

/// Appends whatever the socket has to `buffer`. False on end of stream or error.
private func receive(_ fd: Int32, into buffer: inout [UInt8]) -> Bool {
    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { chunk in
        while true {
            let count = recv(fd, chunk.baseAddress, chunk.count, 0)
            if count > 0 {
                buffer.append(contentsOf: chunk[..<count])
                return true
            }
            if count < 0 && errno == EINTR { continue }
            return false
        }
    }
}

private func send(_ fd: Int32, _ response: Response, keepAlive: Bool, http10KeepAlive: Bool, includeBody: Bool) -> Bool {
    let body = Array(response.body.utf8)
    var head = "HTTP/1.1 \(response.status) \(reasonPhrase(response.status))\r\n"
    head += "Content-Type: \(response.contentType)\r\n"
    // A 304's length would be the GET's; it has no body, and says none.
    if response.status != 304 { head += "Content-Length: \(body.count)\r\n" }
    if !keepAlive {
        head += "Connection: close\r\n"
    } else if http10KeepAlive {
        head += "Connection: keep-alive\r\n"  // HTTP/1.0 closes unless told otherwise
    }
    for header in response.extraHeaders { head += header + "\r\n" }
    head += "\r\n"

    // One send() per response: no partial responses from Nagle's algorithm.
    var bytes = Array(head.utf8)
    if includeBody { bytes += body }
    var offset = 0
    while offset < bytes.count {
        let sent = bytes.withUnsafeBytes {
            Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
        }
        if sent > 0 {
            offset += sent
        } else if sent < 0 && errno == EINTR {
            continue
        } else {
            return false  // peer gone, or stuck past the send timeout
        }
    }
    return true
}

/// Answers a malformed or unacceptable request and closes the connection:
/// after a framing error there is no telling where the next request starts.
private func reject(_ fd: Int32, status: Int) {
    let response = Response(status: status, body: "\(reasonPhrase(status).lowercased())\n")
    if send(fd, response, keepAlive: false, http10KeepAlive: false, includeBody: true) {
        closeGracefully(fd)
    } else {
        closeNow(fd)
    }
}

private func closeNow(_ fd: Int32) {
    close(fd)
}

/// Closes after a response that ends the connection. Closing a socket that
/// still has unread input makes the kernel send a reset, which can destroy
/// the response before the client reads it. So: send FIN first, then drain
/// input briefly until the client closes its side.
private func closeGracefully(_ fd: Int32) {
    shutdown(fd, Int32(SHUT_WR))
    let deadline = Deadline(after: 1)
    var scratch: [UInt8] = []
    while waitForInput(fd, deadline: deadline, interruptible: false) == .readable,
          receive(fd, into: &scratch) {
        scratch.removeAll(keepingCapacity: true)
    }
    close(fd)
}

// MARK: - Parsing

private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")

struct Request {
    var method: String
    /// The request target without its query string or fragment.
    var path: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x).
    var minorVersion: Int
    var contentLength = 0
    var keepAlive: Bool
    /// The protocol asked for with `Upgrade:` (lowercased), if any.
    var upgrade: String?
    /// `If-None-Match:`, as sent: files from `Public/` answer 304 when it names their ETag.
    var ifNoneMatch: String?
}

enum HeadParseResult {
    case incomplete
    case complete(Request, length: Int)
    case invalid(status: Int)
}

/// Parses a request head at the start of `buffer`, if it is all there.
/// Lines may end in CRLF or bare LF.
func parseRequestHead(_ buffer: [UInt8]) -> HeadParseResult {
    guard let length = headLength(buffer) else { return .incomplete }

    var lines = buffer[..<length].split(separator: lf, omittingEmptySubsequences: false).map { line in
        line.last == cr ? line.dropLast() : line
    }
    while lines.last?.isEmpty == true { lines.removeLast() }
    guard !lines.isEmpty else { return .invalid(status: 400) }  // callers strip blank lines; never trap
    // Control characters (other than tab) have no business in a request head.
    for line in lines where line.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
        return .invalid(status: 400)
    }

    // Request line: METHOD SP TARGET SP HTTP/1.x
    let parts = lines[0].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
    guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenCharacter), !parts[1].isEmpty else {
        return .invalid(status: 400)
    }
    guard let (major, minor) = parseVersion(parts[2]) else { return .invalid(status: 400) }
    guard major == 1 else { return .invalid(status: 505) }

    let target = parts[1]
    let pathEnd = target.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? target.endIndex
    var request = Request(
        method: String(decoding: parts[0], as: UTF8.self),
        path: String(decoding: target[..<pathEnd], as: UTF8.self),
        minorVersion: minor,
        keepAlive: false
    )

    var contentLength: Int?
    var saysClose = false, saysKeepAlive = false
    for line in lines.dropFirst() {
        // Obsolete line folding (a line starting with whitespace) is rejected, as RFC 9112 allows.
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), line.first != UInt8(ascii: " "),
              line.first != 0x09 else {
            return .invalid(status: 400)
        }
        let name = line[..<colon]
        guard !name.isEmpty, name.allSatisfy(isTokenCharacter) else { return .invalid(status: 400) }
        let value = trimmed(line[(colon + 1)...])

        switch String(decoding: name, as: UTF8.self).lowercased() {
        case "content-length":
            // Digits only; conflicting duplicates are a request smuggling risk.
            guard !value.isEmpty, value.count <= 18, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let length = Int(String(decoding: value, as: UTF8.self)),
                  contentLength == nil || contentLength == length else {
                return .invalid(status: 400)
            }
            contentLength = length
        case "upgrade":
            request.upgrade = String(decoding: value, as: UTF8.self).lowercased()
        case "if-none-match":
            request.ifNoneMatch = String(decoding: value, as: UTF8.self)
        case "transfer-encoding":
            // Chunked request bodies are not supported by this small server.
            return .invalid(status: 501)
        case "connection":
            for option in String(decoding: value, as: UTF8.self).lowercased().split(separator: ",") {
                switch option.trimmingSpaces {
                case "close": saysClose = true
                case "keep-alive": saysKeepAlive = true
                default: break
                }
            }
        default:
            break
        }
    }
    // HTTP/1.1 keeps the connection open unless told "close"; HTTP/1.0 closes
    // it unless told "keep-alive". "close" wins if both are given.
    request.keepAlive = !saysClose && (minor >= 1 || saysKeepAlive)
    request.contentLength = contentLength ?? 0
    return .complete(request, length: length)
}

/// The length of the head (through its blank line), or nil if incomplete.
private func headLength(_ buffer: [UInt8]) -> Int? {
    var index = buffer.startIndex
    while let newline = buffer[index...].firstIndex(of: lf) {
        let next = newline + 1
        if next < buffer.endIndex && buffer[next] == lf { return next + 1 }
        if next + 1 < buffer.endIndex && buffer[next] == cr && buffer[next + 1] == lf { return next + 2 }
        index = next
    }
    return nil
}

/// "HTTP/1.1" → (1, 1). Other digits parse too so the caller can answer 505.
private func parseVersion(_ text: ArraySlice<UInt8>) -> (Int, Int)? {
    let bytes = Array(text)
    guard bytes.count == 8, bytes.starts(with: Array("HTTP/".utf8)), bytes[6] == UInt8(ascii: "."),
          isDigit(bytes[5]), isDigit(bytes[7]) else { return nil }
    return (Int(bytes[5] - 0x30), Int(bytes[7] - 0x30))
}

private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

/// RFC 9110 token characters (header names, methods).
private func isTokenCharacter(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), 0x30...0x39:
        return true
    default:
        return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
    }
}

private func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
    guard let first = bytes.firstIndex(where: { !isSpace($0) }),
          let last = bytes.lastIndex(where: { !isSpace($0) }) else { return [] }
    return bytes[first...last]
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        let isSpace = { (c: Character) in c == " " || c == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return self[first...last]
    }
}

func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 200: "OK"
    case 304: "Not Modified"
    case 400: "Bad Request"
    case 404: "Not Found"
    case 405: "Method Not Allowed"
    case 408: "Request Timeout"
    case 413: "Content Too Large"
    case 431: "Request Header Fields Too Large"
    case 501: "Not Implemented"
    case 505: "HTTP Version Not Supported"
    default: "Unknown"
    }
}
