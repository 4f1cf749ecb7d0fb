/// The little of HTTP/1.x the proxy needs to read: where a head ends, how the body after it is
/// framed, and which header lines are the connection's own (hop-by-hop). Everything else passes
/// through as the bytes received, so no header value is ever decoded, re-encoded or reordered.
///
/// Pure: heads are byte arrays, results are values; the proxy's channel handlers do the I/O.
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
        var index = max(0, searchedBefore - 3)
        let count = bytes.count
        while index < count {
            if bytes[index] == lf {
                // LF LF (a bare-LF client) or LF CR LF ends the head.
                if index + 1 < count, bytes[index + 1] == lf { return checked(index + 2) }
                if index + 2 < count, bytes[index + 1] == cr, bytes[index + 2] == lf { return checked(index + 3) }
            }
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

/// The parts of a head common to requests and responses.
public struct HeadLines: Equatable, Sendable {
    public var bytes: [UInt8]
    /// The start line without its line ending.
    public var startLine: Range<Int>
    public var fields: [HeaderField]

    /// Splits `bytes` (a whole head, its blank line included) into the start line and fields.
    init(_ bytes: [UInt8]) throws(HTTPFraming.Refusal) {
        self.bytes = bytes
        self.startLine = 0..<0
        self.fields = []
        self.fields.reserveCapacity(16)
        var start = 0
        var index = 0
        var first = true
        while index < bytes.count {
            if bytes[index] == HTTPFraming.lf {
                var end = index
                if end > start, bytes[end - 1] == HTTPFraming.cr { end -= 1 }
                if end == start { break }  // the blank line
                if first {
                    self.startLine = start..<end
                    first = false
                } else {
                    self.fields.append(try Self.field(start..<end, in: bytes))
                }
                start = index + 1
            }
            index += 1
        }
        if first { throw HTTPFraming.Refusal(status: 400, reason: "empty head") }
    }

    private static func field(_ line: Range<Int>, in bytes: [UInt8]) throws(HTTPFraming.Refusal) -> HeaderField {
        // obs-fold (a line that continues the previous one) is refused, as RFC 9112 allows.
        guard bytes[line.lowerBound] != 32, bytes[line.lowerBound] != 9,
            let colon = bytes[line].firstIndex(of: 58), colon > line.lowerBound
        else { throw HTTPFraming.Refusal(status: 400, reason: "malformed header line") }
        for byte in bytes[line.lowerBound..<colon] where !Self.isTokenByte(byte) {
            throw HTTPFraming.Refusal(status: 400, reason: "malformed header name")
        }
        var valueStart = colon + 1
        var valueEnd = line.upperBound
        while valueStart < valueEnd, bytes[valueStart] == 32 || bytes[valueStart] == 9 { valueStart += 1 }
        while valueEnd > valueStart, bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9 { valueEnd -= 1 }
        for byte in bytes[valueStart..<valueEnd] where byte == 0 || byte == HTTPFraming.cr || byte == HTTPFraming.lf {
            throw HTTPFraming.Refusal(status: 400, reason: "a header value holds a control character")
        }
        return HeaderField(line: line, name: line.lowerBound..<colon, value: valueStart..<valueEnd)
    }

    /// The start line's three parts, split at its first two spaces (the third may hold spaces:
    /// a reason phrase); nil when there are fewer than two.
    func startLineParts() -> (Range<Int>, Range<Int>, Range<Int>)? {
        let line = self.startLine
        guard let firstSpace = self.bytes[line].firstIndex(of: 32),
            let secondSpace = self.bytes[(firstSpace + 1)..<line.upperBound].firstIndex(of: 32)
        else { return nil }
        return (line.lowerBound..<firstSpace, (firstSpace + 1)..<secondSpace, (secondSpace + 1)..<line.upperBound)
    }

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

    /// Whether the field's name is `lowercased` (ASCII, case-insensitive).
    public func name(of field: HeaderField, is lowercased: StaticString) -> Bool {
        let count = field.name.count
        guard count == lowercased.utf8CodeUnitCount else { return false }
        let expected = lowercased.utf8Start
        var offset = 0
        while offset < count {
            var byte = self.bytes[field.name.lowerBound + offset]
            if byte >= 65 && byte <= 90 { byte |= 0x20 }
            if byte != expected[offset] { return false }
            offset += 1
        }
        return true
    }

    public func string(_ range: Range<Int>) -> String {
        String(decoding: self.bytes[range], as: UTF8.self)
    }

    /// What the framing depends on, found in one pass over the fields. Only the few fields it
    /// reads are decoded; the rest are compared by length and bytes, with no allocation.
    struct Summary {
        var connectionTokens: [String] = []
        var transferCodings: [String] = []
        var contentLength: UInt64?
        var hosts = 0
        var host: Range<Int>?
        var hasUpgrade = false
        var expectsContinue = false
    }

    func summary(refusing status: Int) throws(HTTPFraming.Refusal) -> Summary {
        var summary = Summary()
        for field in self.fields {
            switch field.name.count {
            case 4 where self.name(of: field, is: "host"):
                summary.hosts += 1
                summary.host = field.value
            case 6 where self.name(of: field, is: "expect"):
                if self.string(field.value).lowercased() == "100-continue" { summary.expectsContinue = true }
            case 7 where self.name(of: field, is: "upgrade"):
                summary.hasUpgrade = true
            case 10 where self.name(of: field, is: "connection"):
                summary.connectionTokens += self.elements(field.value)
            case 14 where self.name(of: field, is: "content-length"):
                try self.contentLengths(field.value, refusing: status) { parsed throws(HTTPFraming.Refusal) in
                    if let length = summary.contentLength, length != parsed {
                        throw HTTPFraming.Refusal(status: status, reason: "conflicting Content-Length values")
                    }
                    summary.contentLength = parsed
                }
            case 17 where self.name(of: field, is: "transfer-encoding"):
                summary.transferCodings += self.elements(field.value)
            default:
                break
            }
        }
        return summary
    }

    /// Each number of a `Content-Length` value (a list such as `5, 5` is allowed if they agree),
    /// read from the bytes: every response carries one, so no String is made for it.
    private func contentLengths(
        _ value: Range<Int>, refusing status: Int, _ each: (UInt64) throws(HTTPFraming.Refusal) -> Void
    ) throws(HTTPFraming.Refusal) {
        let malformed = HTTPFraming.Refusal(status: status, reason: "malformed Content-Length")
        var index = value.lowerBound
        while true {
            while index < value.upperBound, self.bytes[index] == 32 || self.bytes[index] == 9 { index += 1 }
            var number: UInt64 = 0
            var digits = 0
            while index < value.upperBound, case let byte = self.bytes[index], byte >= 48 && byte <= 57 {
                let (times10, overflowA) = number.multipliedReportingOverflow(by: 10)
                let (sum, overflowB) = times10.addingReportingOverflow(UInt64(byte - 48))
                guard !overflowA, !overflowB else { throw malformed }
                number = sum
                digits += 1
                index += 1
            }
            while index < value.upperBound, self.bytes[index] == 32 || self.bytes[index] == 9 { index += 1 }
            guard digits > 0 else { throw malformed }
            try each(number)
            if index == value.upperBound { return }
            guard self.bytes[index] == 44 else { throw malformed }  // ','
            index += 1
        }
    }

    /// The comma-separated elements of a value, trimmed and lowercased.
    private func elements(_ value: Range<Int>) -> [String] {
        self.string(value).split(separator: ",").map { $0.trimmingWhitespace().lowercased() }.filter { !$0.isEmpty }
    }

    /// The connection's own header lines (RFC 9110 §7.6.1): `Connection`, the fields it names,
    /// `Keep-Alive` and `Proxy-Connection`.
    func isHopByHop(_ field: HeaderField, connectionTokens: [String]) -> Bool {
        if self.name(of: field, is: "connection") || self.name(of: field, is: "keep-alive")
            || self.name(of: field, is: "proxy-connection")
        {
            return true
        }
        // close, keep-alive and upgrade name no other field (Upgrade is the caller's to judge).
        guard connectionTokens.contains(where: { $0 != "close" && $0 != "keep-alive" && $0 != "upgrade" }) else { return false }
        let name = self.string(field.name).lowercased()
        // Never drop the framing because a sender listed it: it travels with the bytes.
        if name == "transfer-encoding" || name == "content-length" { return false }
        return connectionTokens.contains(name)
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
    init?(_ bytes: ArraySlice<UInt8>) {
        guard bytes.count == 8, bytes.starts(with: "HTTP/".utf8) else { return nil }
        let major = bytes[bytes.startIndex + 5]
        let dot = bytes[bytes.startIndex + 6]
        let minor = bytes[bytes.startIndex + 7]
        guard (48...57).contains(major), dot == 46, (48...57).contains(minor) else { return nil }
        self.major = Int(major - 48)
        self.minor = Int(minor - 48)
    }

    init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
}

/// A request head as the client sent it, and what the proxy needs to know about it.
public struct RequestHead: Equatable, Sendable {
    public var lines: HeadLines
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
    /// Where the value of `Host` is in the head, if there is one.
    let hostRange: Range<Int>?

    /// The value of `Host`, if any.
    public var host: String? { self.hostRange.map { self.lines.string($0) } }
    let connectionTokens: [String]

    /// Parses a whole head (its blank line included).
    public init(_ bytes: [UInt8]) throws(HTTPFraming.Refusal) {
        let lines = try HeadLines(bytes)
        self.lines = lines
        // method SP request-target SP HTTP-version
        guard let (method, target, versionText) = lines.startLineParts(), !method.isEmpty, !target.isEmpty,
            bytes[method].allSatisfy(HeadLines.isTokenByte), bytes[target].allSatisfy({ $0 > 32 && $0 != 127 }),
            let version = HTTPVersionNumber(bytes[versionText]), version.major == 1
        else { throw HTTPFraming.Refusal(status: 400, reason: "malformed request line") }
        self.method = String(decoding: bytes[method], as: UTF8.self)
        self.version = version

        let summary = try lines.summary(refusing: 400)
        let tokens = summary.connectionTokens
        self.connectionTokens = tokens
        self.keepAlive = version >= .http1_1 ? !tokens.contains("close") : tokens.contains("keep-alive")
        self.isUpgrade = tokens.contains("upgrade") && summary.hasUpgrade
        self.expectsContinue = summary.expectsContinue
        self.hostRange = summary.host

        // RFC 9112 §6.3: a request with both is an attack vector (smuggling); refuse it.
        let transferCodings = summary.transferCodings
        let length = summary.contentLength
        if !transferCodings.isEmpty {
            guard length == nil else {
                throw HTTPFraming.Refusal(status: 400, reason: "both Content-Length and Transfer-Encoding")
            }
            guard transferCodings.last == "chunked", version >= .http1_1 else {
                throw HTTPFraming.Refusal(status: 400, reason: "a request body must end with chunked transfer coding")
            }
            self.body = .chunked
        } else if let length, length > 0 {
            self.body = .length(length)
        } else {
            self.body = .none
        }
        if version == .http1_1, summary.hosts != 1 {
            throw HTTPFraming.Refusal(status: 400, reason: "an HTTP/1.1 request needs exactly one Host")
        }
    }

    /// The head to send upstream: the client's bytes with the connection's own fields taken out
    /// (an upgrade keeps `Upgrade` and says `Connection: upgrade`), and the forwarding fields
    /// added when `forwarding` is given.
    public func forwarded(_ forwarding: ForwardingFields?) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(self.lines.bytes.count + 128)
        let bytes = self.lines.bytes
        output.append(contentsOf: bytes[self.lines.startLine])
        output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
        var forwardedFor: [ArraySlice<UInt8>] = []
        var forwardedElements: [ArraySlice<UInt8>] = []
        var hasProto = false
        for field in self.lines.fields {
            if self.lines.name(of: field, is: "upgrade") {
                if !self.isUpgrade { continue }
            } else if self.lines.isHopByHop(field, connectionTokens: self.connectionTokens) {
                continue
            }
            if forwarding != nil {
                if self.lines.name(of: field, is: "x-forwarded-for") {
                    forwardedFor.append(bytes[field.value])
                    continue
                }
                if self.lines.name(of: field, is: "forwarded") {
                    forwardedElements.append(bytes[field.value])
                    continue
                }
                if self.lines.name(of: field, is: "x-forwarded-proto") { hasProto = true }
            }
            output.append(contentsOf: bytes[field.line])
            output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
        }
        if self.isUpgrade { output.append(contentsOf: "Connection: upgrade\r\n".utf8) }
        if let forwarding {
            // X-Forwarded-For: the earlier hops' addresses, then the client's.
            output.append(contentsOf: "X-Forwarded-For: ".utf8)
            for value in forwardedFor where !value.isEmpty {
                output.append(contentsOf: value)
                output.append(contentsOf: [44, 32])
            }
            output.append(contentsOf: forwarding.clientAddress.utf8)
            output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
            if !hasProto { output.append(contentsOf: forwarding.protoField) }
            output.append(contentsOf: "Forwarded: ".utf8)
            for value in forwardedElements where !value.isEmpty {
                output.append(contentsOf: value)
                output.append(contentsOf: [44, 32])
            }
            forwarding.appendElement(host: self.hostRange.map { bytes[$0] }, to: &output)
            output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
        }
        output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
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

    public init(clientAddress: String, proto: String = "http") {
        self.clientAddress = clientAddress
        self.proto = proto
        self.protoField = Array("X-Forwarded-Proto: \(proto)\r\n".utf8)
        let node = clientAddress.utf8.contains(UInt8(ascii: ":")) ? "\"[\(clientAddress)]\"" : clientAddress
        self.forwardedElement = Array("for=\(node);proto=\(proto)".utf8)
    }

    /// One `Forwarded` element, with `host` when the request named one that can be quoted.
    func appendElement(host: ArraySlice<UInt8>?, to output: inout [UInt8]) {
        output.append(contentsOf: self.forwardedElement)
        if let host, host.allSatisfy({ $0 >= 32 && $0 < 127 && $0 != 34 && $0 != 92 }) {
            output.append(contentsOf: ";host=\"".utf8)
            output.append(contentsOf: host)
            output.append(34)
        }
    }
}

/// A response head as the server sent it.
public struct ResponseHead: Equatable, Sendable {
    public var lines: HeadLines
    public var version: HTTPVersionNumber
    public var status: Int
    /// How the body is framed, given the request it answers.
    public var body: HTTPFraming.BodyFraming
    /// The server keeps the connection open after this response.
    public var keepAlive: Bool
    let connectionTokens: [String]

    /// Parses a whole head answering a request with `requestMethod`.
    public init(_ bytes: [UInt8], requestMethod: String) throws(HTTPFraming.Refusal) {
        let lines = try HeadLines(bytes)
        self.lines = lines
        // HTTP-version SP status-code SP [reason-phrase] (some servers leave out the last space)
        let line = lines.startLine
        let parts = lines.startLineParts() ?? {
            let space = bytes[line].firstIndex(of: 32) ?? line.upperBound
            return (line.lowerBound..<space, min(space + 1, line.upperBound)..<line.upperBound, line.upperBound..<line.upperBound)
        }()
        let code = bytes[parts.1]
        guard let version = HTTPVersionNumber(bytes[parts.0]), version.major == 1, code.count == 3,
            code.allSatisfy({ $0 >= 48 && $0 <= 57 })
        else { throw HTTPFraming.Refusal(status: 502, reason: "malformed status line") }
        let status = code.reduce(0) { $0 * 10 + Int($1 - 48) }
        self.version = version
        self.status = status
        let summary = try lines.summary(refusing: 502)
        let tokens = summary.connectionTokens
        self.connectionTokens = tokens
        self.keepAlive = version >= .http1_1 ? !tokens.contains("close") : tokens.contains("keep-alive")

        // RFC 9112 §6.3, in its order.
        let transferCodings = summary.transferCodings
        if requestMethod == "HEAD" || (100..<200).contains(status) || status == 204 || status == 304 {
            self.body = .none
        } else if requestMethod == "CONNECT" && (200..<300).contains(status) {
            self.body = .untilClose
        } else if !transferCodings.isEmpty {
            self.body = transferCodings.last == "chunked" ? .chunked : .untilClose
        } else if let length = summary.contentLength {
            self.body = length == 0 ? .none : .length(length)
        } else {
            self.body = .untilClose
        }
        if self.body == .untilClose { self.keepAlive = false }
    }

    /// 1xx other than 101: an interim answer, the final one follows on the same connection.
    public var isInterim: Bool { (100..<200).contains(self.status) && self.status != 101 }

    /// The head to send the client: the server's bytes without the connection's own fields, then
    /// `Connection: close` when the client's connection ends after it (or `Connection: keep-alive`
    /// for an HTTP/1.0 client that stays). With `dechunking`, `Transfer-Encoding` goes too (the
    /// body is sent de-chunked to an HTTP/1.0 client).
    public func forwarded(clientKeepsConnection: Bool, clientVersion: HTTPVersionNumber, dechunking: Bool) -> [UInt8] {
        // A 101 is the server's agreement to switch: its Connection and Upgrade fields go as they are.
        if self.status == 101 { return self.lines.bytes }
        var output: [UInt8] = []
        output.reserveCapacity(self.lines.bytes.count + 32)
        let bytes = self.lines.bytes
        output.append(contentsOf: bytes[self.lines.startLine])
        output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
        for field in self.lines.fields {
            if self.lines.isHopByHop(field, connectionTokens: self.connectionTokens) { continue }
            if dechunking && self.lines.name(of: field, is: "transfer-encoding") { continue }
            output.append(contentsOf: bytes[field.line])
            output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
        }
        if self.isInterim {
            // Nothing to say about the connection in an interim answer.
        } else if !clientKeepsConnection {
            output.append(contentsOf: "Connection: close\r\n".utf8)
        } else if clientVersion < .http1_1 {
            output.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        output.append(contentsOf: [HTTPFraming.cr, HTTPFraming.lf])
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
