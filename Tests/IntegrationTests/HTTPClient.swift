import Foundation
import Glibc
import Synchronization
import TestSupport

/// A small blocking HTTP/1.1 client on POSIX sockets, run on its own threads so load never waits
/// on the test's concurrency pool.
struct HTTPResponse: Sendable {
    var status: Int
    var body: String
    /// The server said `Connection: close`: a client opens a new connection for the next request.
    var closesConnection = false
}

enum HTTPFailure: Error, CustomStringConvertible {
    case io(String)
    var description: String {
        switch self {
        case .io(let what): return what
        }
    }
}

/// One connection; reusable for keep-alive requests.
final class HTTPConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        self.fd = try connectLoopback(port: port)
    }

    deinit { Glibc.close(self.fd) }

    func get(_ path: String, keepAlive: Bool) throws -> HTTPResponse {
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        let bytes = Array(request.utf8)
        guard send(self.fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw HTTPFailure.io("send failed: \(String(cString: strerror(errno)))") }
        // Head.
        var headEnd: Int?
        while headEnd == nil {
            headEnd = self.find([13, 10, 13, 10])
            if headEnd == nil { try self.fill() }
        }
        let head = String(decoding: self.buffer[0..<headEnd!], as: UTF8.self)
        self.buffer.removeFirst(headEnd! + 4)
        let lines = head.split(separator: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw HTTPFailure.io("bad status line: \(lines.first ?? "")") }
        var length: Int?
        var chunked = false
        var closes = false
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let name = parts[0].lowercased()
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            if name == "content-length" { length = Int(value) }
            if name == "transfer-encoding" && value.lowercased().contains("chunked") { chunked = true }
            if name == "connection" && value.lowercased() == "close" { closes = true }
        }
        var body: [UInt8] = []
        if let length {
            while self.buffer.count < length { try self.fill() }
            body = Array(self.buffer[0..<length])
            self.buffer.removeFirst(length)
        } else if chunked {
            while true {
                var lineEnd = self.find([13, 10])
                while lineEnd == nil { try self.fill(); lineEnd = self.find([13, 10]) }
                let size = Int(String(decoding: self.buffer[0..<lineEnd!], as: UTF8.self), radix: 16) ?? 0
                self.buffer.removeFirst(lineEnd! + 2)
                while self.buffer.count < size + 2 { try self.fill() }
                body += self.buffer[0..<size]
                self.buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
        } else {
            while (try? self.fill()) != nil {}
            body = self.buffer
            self.buffer = []
        }
        return HTTPResponse(status: status, body: String(decoding: body, as: UTF8.self), closesConnection: closes)
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard self.buffer.count >= pattern.count else { return nil }
        for index in 0...(self.buffer.count - pattern.count) where self.buffer[index] == pattern[0] {
            if Array(self.buffer[index..<(index + pattern.count)]) == pattern { return index }
        }
        return nil
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let count = recv(self.fd, &chunk, chunk.count, 0)
        if count < 0 { throw HTTPFailure.io("recv failed: \(String(cString: strerror(errno)))") }
        if count == 0 { throw HTTPFailure.io("connection closed by peer") }
        self.buffer += chunk[0..<count]
    }
}

/// GET on a new connection, off the concurrency pool.
func httpGet(port: Int, _ path: String) async -> Result<HTTPResponse, HTTPFailure> {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            do {
                let connection = try HTTPConnection(port: port)
                continuation.resume(returning: .success(try connection.get(path, keepAlive: false)))
            } catch let error as HTTPFailure {
                continuation.resume(returning: .failure(error))
            } catch {
                continuation.resume(returning: .failure(.io("\(error)")))
            }
        }
    }
}

/// The body of GET `path`, or nil on any failure.
func body(port: Int, _ path: String = "/") async -> String? {
    if case .success(let response) = await httpGet(port: port, path), response.status == 200 { return response.body }
    return nil
}

/// Clients hitting the server in a loop until stopped, counting every failure a user would see.
final class ClientPool: Sendable {
    struct Tally: Sendable {
        var ok = 0
        var failures: [String] = []
        var bodies: Set<String> = []
    }

    private let tally = Mutex(Tally())
    private let running = Mutex(true)
    /// Ticks on every answered request, for `waitForMore`.
    private let (progress, answered) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    /// Clients done, and the waiter `stop()` resumes when the last one is.
    private let finished = Mutex<(count: Int, waiter: CheckedContinuation<Void, Never>?)>((0, nil))
    private let threads: Int
    /// Failures say when they happened, counted from here.
    let started = ContinuousClock.now

    /// `threads` clients alternating `paths`; `keepAlive` clients reuse one connection.
    init(port: Int, threads: Int, paths: [String], keepAlive: Bool) {
        self.threads = threads
        let started = self.started
        for index in 0..<threads {
            Thread.detachNewThread { [self] in
                var connection: HTTPConnection?
                var request = index
                // Bounded: at most 100,000 requests per client, and only while running.
                while self.running.withLock({ $0 }) && request < 100_000 {
                    let path = paths[request % paths.count]
                    request += 1
                    do {
                        if connection == nil || !keepAlive { connection = try HTTPConnection(port: port) }
                        let response = try connection!.get(path, keepAlive: keepAlive)
                        if response.closesConnection { connection = nil }
                        self.tally.withLock { tally in
                            if response.status == 200 {
                                self.answered.yield()
                                tally.ok += 1
                                tally.bodies.insert(response.body)
                            } else {
                                tally.failures.append("\(path): HTTP \(response.status) \(response.body)")
                            }
                        }
                    } catch {
                        connection = nil
                        let at = (ContinuousClock.now - started).formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 2)))
                        self.tally.withLock { $0.failures.append("\(path): \(error) (at +\(at))") }
                    }
                }
                let waiter: CheckedContinuation<Void, Never>? = self.finished.withLock { finished in
                    finished.count += 1
                    guard finished.count == self.threads else { return nil }
                    defer { finished.waiter = nil }
                    return finished.waiter
                }
                waiter?.resume()
            }
        }
    }

    var snapshot: Tally { self.tally.withLock { $0 } }

    /// Waits until more than `count` requests have been answered (false after `limit`).
    func waitForMore(than count: Int, limit: Duration = .seconds(60)) async -> Bool {
        await result(within: limit) {
            for await _ in self.progress where self.snapshot.ok > count { return true }
            return false
        } ?? false
    }

    /// Stops the clients and waits for them to finish their current request.
    func stop() async -> Tally {
        self.running.withLock { $0 = false }
        await withCheckedContinuation { continuation in
            let done = self.finished.withLock { finished in
                if finished.count == self.threads { return true }
                finished.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
        return self.snapshot
    }
}

/// A plain TCP connection for protocols past HTTP (the upgrade tunnel).
final class RawConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        self.fd = try connectLoopback(port: port)
    }

    deinit { Glibc.close(self.fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(self.fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw HTTPFailure.io("send failed") }
    }

    /// The next line, without its line ending; nil when the peer closed.
    func readLine() -> String? {
        while true {
            if let newline = self.buffer.firstIndex(of: 10) {
                var line = Array(self.buffer[..<newline])
                self.buffer.removeFirst(newline + 1)
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = recv(self.fd, &chunk, chunk.count, 0)
            if count <= 0 { return nil }
            self.buffer += chunk[0..<count]
        }
    }
}

/// Opens an `Upgrade: echo` tunnel through the proxy and sends one line; returns the status line
/// and the echoed line.
func echoThroughUpgrade(port: Int, _ message: String) async -> (status: String?, echo: String?) {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            guard let connection = try? RawConnection(port: port) else {
                continuation.resume(returning: (nil, nil))
                return
            }
            try? connection.send("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
            let status = connection.readLine()
            while let line = connection.readLine(), !line.isEmpty {}  // the rest of the 101 head
            try? connection.send(message + "\n")
            continuation.resume(returning: (status, connection.readLine()))
        }
    }
}
