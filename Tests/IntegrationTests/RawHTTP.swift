import Crypto
import Foundation
import Glibc
import Synchronization
import TestSupport

/// Exact bytes out, exact bytes in: the client of the proxy conformance tests. It frames responses
/// as RFC 9112 says a client must (no body after HEAD, 1xx, 204 or 304; chunked; Content-Length;
/// else to the close) and keeps every byte of the head, so a test can say what a user's client
/// would have seen. Blocking: run it off the concurrency pool (`offPool`), one thread at a time.
final class RawClient: @unchecked Sendable {
    private let fd: Int32
    /// Received and not yet consumed.
    private var buffer: [UInt8] = []
    /// The most one receive takes: a slow reader lowers it, so that it reads no faster than it means to.
    var receiveSize = 65536

    init(port: Int) throws {
        self.fd = try connectLoopback(port: port)
    }

    deinit { Glibc.close(self.fd) }

    func send(_ text: String) throws {
        try self.send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw RawHTTPError("send failed after \(offset) of \(bytes.count) bytes: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    /// The next response (a 1xx too), framed as a client must frame it after a `method` request;
    /// as an HTTP/1.0 client, which knows no Transfer-Encoding, if `http10`.
    func readResponse(method: String = "GET", http10: Bool = false, limit: Duration = .seconds(10)) throws -> RawResponse {
        let deadline = ContinuousClock.now + limit
        var response = try self.readHead(by: deadline)
        let framing = response.framing(after: method, http10: http10)
        var body: [UInt8] = []
        try self.readBody(framing, by: deadline, into: &response) { body += $0 }
        response.body = body
        return response
    }

    /// A response's head (status line through the empty line).
    func readHead(by deadline: ContinuousClock.Instant) throws -> RawResponse {
        while true {
            if let end = self.buffer.firstRange(of: [13, 10, 13, 10]) {
                let head = Array(self.buffer[..<end.upperBound])
                self.buffer.removeFirst(end.upperBound)
                return try RawResponse(head: head)
            }
            guard try self.receive(by: deadline, what: "a response head") else {
                throw RawHTTPError("the connection closed before a whole response head arrived; got \(printable(self.buffer))")
            }
        }
    }

    /// Reads the body `framing` says follows `response`'s head, handing each piece to `piece` as it
    /// arrives (trailers go into `response`).
    func readBody(
        _ framing: BodyFraming, by deadline: ContinuousClock.Instant, into response: inout RawResponse, piece: ([UInt8]) throws -> Void
    ) throws {
        switch framing {
        case .none:
            return
        case .length(var left):
            while left > 0 {
                if self.buffer.isEmpty, try !self.receive(by: deadline, what: "\(left) more bytes of the body") {
                    throw RawHTTPError("the connection closed with \(left) bytes of the body still to come")
                }
                let take = min(left, self.buffer.count)
                try piece(Array(self.buffer[..<take]))
                self.buffer.removeFirst(take)
                left -= take
            }
        case .untilClose:
            while true {
                if !self.buffer.isEmpty {
                    try piece(self.buffer)
                    self.buffer = []
                }
                guard try self.receive(by: deadline, what: "the body's end (the close)") else { return }
            }
        case .chunked:
            while true {
                let sizeLine = try self.readLine(by: deadline)
                let digits = String(decoding: sizeLine.prefix { $0 != 59 /* ; */ }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                guard let size = Int(digits, radix: 16) else { throw RawHTTPError("not a chunk size: \(printable(sizeLine))") }
                if size == 0 {
                    while true {
                        let line = try self.readLine(by: deadline)
                        if line.isEmpty { return }
                        response.trailers.append(try HeaderField(line: line))
                    }
                }
                var left = size
                while left > 0 {
                    if self.buffer.isEmpty, try !self.receive(by: deadline, what: "a chunk") {
                        throw RawHTTPError("the connection closed inside a chunk")
                    }
                    let take = min(left, self.buffer.count)
                    try piece(Array(self.buffer[..<take]))
                    self.buffer.removeFirst(take)
                    left -= take
                }
                guard try self.readLine(by: deadline).isEmpty else { throw RawHTTPError("a chunk not followed by CRLF") }
            }
        }
    }

    /// Whether the peer closes the connection (EOF or reset) within `limit`, with nothing more sent.
    func closes(within limit: Duration) -> CloseOutcome {
        let deadline = ContinuousClock.now + limit
        do {
            while try self.receive(by: deadline, what: "the close") {}
            return self.buffer.isEmpty ? .closed : .sentMore(printable(self.buffer))
        } catch let error as RawHTTPError where error.timedOut {
            return self.buffer.isEmpty ? .stillOpen : .sentMore(printable(self.buffer))
        } catch {
            return .closed  // reset
        }
    }

    enum CloseOutcome: Equatable, CustomStringConvertible {
        case closed
        case stillOpen
        case sentMore(String)
        var description: String {
            switch self {
            case .closed: return "closed"
            case .stillOpen: return "still open"
            case .sentMore(let bytes): return "sent more bytes: \(bytes)"
            }
        }
    }

    /// The next line, without its CRLF, as text (a tunnel's echo).
    func readLine(limit: Duration = .seconds(10)) throws -> String {
        String(decoding: try self.readLine(by: ContinuousClock.now + limit), as: UTF8.self)
    }

    /// Ends the connection now (the descriptor itself is closed when the client goes).
    func shutdown() {
        _ = Glibc.shutdown(self.fd, Int32(SHUT_RDWR))
    }

    private func readLine(by deadline: ContinuousClock.Instant) throws -> [UInt8] {
        while true {
            if let newline = self.buffer.firstIndex(of: 10) {
                let line = Array(self.buffer[..<newline])
                self.buffer.removeFirst(newline + 1)
                return line.last == 13 ? Array(line.dropLast()) : line
            }
            guard try self.receive(by: deadline, what: "a line") else { throw RawHTTPError("the connection closed inside a line") }
        }
    }

    /// One receive of at most `receiveSize` bytes into the buffer; false at the peer's close.
    private func receive(by deadline: ContinuousClock.Instant, what: String) throws -> Bool {
        while true {
            let left = deadline - ContinuousClock.now
            var descriptor = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = max(0, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                throw RawHTTPError("nothing more within the time allowed while waiting for \(what); got \(printable(self.buffer))", timedOut: true)
            }
            var chunk = [UInt8](repeating: 0, count: self.receiveSize)
            let count = recv(self.fd, &chunk, chunk.count, 0)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw RawHTTPError("receive failed while waiting for \(what): \(String(cString: strerror(errno))); got \(printable(self.buffer))")
            }
            if count == 0 { return false }
            self.buffer += chunk[..<count]
            return true
        }
    }
}

struct RawHTTPError: Error, CustomStringConvertible {
    var description: String
    var timedOut = false
    init(_ description: String, timedOut: Bool = false) {
        self.description = description
        self.timedOut = timedOut
    }
}

/// How a response's body is delimited (RFC 9112 §6.3).
enum BodyFraming: Equatable {
    case none
    case length(Int)
    case chunked
    case untilClose
}

struct HeaderField: Equatable, Sendable {
    /// Lower-cased.
    var name: String
    /// The value's exact bytes, without the whitespace around it.
    var value: [UInt8]

    init(line: [UInt8]) throws {
        guard let colon = line.firstIndex(of: 58) else { throw RawHTTPError("a header line without a colon: \(printable(line))") }
        self.name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
        var value = line[(colon + 1)...]
        while let first = value.first, first == 32 || first == 9 { value.removeFirst() }
        while let last = value.last, last == 32 || last == 9 { value.removeLast() }
        self.value = Array(value)
    }
}

/// A response as it arrived.
struct RawResponse: Sendable {
    /// Status line through the empty line, exactly.
    var head: [UInt8]
    var statusLine: String
    var version: String
    var status: Int
    var fields: [HeaderField]
    var body: [UInt8] = []
    var trailers: [HeaderField] = []

    init(head: [UInt8]) throws {
        self.head = head
        var lines = head.split(separator: 10, omittingEmptySubsequences: false).map { line in
            Array(line.last == 13 ? line.dropLast() : line)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        self.statusLine = String(decoding: lines.first ?? [], as: UTF8.self)
        let parts = self.statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { throw RawHTTPError("not a status line: \(printable(lines.first ?? []))") }
        self.version = String(parts[0])
        self.status = status
        self.fields = try lines.dropFirst().map(HeaderField.init(line:))
    }

    /// Every value of the field `name`, in order, as bytes.
    func values(_ name: String) -> [[UInt8]] {
        self.fields.filter { $0.name == name.lowercased() }.map(\.value)
    }

    /// The field's values joined as one list (RFC 9110 §5.3), as text; nil if absent.
    func value(_ name: String) -> String? {
        let values = self.values(name)
        return values.isEmpty ? nil : values.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ", ")
    }

    var text: String { String(decoding: self.body, as: UTF8.self) }

    func framing(after method: String, http10: Bool = false) -> BodyFraming {
        if method == "HEAD" || self.status < 200 || self.status == 204 || self.status == 304 { return .none }
        if !http10, let coding = self.value("transfer-encoding"), coding.lowercased().hasSuffix("chunked") { return .chunked }
        if let length = self.value("content-length").flatMap({ Int($0) }) { return .length(length) }
        return .untilClose
    }
}

/// Bytes as text a failure message can show: printable ASCII as is, the rest as \xNN.
func printable(_ bytes: some Collection<UInt8>, limit: Int = 600) -> String {
    var text = ""
    for byte in bytes.prefix(limit) {
        switch byte {
        case 13: text += "\\r"
        case 10: text += "\\n"
        case 32..<127: text.unicodeScalars.append(Unicode.Scalar(byte))
        default: text += String(format: "\\x%02X", byte)
        }
    }
    return bytes.count > limit ? text + "… (\(bytes.count) bytes)" : text
}

/// Runs blocking socket work on a thread of its own, so a slow peer never holds up the concurrency
/// pool the test's waits run on.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// `count` copies of `work` at once, each on its own thread; their results in order.
func onThreads<T: Sendable>(_ count: Int, _ work: @escaping @Sendable (Int) -> T) async -> [T] {
    await withTaskGroup(of: (Int, T).self) { group in
        for index in 0..<count {
            group.addTask {
                await withCheckedContinuation { continuation in
                    Thread.detachNewThread { continuation.resume(returning: (index, work(index))) }
                }
            }
        }
        var results: [(Int, T)] = []
        for await result in group { results.append(result) }
        return results.sorted { $0.0 < $1.0 }.map(\.1)
    }
}

/// The test pattern the conformance server sends and checks (its `pattern_block`): 64 KiB blocks of
/// bytes 0...255 repeated, the first 8 bytes of each its index (big-endian), so that a lost,
/// repeated or reordered block changes the digest.
enum TestPattern {
    static let blockSize = 65536
    private static let base: [UInt8] = (0..<blockSize).map { UInt8(truncatingIfNeeded: $0) }

    static func block(_ index: Int, length: Int = blockSize) -> [UInt8] {
        var block = self.base
        withUnsafeBytes(of: UInt64(index).bigEndian) { for offset in 0..<8 { block[offset] = $0[offset] } }
        return length == blockSize ? block : Array(block[..<length])
    }

    /// The blocks of a `size`-byte pattern body, in order.
    static func blocks(size: Int) -> some Sequence<[UInt8]> {
        stride(from: 0, to: size, by: self.blockSize).lazy.map { start in
            self.block(start / self.blockSize, length: min(self.blockSize, size - start))
        }
    }

    static func sha256(size: Int) -> String {
        var hasher = SHA256()
        for block in self.blocks(size: size) { hasher.update(data: block) }
        return hex(hasher.finalize())
    }
}

func hex(_ digest: some Sequence<UInt8>) -> String {
    digest.map { String(format: "%02x", $0) }.joined()
}

/// A process's private memory, Private_Clean + Private_Dirty of /proc/PID/smaps_rollup, in bytes:
/// what it holds for itself, shared libraries aside.
func privateMemory(of pid: pid_t) -> Int? {
    guard let rollup = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return nil }
    var kilobytes = 0
    for line in rollup.split(separator: "\n") where line.hasPrefix("Private_Clean:") || line.hasPrefix("Private_Dirty:") {
        kilobytes += line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    }
    return kilobytes * 1024
}

/// The highest private memory of a process from now until `stop`, sampled every 10 ms on a thread
/// of its own: a transfer buffered whole shows as a peak even if it is freed at its end.
final class MemoryPeak: Sendable {
    let pid: pid_t
    let baseline: Int
    private let peak: Atomic<Int>
    private let running = Atomic<Bool>(true)
    private let stopped = DispatchSemaphore(value: 0)

    init(pid: pid_t) {
        self.pid = pid
        self.baseline = privateMemory(of: pid) ?? 0
        self.peak = Atomic(self.baseline)
        Thread.detachNewThread { [self] in
            while self.running.load(ordering: .relaxed) {
                if let now = privateMemory(of: self.pid) { _ = self.peak.max(now, ordering: .relaxed) }
                usleep(10_000)
            }
            self.stopped.signal()
        }
    }

    /// Growth over the baseline so far.
    var growth: Int { self.peak.load(ordering: .relaxed) - self.baseline }

    /// Stops sampling; the growth of the peak over the baseline.
    func stop() -> Int {
        if let now = privateMemory(of: self.pid) { _ = self.peak.max(now, ordering: .relaxed) }
        self.running.store(false, ordering: .relaxed)
        self.stopped.wait()
        return self.growth
    }
}

func mebibytes(_ bytes: Int) -> String {
    String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}
