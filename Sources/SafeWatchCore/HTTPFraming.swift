#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The little of HTTP/1.x the proxy needs to read: where a head ends, how the body after it is
/// framed, and which header lines are the connection's own (hop-by-hop). Everything else passes
/// through as the bytes received, so no header value is ever decoded, re-encoded or reordered.
///
/// Pure: heads are read where they lie (no copy, and no allocation for the usual head), results are
/// values; the proxy's channel handlers do the I/O.
public enum HTTPFraming {
    /// Largest head (start line and header fields) accepted; a larger one is refused (431 for a
    /// request, 502 for a response).
    public static let maxHeadLength = 64 * 1024

    /// Where the head at the start of `bytes` ends.
    public enum HeadEnd: Equatable, Sendable {
        /// Not all of the head has arrived yet.
        case incomplete
        /// The head is the first `length` bytes, its blank line included.
        case complete(length: Int)
        /// More than `maxHeadLength` bytes without the end of a head.
        case tooLarge
    }

    /// Finds the blank line that ends a head. `searchedBefore` bytes were already searched on an
    /// earlier call (the search resumes a little before them, since CRLFCRLF can straddle reads).
    public static func headEnd(in bytes: UnsafeRawBufferPointer, searchedBefore: Int = 0) -> HeadEnd {
        let count = bytes.count
        guard let base = bytes.baseAddress else { return .incomplete }
        var index = max(0, searchedBefore - 3)
        // From line feed to line feed (memchr: a head is mostly long lines).
        while index < count, let found = memchr(base + index, Int32(lf), count - index) {
            index = base.distance(to: UnsafeRawPointer(found))
            // LF LF (a bare-LF client) or LF CR LF ends the head.
            if index + 1 < count, bytes[index + 1] == lf { return checked(index + 2) }
            if index + 2 < count, bytes[index + 1] == cr, bytes[index + 2] == lf { return checked(index + 3) }
            index += 1
        }
        return count > maxHeadLength ? .tooLarge : .incomplete
    }

    private static func checked(_ length: Int) -> HeadEnd {
        length > maxHeadLength ? .tooLarge : .complete(length: length)
    }

    /// How a message's body is delimited.
    public enum BodyFraming: Equatable, Sendable {
        case none
        case length(UInt64)
        case chunked
        /// The body runs until the sender closes the connection (responses only).
        case untilClose
    }

    /// Why a head cannot be forwarded.
    public struct Refusal: Error, Equatable, Sendable {
        /// The status to answer a client with.
        public var status: Int
        public var reason: String
    }

    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
}

/// One header line of a head: byte ranges into the head's bytes.
public struct HeaderField: Equatable, Sendable {
    /// The whole line without its line ending.
    public var line: Range<Int>
    public var name: Range<Int>
    /// The value without the whitespace around it.
    public var value: Range<Int>
}

/// The tokens of a head's `Connection` fields (RFC 9110 §7.6.1).
struct ConnectionOptions: Equatable, Sendable {
    var close = false
    var keepAlive = false
    var upgrade = false
    /// A token other than those three: it names a field that is the connection's own.
    var namesFields = false
}

/// Where the parts of a head are, and what its framing and hop-by-hop rules depend on: found in
/// one pass over the bytes where they lie, with no allocation. Every request and every response
/// through the proxy is read this way, so the usual head costs one walk and no copy.
struct HeadSummary: Equatable, Sendable {
    var startLine: Range<Int> = 0..<0
    /// Where the first field line starts.
    var fieldsStart = 0
    /// Where the blank line that ends the head starts.
    var fieldsEnd = 0
    /// Some line ends with a bare LF: the head is rewritten with CRLF before it travels on.
    var bareLineFeeds = false
    var contentLength: UInt64?
    var hosts = 0
    var host: Range<Int>?
    var hasUpgrade = false
    var expectsContinue = false
    var connection = ConnectionOptions()
    var transferCodings = 0
    var lastCodingIsChunked = false
    /// `Connection`, `Keep-Alive` and `Proxy-Connection` lines: the proxy takes them out.
    var connectionFields = 0
    /// `X-Forwarded-For` and `Forwarded` lines: the proxy merges its own hop into them.
    var mergedForwardingFields = 0
    var hasForwardedProto = false

    /// Reads a whole head (its blank line included); malformed lines are refused with `status`.
    init(_ bytes: UnsafeRawBufferPointer, refusing status: Int) throws(HTTPFraming.Refusal) {
        var sawStartLine = false
        let blankLine = try bytes.forEachHeadLine(from: 0) { line throws(HTTPFraming.Refusal) in
            if !sawStartLine {
                self.startLine = line.content
                self.fieldsStart = line.next
                sawStartLine = true
            } else {
                try self.add(try HeaderField(validating: line.content, in: bytes), in: bytes, refusing: status)
            }
            if line.endsWithBareLineFeed { self.bareLineFeeds = true }
        }
        guard sawStartLine else { throw HTTPFraming.Refusal(status: status, reason: "empty head") }
        self.fieldsEnd = blankLine.start
        if blankLine.endsWithBareLineFeed { self.bareLineFeeds = true }
    }

    private mutating func add(_ field: HeaderField, in bytes: UnsafeRawBufferPointer, refusing status: Int) throws(HTTPFraming.Refusal) {
        let name = field.name
        switch name.count {
        case 4 where bytes.equalsIgnoringCase(name, "host"):
            self.hosts += 1
            self.host = field.value
        case 6 where bytes.equalsIgnoringCase(name, "expect"):
            if bytes.equalsIgnoringCase(field.value, "100-continue") { self.expectsContinue = true }
        case 7 where bytes.equalsIgnoringCase(name, "upgrade"):
            self.hasUpgrade = true
        case 9 where bytes.equalsIgnoringCase(name, "forwarded"):
            self.mergedForwardingFields += 1
        case 10 where bytes.equalsIgnoringCase(name, "connection"):
            self.connectionFields += 1
            bytes.forEachElement(of: field.value) { token in
                if bytes.equalsIgnoringCase(token, "close") {
                    self.connection.close = true
                } else if bytes.equalsIgnoringCase(token, "keep-alive") {
                    self.connection.keepAlive = true
                } else if bytes.equalsIgnoringCase(token, "upgrade") {
                    self.connection.upgrade = true
                } else {
                    self.connection.namesFields = true
                }
            }
        case 10 where bytes.equalsIgnoringCase(name, "keep-alive"):
            self.connectionFields += 1
        case 14 where bytes.equalsIgnoringCase(name, "content-length"):
            try bytes.forEachContentLength(in: field.value, refusing: status) { parsed throws(HTTPFraming.Refusal) in
                if let length = self.contentLength, length != parsed {
                    throw HTTPFraming.Refusal(status: status, reason: "conflicting Content-Length values")
                }
                self.contentLength = parsed
            }
        case 15 where bytes.equalsIgnoringCase(name, "x-forwarded-for"):
            self.mergedForwardingFields += 1
        case 16 where bytes.equalsIgnoringCase(name, "proxy-connection"):
            self.connectionFields += 1
        case 17 where bytes.equalsIgnoringCase(name, "transfer-encoding"):
            bytes.forEachElement(of: field.value) { coding in
                self.transferCodings += 1
                self.lastCodingIsChunked = bytes.equalsIgnoringCase(coding, "chunked")
            }
        case 17 where bytes.equalsIgnoringCase(name, "x-forwarded-proto"):
            self.hasForwardedProto = true
        default:
            break
        }
    }

    /// Whether the start line and fields can travel as the bytes received: none of them is the
    /// connection's own, and every line already ends with CRLF.
    var fieldsPassWhole: Bool { self.connectionFields == 0 && !self.bareLineFeeds }

    /// The start line's three parts, split at its first two spaces (the third may hold spaces:
    /// a reason phrase); nil when there are fewer than two.
    func startLineParts(in bytes: UnsafeRawBufferPointer) -> (Range<Int>, Range<Int>, Range<Int>)? {
        let line = self.startLine
        guard let firstSpace = bytes.firstIndex(of: 32, in: line),
            let secondSpace = bytes.firstIndex(of: 32, in: (firstSpace + 1)..<line.upperBound)
        else { return nil }
        return (line.lowerBound..<firstSpace, (firstSpace + 1)..<secondSpace, (secondSpace + 1)..<line.upperBound)
    }

    /// The `Connection` tokens that name other fields, lowercased. Only the rare head that has
    /// such a token pays for these Strings.
    func fieldsNamedByConnection(in bytes: UnsafeRawBufferPointer) -> [String] {
        guard self.connection.namesFields else { return [] }
        var names: [String] = []
        bytes.forEachField(from: self.fieldsStart, to: self.fieldsEnd) { field in
            guard bytes.equalsIgnoringCase(field.name, "connection") else { return }
            bytes.forEachElement(of: field.value) { names.append(bytes.string(in: $0).lowercased()) }
        }
        return names
    }

    /// The connection's own header lines (RFC 9110 §7.6.1): `Connection`, the fields it names,
    /// `Keep-Alive` and `Proxy-Connection`.
    func isHopByHop(_ field: HeaderField, in bytes: UnsafeRawBufferPointer, namedByConnection: [String]) -> Bool {
        let name = field.name
        if bytes.equalsIgnoringCase(name, "connection") || bytes.equalsIgnoringCase(name, "keep-alive")
            || bytes.equalsIgnoringCase(name, "proxy-connection")
        {
            return true
        }
        guard !namedByConnection.isEmpty else { return false }
        // Never drop the framing because a sender listed it: it travels with the bytes.
        if bytes.equalsIgnoringCase(name, "transfer-encoding") || bytes.equalsIgnoringCase(name, "content-length") { return false }
        return namedByConnection.contains(bytes.string(in: name).lowercased())
    }

    /// The start line and CRLF, written to `output`.
    func appendStartLine(from bytes: UnsafeRawBufferPointer, to output: inout [UInt8]) {
        output.append(contentsOf: bytes.slice(self.startLine))
        output.append(contentsOf: HTTPFraming.crlf)
    }
}

/// One line of a head as `forEachHeadLine` finds it.
struct HeadLine {
    /// The line without its line ending.
    var content: Range<Int>
    /// Where the next line starts.
    var next: Int
    var endsWithBareLineFeed: Bool
    var start: Int { self.content.lowerBound }
}

extension HeaderField {
    /// Splits and checks one field line.
    init(validating line: Range<Int>, in bytes: UnsafeRawBufferPointer) throws(HTTPFraming.Refusal) {
        // obs-fold (a line that continues the previous one) is refused, as RFC 9112 allows.
        guard bytes[line.lowerBound] != 32, bytes[line.lowerBound] != 9,
            let colon = bytes.firstIndex(of: 58, in: line), colon > line.lowerBound
        else { throw HTTPFraming.Refusal(status: 400, reason: "malformed header line") }
        for index in line.lowerBound..<colon where !HTTPFraming.isTokenByte(bytes[index]) {
            throw HTTPFraming.Refusal(status: 400, reason: "malformed header name")
        }
        self.init(splitting: line, at: colon, in: bytes)
        for index in self.value where bytes[index] == 0 || bytes[index] == HTTPFraming.cr {
            throw HTTPFraming.Refusal(status: 400, reason: "a header value holds a control character")
        }
    }

    /// A line already checked: name before the colon, value after it without the whitespace around.
    init(splitting line: Range<Int>, at colon: Int, in bytes: UnsafeRawBufferPointer) {
        var valueStart = colon + 1
        var valueEnd = line.upperBound
        while valueStart < valueEnd, bytes[valueStart] == 32 || bytes[valueStart] == 9 { valueStart += 1 }
        while valueEnd > valueStart, bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9 { valueEnd -= 1 }
        self.init(line: line, name: line.lowerBound..<colon, value: valueStart..<valueEnd)
    }
}

/// Reading heads in place.
extension UnsafeRawBufferPointer {
    /// Calls `body` with each line from `start` up to the blank line that ends the head, and
    /// returns the blank line (or, if there is none, an empty line at the end).
    @discardableResult
    func forEachHeadLine<E: Error>(from start: Int, _ body: (HeadLine) throws(E) -> Void) throws(E) -> HeadLine {
        var lineStart = start
        var index = start
        while index < self.count {
            if self[index] == HTTPFraming.lf {
                var end = index
                let crlf = end > lineStart && self[end - 1] == HTTPFraming.cr
                if crlf { end -= 1 }
                let line = HeadLine(content: lineStart..<end, next: index + 1, endsWithBareLineFeed: !crlf)
                if end == lineStart { return line }
                try body(line)
                lineStart = index + 1
            }
            index += 1
        }
        return HeadLine(content: lineStart..<lineStart, next: lineStart, endsWithBareLineFeed: false)
    }

    /// Calls `body` with each field of the lines between `start` and `end` (a head already read).
    func forEachField(from start: Int, to end: Int, _ body: (HeaderField) -> Void) {
        let fields = UnsafeRawBufferPointer(rebasing: self[..<end])
        fields.forEachHeadLine(from: start) { line in
            guard let colon = self.firstIndex(of: 58, in: line.content) else { return }
            body(HeaderField(splitting: line.content, at: colon, in: self))
        }
    }

    /// Calls `body` with each element of a comma-separated value, trimmed, empty ones skipped.
    func forEachElement(of value: Range<Int>, _ body: (Range<Int>) -> Void) {
        var start = value.lowerBound
        while start <= value.upperBound {
            var end = start
            while end < value.upperBound, self[end] != 44 { end += 1 }  // ','
            var first = start
            var last = end
            while first < last, self[first] == 32 || self[first] == 9 { first += 1 }
            while last > first, self[last - 1] == 32 || self[last - 1] == 9 { last -= 1 }
            if first < last { body(first..<last) }
            start = end + 1
        }
    }

    /// Each number of a `Content-Length` value (a list such as `5, 5` is allowed if they agree).
    func forEachContentLength(
        in value: Range<Int>, refusing status: Int, _ each: (UInt64) throws(HTTPFraming.Refusal) -> Void
    ) throws(HTTPFraming.Refusal) {
        let malformed = HTTPFraming.Refusal(status: status, reason: "malformed Content-Length")
        var index = value.lowerBound
        while true {
            while index < value.upperBound, self[index] == 32 || self[index] == 9 { index += 1 }
            var number: UInt64 = 0
            var digits = 0
            while index < value.upperBound, case let byte = self[index], byte >= 48 && byte <= 57 {
                let (times10, overflowA) = number.multipliedReportingOverflow(by: 10)
                let (sum, overflowB) = times10.addingReportingOverflow(UInt64(byte - 48))
                guard !overflowA, !overflowB else { throw malformed }
                number = sum
                digits += 1
                index += 1
            }
            while index < value.upperBound, self[index] == 32 || self[index] == 9 { index += 1 }
            guard digits > 0 else { throw malformed }
            try each(number)
            if index == value.upperBound { return }
            guard self[index] == 44 else { throw malformed }  // ','
            index += 1
        }
    }

    /// Whether the bytes in `range` are `lowercased` (ASCII, case-insensitive).
    func equalsIgnoringCase(_ range: Range<Int>, _ lowercased: StaticString) -> Bool {
        let count = range.count
        guard count == lowercased.utf8CodeUnitCount else { return false }
        let expected = lowercased.utf8Start
        var offset = 0
        while offset < count {
            var byte = self[range.lowerBound + offset]
            if byte >= 65 && byte <= 90 { byte |= 0x20 }
            if byte != expected[offset] { return false }
            offset += 1
        }
        return true
    }

    func firstIndex(of byte: UInt8, in range: Range<Int>) -> Int? {
        var index = range.lowerBound
        while index < range.upperBound {
            if self[index] == byte { return index }
            index += 1
        }
        return nil
    }

    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self[range])
    }

    func string(in range: Range<Int>) -> String {
        String(decoding: self.slice(range), as: UTF8.self)
    }
}

extension HTTPFraming {
    static let crlf: [UInt8] = [cr, lf]

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }
}

/// HTTP-version of a start line.
public struct HTTPVersionNumber: Equatable, Sendable, Comparable {
    public var major: Int
    public var minor: Int

    public static let http1_0 = HTTPVersionNumber(major: 1, minor: 0)
    public static let http1_1 = HTTPVersionNumber(major: 1, minor: 1)

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }

    /// Parses `HTTP/1.1`.
    init?(_ bytes: UnsafeRawBufferPointer) {
        // "HTTP/", byte by byte: a generic `starts(with:)` costs more than the rest of a head.
        guard bytes.count == 8, bytes[0] == 72, bytes[1] == 84, bytes[2] == 84, bytes[3] == 80, bytes[4] == 47 else { return nil }
        let major = bytes[5]
        let dot = bytes[6]
        let minor = bytes[7]
        guard (48...57).contains(major), dot == 46, (48...57).contains(minor) else { return nil }
        self.major = Int(major - 48)
        self.minor = Int(minor - 48)
    }

    init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
}

/// A request head as the client sent it, and what the proxy needs to know about it. It holds no
/// bytes: it is read where the head lies, and `forwarded` is given the same bytes again.
public struct RequestHead: Equatable, Sendable {
    public var method: String
    public var version: HTTPVersionNumber
    public var body: HTTPFraming.BodyFraming
    /// The client keeps its connection after this request (HTTP/1.1 without `Connection: close`,
    /// or HTTP/1.0 with `Connection: keep-alive`).
    public var keepAlive: Bool
    /// `Connection: upgrade` with an `Upgrade` field: after a 101 the connection is a tunnel.
    public var isUpgrade: Bool
    /// `Expect: 100-continue`: the client waits for a 100 (or a final answer) before the body.
    public var expectsContinue: Bool
    let summary: HeadSummary

    /// Where the value of `Host` is in the head, if there is one.
    public var hostRange: Range<Int>? { self.summary.host }

    /// Reads a whole head (its blank line included).
    public init(_ bytes: UnsafeRawBufferPointer) throws(HTTPFraming.Refusal) {
        let summary = try HeadSummary(bytes, refusing: 400)
        self.summary = summary
        // method SP request-target SP HTTP-version
        guard let (method, target, versionText) = summary.startLineParts(in: bytes), !method.isEmpty, !target.isEmpty,
            method.allSatisfy({ HTTPFraming.isTokenByte(bytes[$0]) }), target.allSatisfy({ bytes[$0] > 32 && bytes[$0] != 127 }),
            let version = HTTPVersionNumber(bytes.slice(versionText)), version.major == 1
        else { throw HTTPFraming.Refusal(status: 400, reason: "malformed request line") }
        self.method = bytes.string(in: method)
        self.version = version

        let connection = summary.connection
        self.keepAlive = version >= .http1_1 ? !connection.close : connection.keepAlive
        self.isUpgrade = connection.upgrade && summary.hasUpgrade
        self.expectsContinue = summary.expectsContinue

        // RFC 9112 §6.3: a request with both is an attack vector (smuggling); refuse it.
        if summary.transferCodings > 0 {
            guard summary.contentLength == nil else {
                throw HTTPFraming.Refusal(status: 400, reason: "both Content-Length and Transfer-Encoding")
            }
            guard summary.lastCodingIsChunked, version >= .http1_1 else {
                throw HTTPFraming.Refusal(status: 400, reason: "a request body must end with chunked transfer coding")
            }
            self.body = .chunked
        } else if let length = summary.contentLength, length > 0 {
            self.body = .length(length)
        } else {
            self.body = .none
        }
        if version == .http1_1, summary.hosts != 1 {
            throw HTTPFraming.Refusal(status: 400, reason: "an HTTP/1.1 request needs exactly one Host")
        }
    }

    public init(_ bytes: [UInt8]) throws(HTTPFraming.Refusal) {
        // Array's `withUnsafeBytes` rethrows untyped: the result carries the refusal out.
        self = try bytes.withUnsafeBytes { raw in Result { () throws(HTTPFraming.Refusal) in try RequestHead(raw) } }.get()
    }

    /// The head to send upstream, written to `output` (emptied first): the client's bytes (`bytes`,
    /// the head this was read from) with the connection's own fields taken out (an upgrade keeps
    /// `Upgrade` and says `Connection: upgrade`), and the forwarding fields added when
    /// `forwarding` is given. `droppingConditions`: `If-None-Match` and `If-Modified-Since` go
    /// too. A head with nothing to take out is copied whole.
    public func forwarded(
        from bytes: UnsafeRawBufferPointer, _ forwarding: ForwardingFields?, droppingConditions: Bool = false, into output: inout [UInt8]
    ) {
        let summary = self.summary
        output.removeAll(keepingCapacity: true)
        output.reserveCapacity(bytes.count + 160)
        // The values of earlier hops' X-Forwarded-For and Forwarded fields, merged into the proxy's.
        var forwardedFor: [Range<Int>] = []
        var forwardedElements: [Range<Int>] = []
        let merges = forwarding != nil && summary.mergedForwardingFields > 0
        if summary.fieldsPassWhole, !summary.hasUpgrade, !merges, !droppingConditions {
            output.append(contentsOf: bytes.slice(0..<summary.fieldsEnd))
        } else {
            let namedByConnection = summary.fieldsNamedByConnection(in: bytes)
            summary.appendStartLine(from: bytes, to: &output)
            bytes.forEachField(from: summary.fieldsStart, to: summary.fieldsEnd) { field in
                if bytes.equalsIgnoringCase(field.name, "upgrade") {
                    if !self.isUpgrade { return }
                } else if summary.isHopByHop(field, in: bytes, namedByConnection: namedByConnection) {
                    return
                }
                if droppingConditions,
                    bytes.equalsIgnoringCase(field.name, "if-none-match") || bytes.equalsIgnoringCase(field.name, "if-modified-since")
                {
                    return
                }
                if forwarding != nil {
                    if bytes.equalsIgnoringCase(field.name, "x-forwarded-for") {
                        forwardedFor.append(field.value)
                        return
                    }
                    if bytes.equalsIgnoringCase(field.name, "forwarded") {
                        forwardedElements.append(field.value)
                        return
                    }
                }
                output.append(contentsOf: bytes.slice(field.line))
                output.append(contentsOf: HTTPFraming.crlf)
            }
        }
        if self.isUpgrade { output.append(contentsOf: "Connection: upgrade\r\n".utf8) }
        if let forwarding, forwardedFor.isEmpty, forwardedElements.isEmpty, !summary.hasForwardedProto {
            // The usual request: the proxy's fields as made for the connection, then the host.
            output.append(contentsOf: forwarding.fieldsBeforeHost)
            forwarding.appendHost(summary.host.map { bytes.slice($0) }, to: &output)
            output.append(contentsOf: HTTPFraming.crlf)
        } else if let forwarding {
            // X-Forwarded-For: the earlier hops' addresses, then the client's.
            output.append(contentsOf: "X-Forwarded-For: ".utf8)
            for value in forwardedFor where !value.isEmpty {
                output.append(contentsOf: bytes.slice(value))
                output.append(contentsOf: [44, 32])
            }
            output.append(contentsOf: forwarding.clientAddress.utf8)
            output.append(contentsOf: HTTPFraming.crlf)
            if !summary.hasForwardedProto { output.append(contentsOf: forwarding.protoField) }
            output.append(contentsOf: "Forwarded: ".utf8)
            for value in forwardedElements where !value.isEmpty {
                output.append(contentsOf: bytes.slice(value))
                output.append(contentsOf: [44, 32])
            }
            forwarding.appendElement(host: summary.host.map { bytes.slice($0) }, to: &output)
            output.append(contentsOf: HTTPFraming.crlf)
        }
        output.append(contentsOf: HTTPFraming.crlf)
    }

    public func forwarded(from bytes: [UInt8], _ forwarding: ForwardingFields?, droppingConditions: Bool = false) -> [UInt8] {
        var output: [UInt8] = []
        bytes.withUnsafeBytes { self.forwarded(from: $0, forwarding, droppingConditions: droppingConditions, into: &output) }
        return output
    }
}

/// What the proxy adds to a request about the hop it saw: `X-Forwarded-For`,
/// `X-Forwarded-Proto` (unless a hop before set it) and RFC 7239 `Forwarded`. Made once per
/// client connection, so each request only copies bytes.
public struct ForwardingFields: Equatable, Sendable {
    public let clientAddress: String
    public let proto: String
    /// `X-Forwarded-Proto: http` and its line ending.
    let protoField: [UInt8]
    /// `for=192.0.2.1;proto=http` (an IPv6 address quoted and bracketed, as RFC 7239 §6 requires).
    let forwardedElement: [UInt8]

    /// All three fields for a request that brought none of its own, up to where the host goes.
    let fieldsBeforeHost: [UInt8]

    public init(clientAddress: String, proto: String = "http") {
        self.clientAddress = clientAddress
        self.proto = proto
        self.protoField = Array("X-Forwarded-Proto: \(proto)\r\n".utf8)
        let node = clientAddress.utf8.contains(UInt8(ascii: ":")) ? "\"[\(clientAddress)]\"" : clientAddress
        self.forwardedElement = Array("for=\(node);proto=\(proto)".utf8)
        self.fieldsBeforeHost = Array("X-Forwarded-For: \(clientAddress)\r\n".utf8) + self.protoField + Array("Forwarded: ".utf8)
            + self.forwardedElement
    }

    /// One `Forwarded` element, with `host` when the request named one that can be quoted.
    func appendElement(host: UnsafeRawBufferPointer?, to output: inout [UInt8]) {
        output.append(contentsOf: self.forwardedElement)
        self.appendHost(host, to: &output)
    }

    /// `;host="…"` when the request named a host that can be quoted.
    func appendHost(_ host: UnsafeRawBufferPointer?, to output: inout [UInt8]) {
        if let host, host.allSatisfy({ $0 >= 32 && $0 < 127 && $0 != 34 && $0 != 92 }) {
            output.append(contentsOf: ";host=\"".utf8)
            output.append(contentsOf: host)
            output.append(34)
        }
    }
}

/// A response head as the server sent it. Like `RequestHead`, it holds no bytes.
public struct ResponseHead: Equatable, Sendable {
    public var version: HTTPVersionNumber
    public var status: Int
    /// How the body is framed, given the request it answers.
    public var body: HTTPFraming.BodyFraming
    /// The server keeps the connection open after this response.
    public var keepAlive: Bool
    let summary: HeadSummary

    /// Reads a whole head answering a request with `requestMethod`.
    public init(_ bytes: UnsafeRawBufferPointer, requestMethod: String) throws(HTTPFraming.Refusal) {
        let summary = try HeadSummary(bytes, refusing: 502)
        self.summary = summary
        // HTTP-version SP status-code SP [reason-phrase] (some servers leave out the last space)
        let line = summary.startLine
        let parts = summary.startLineParts(in: bytes) ?? {
            let space = bytes.firstIndex(of: 32, in: line) ?? line.upperBound
            return (line.lowerBound..<space, min(space + 1, line.upperBound)..<line.upperBound, line.upperBound..<line.upperBound)
        }()
        let code = parts.1
        guard let version = HTTPVersionNumber(bytes.slice(parts.0)), version.major == 1, code.count == 3,
            code.allSatisfy({ bytes[$0] >= 48 && bytes[$0] <= 57 })
        else { throw HTTPFraming.Refusal(status: 502, reason: "malformed status line") }
        let status = code.reduce(0) { $0 * 10 + Int(bytes[$1] - 48) }
        self.version = version
        self.status = status
        let connection = summary.connection
        self.keepAlive = version >= .http1_1 ? !connection.close : connection.keepAlive

        // RFC 9112 §6.3, in its order.
        if requestMethod == "HEAD" || (100..<200).contains(status) || status == 204 || status == 304 {
            self.body = .none
        } else if requestMethod == "CONNECT" && (200..<300).contains(status) {
            self.body = .untilClose
        } else if summary.transferCodings > 0 {
            self.body = summary.lastCodingIsChunked ? .chunked : .untilClose
        } else if let length = summary.contentLength {
            self.body = length == 0 ? .none : .length(length)
        } else {
            self.body = .untilClose
        }
        if self.body == .untilClose { self.keepAlive = false }
    }

    public init(_ bytes: [UInt8], requestMethod: String) throws(HTTPFraming.Refusal) {
        self = try bytes.withUnsafeBytes { raw in
            Result { () throws(HTTPFraming.Refusal) in try ResponseHead(raw, requestMethod: requestMethod) }
        }.get()
    }

    /// 1xx other than 101: an interim answer, the final one follows on the same connection.
    public var isInterim: Bool { (100..<200).contains(self.status) && self.status != 101 }

    /// Whether the head reaches the client exactly as the server sent it: it has none of the
    /// connection's own fields, and the client's connection needs no word (an HTTP/1.1 client
    /// that keeps it). The usual answer does, and goes on without being copied.
    public func passesUnchanged(clientKeepsConnection: Bool, clientVersion: HTTPVersionNumber, dechunking: Bool) -> Bool {
        if self.status == 101 { return true }
        guard self.summary.fieldsPassWhole, !dechunking else { return false }
        return self.isInterim || (clientKeepsConnection && clientVersion >= .http1_1)
    }

    /// The head to send the client, written to `output` (emptied first): the server's bytes
    /// without the connection's own fields, then `Connection: close` when the client's connection
    /// ends after it (or `Connection: keep-alive` for an HTTP/1.0 client that stays). With
    /// `dechunking`, `Transfer-Encoding` goes too (the body is sent de-chunked to an HTTP/1.0 client).
    public func forwarded(
        from bytes: UnsafeRawBufferPointer, clientKeepsConnection: Bool, clientVersion: HTTPVersionNumber, dechunking: Bool,
        into output: inout [UInt8]
    ) {
        output.removeAll(keepingCapacity: true)
        // A 101 is the server's agreement to switch: its Connection and Upgrade fields go as they are.
        if self.status == 101 {
            output.append(contentsOf: bytes)
            return
        }
        let summary = self.summary
        output.reserveCapacity(bytes.count + 32)
        if summary.fieldsPassWhole, !dechunking {
            output.append(contentsOf: bytes.slice(0..<summary.fieldsEnd))
        } else {
            let namedByConnection = summary.fieldsNamedByConnection(in: bytes)
            summary.appendStartLine(from: bytes, to: &output)
            bytes.forEachField(from: summary.fieldsStart, to: summary.fieldsEnd) { field in
                if summary.isHopByHop(field, in: bytes, namedByConnection: namedByConnection) { return }
                if dechunking && bytes.equalsIgnoringCase(field.name, "transfer-encoding") { return }
                output.append(contentsOf: bytes.slice(field.line))
                output.append(contentsOf: HTTPFraming.crlf)
            }
        }
        if self.isInterim {
            // Nothing to say about the connection in an interim answer.
        } else if !clientKeepsConnection {
            output.append(contentsOf: "Connection: close\r\n".utf8)
        } else if clientVersion < .http1_1 {
            output.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        output.append(contentsOf: HTTPFraming.crlf)
    }

    public func forwarded(from bytes: [UInt8], clientKeepsConnection: Bool, clientVersion: HTTPVersionNumber, dechunking: Bool) -> [UInt8] {
        var output: [UInt8] = []
        bytes.withUnsafeBytes {
            self.forwarded(
                from: $0, clientKeepsConnection: clientKeepsConnection, clientVersion: clientVersion, dechunking: dechunking,
                into: &output)
        }
        return output
    }
}

/// Follows a chunked body byte by byte (chunk sizes, extensions, data, trailers) to find where it
/// ends, and which of its bytes are data (for a client that cannot take chunked coding).
public struct ChunkedBodyScanner: Equatable, Sendable {
    private enum State: Equatable, Sendable {
        case size(UInt64, digits: Int)
        case extensions(UInt64)
        case sizeLineEnd(UInt64)
        case data(UInt64)
        case dataCR
        case dataLF
        /// At the start of a trailer line (or the final blank line); `empty` until a byte of it arrived.
        case trailerLineStart
        case trailerLine
        case finalLF
        case done
    }

    private var state = State.size(0, digits: 0)

    public init() {}

    public var isDone: Bool { self.state == .done }

    /// Consumes bytes from the start of `bytes` until the body ends or they run out; `data` gets
    /// the ranges (of `bytes`' indices) that are chunk data. Returns how many bytes belong to the
    /// body, or a refusal for malformed framing.
    public mutating func scan(
        _ bytes: UnsafeRawBufferPointer, data: (Range<Int>) -> Void = { _ in }
    ) throws(HTTPFraming.Refusal) -> Int {
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            switch self.state {
            case .size(let size, let digits):
                if let digit = Self.hexValue(byte) {
                    guard digits < 15 else { throw Self.malformed("chunk size too large") }
                    self.state = .size(size << 4 | UInt64(digit), digits: digits + 1)
                } else if digits > 0 && (byte == 59 || byte == 32 || byte == 9) {  // ';' or whitespace
                    self.state = .extensions(size)
                } else if digits > 0 && byte == HTTPFraming.cr {
                    self.state = .sizeLineEnd(size)
                } else if digits > 0 && byte == HTTPFraming.lf {
                    self.state = size == 0 ? .trailerLineStart : .data(size)
                } else {
                    throw Self.malformed("malformed chunk size")
                }
                index += 1
            case .extensions(let size):
                if byte == HTTPFraming.lf {
                    self.state = size == 0 ? .trailerLineStart : .data(size)
                } else if byte == HTTPFraming.cr {
                    self.state = .sizeLineEnd(size)
                }
                index += 1
            case .sizeLineEnd(let size):
                guard byte == HTTPFraming.lf else { throw Self.malformed("malformed chunk size line") }
                self.state = size == 0 ? .trailerLineStart : .data(size)
                index += 1
            case .data(let left):
                let take = Int(min(UInt64(count - index), left))
                data(index..<index + take)
                index += take
                self.state = left == UInt64(take) ? .dataCR : .data(left - UInt64(take))
            case .dataCR:
                if byte == HTTPFraming.cr {
                    self.state = .dataLF
                } else if byte == HTTPFraming.lf {
                    self.state = .size(0, digits: 0)
                } else {
                    throw Self.malformed("chunk data longer than its size")
                }
                index += 1
            case .dataLF:
                guard byte == HTTPFraming.lf else { throw Self.malformed("chunk data longer than its size") }
                self.state = .size(0, digits: 0)
                index += 1
            case .trailerLineStart:
                if byte == HTTPFraming.cr {
                    self.state = .finalLF
                } else if byte == HTTPFraming.lf {
                    self.state = .done
                    return index + 1
                } else {
                    self.state = .trailerLine
                }
                index += 1
            case .trailerLine:
                if byte == HTTPFraming.lf { self.state = .trailerLineStart }
                index += 1
            case .finalLF:
                guard byte == HTTPFraming.lf else { throw Self.malformed("malformed end of chunked body") }
                self.state = .done
                return index + 1
            case .done:
                return index
            }
        }
        return index
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 48...57: byte - 48
        case 65...70: byte - 55
        case 97...102: byte - 87
        default: nil
        }
    }

    private static func malformed(_ reason: String) -> HTTPFraming.Refusal {
        HTTPFraming.Refusal(status: 400, reason: reason)
    }
}
