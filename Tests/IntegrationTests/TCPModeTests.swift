import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import Synchronization
import TestSupport
import Testing

/// tcp mode with a real HTTP/2 server (nghttpd, cleartext h2c) and a real HTTP/2 client (curl with
/// prior knowledge), neither of which the HTTP/1.1 proxy could carry. The "server" is a script that
/// serves www<N>/ for the generation its text names: an edit of the script is the next generation.
extension SupervisorIntegrationTests {
    @Test func tcpModeSendsNewConnectionsToTheNewGenerationAndDrainsOpenOnesOnTheOld() async throws {
        // A long stop_timeout: gen 1 must be stopped because its last connection closed, not by it.
        let (safeWatch, port, directory) = try await self.startTCPMode(stopTimeout: "60s")
        defer { TCPModeFixture.clean(directory) }
        #expect(try await http2Get(port: port) == "served by gen 1", "\(safeWatch.output)")

        // An HTTP/2 request whose body the test sends: its connection stays open until the body ends.
        let held = try await self.openUpload(
            "held-across-the-swap", sending: "the first half of the body\n", port: port, reaching: 1, of: safeWatch)

        var mark = safeWatch.log.count
        try TCPModeFixture.serve(generation: 2, in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
        // A new connection reaches gen 2; the open one keeps gen 1 running.
        #expect(try await http2Get(port: port) == "served by gen 2", "\(safeWatch.output)")
        #expect(!safeWatch.output.contains("gen 1 stopped"), "gen 1 was stopped with a connection open:\n\(safeWatch.output)")

        // The body ends: gen 1 answers on the connection that stayed with it, then is stopped.
        mark = safeWatch.log.count
        held.endBody()
        let ended = ContinuousClock.now
        #expect(await held.waitForExit() == .exited(0), "\(held.output)")
        #expect(held.output.contains("served by gen 1"), "\(held.output)")
        #expect(held.output.contains("over HTTP/2"), "\(held.output)")
        #expect(await safeWatch.log.waitForLine(containing: "gen 1 stopped", after: mark, limit: .seconds(30)) != nil, "\(safeWatch.output)")
        #expect(ContinuousClock.now - ended < .seconds(30), "gen 1 waited for stop_timeout, not for its connection")

        // Stopping safe-watch: the listener closes, an open connection still finishes on its
        // generation before that generation is stopped.
        let last = try await self.openUpload("open-while-stopping", sending: "body\n", port: port, reaching: 2, of: safeWatch)
        mark = safeWatch.log.count
        let children = safeWatch.descendantIdentities
        #expect(!children.isEmpty, "gen 2 should be running under safe-watch")
        safeWatch.signal(SIGTERM)
        #expect(await safeWatch.log.waitForLine(containing: "▸ stopping", after: mark, limit: .seconds(30)) != nil, "\(safeWatch.output)")
        last.endBody()
        #expect(await last.waitForExit() == .exited(0), "\(last.output)")
        #expect(last.output.contains("served by gen 2"), "\(last.output)")
        #expect(await safeWatch.waitForExit() == .exited(0), "\(safeWatch.output)")
        #expect(children.filter(\.isRunning).isEmpty, "left running: \(children.filter(\.isRunning))")
    }

    @Test func tcpModeStopsTheOldGenerationAtStopTimeoutWhenAConnectionStaysOpen() async throws {
        let (safeWatch, port, directory) = try await self.startTCPMode(stopTimeout: "2s")
        defer { TCPModeFixture.clean(directory) }
        let held = try await self.openUpload("never-ends", sending: "a body that never ends\n", port: port, reaching: 1, of: safeWatch)

        let mark = safeWatch.log.count
        try TCPModeFixture.serve(generation: 2, in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output)")
        let swapped = ContinuousClock.now
        #expect(await safeWatch.log.waitForLine(containing: "gen 1 stopped", after: mark, limit: .seconds(30)) != nil, "\(safeWatch.output)")
        // Drained for stop_timeout (2 s), then stopped with the connection still open, which ends with it.
        #expect(ContinuousClock.now - swapped > .milliseconds(1500), "gen 1 was stopped before stop_timeout:\n\(safeWatch.output)")
        // curl notices the end of its connection once it has the rest of the body to send.
        held.endBody()
        let status = await held.waitForExit()
        #expect(status != nil && status != .exited(0), "\(held.output)")
        #expect(!held.output.contains("served by"), "\(held.output)")
        #expect(try await http2Get(port: port) == "served by gen 2", "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0), "\(safeWatch.output)")
    }

    /// An HTTP/2 upload that sent `body` and is left open, once the server logged it as `generation`.
    func openUpload(
        _ agent: String, sending body: String, port: Int, reaching generation: Generation, of safeWatch: SafeWatchProcess
    ) async throws -> HeldHTTP2Upload {
        let upload = try await HeldHTTP2Upload(port: port, agent: agent)
        upload.send(body)
        let reached = await safeWatch.log.waitForLine(containing: "user-agent: \(agent)", limit: .seconds(30))
        #expect(reached?.contains("[gen \(generation)]") == true, "the request did not reach gen \(generation):\n\(safeWatch.output)")
        return upload
    }

    /// Starts safe-watch in tcp mode on the fixture with the nghttpd script as its server (no
    /// [health]: tcp mode's default is a tcp check) and waits until gen 1 serves.
    func startTCPMode(stopTimeout: String) async throws -> (SafeWatchProcess, Int, String) {
        try #require(
            FileManager.default.isExecutableFile(atPath: TCPModeFixture.nghttpd),
            "\(TCPModeFixture.nghttpd) is missing: install nghttp2-server (script/bootstrap --test does)")
        let directory = try await Fixture.shared.reset(version: "tcp-mode")
        try TCPModeFixture.prepare(directory, stopTimeout: stopTimeout)
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        let start = await safeWatch.log.waitForLine(containing: "tcp mode on tcp://127.0.0.1:", limit: .seconds(60))
        let port = try #require(start?.split(separator: ":").last.flatMap { Int($0) }, "no start line:\n\(safeWatch.output)")
        try #require(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "gen 1 never served:\n\(safeWatch.output)")
        return (safeWatch, port, directory)
    }
}

/// The fixture's files for tcp mode: a server script, one document root per generation.
enum TCPModeFixture {
    static let nghttpd = "/usr/sbin/nghttpd"
    static let script = "h2-server.sh"

    static func prepare(_ directory: String, stopTimeout: String) throws {
        for generation in 1...2 {
            try createAccountDirectory(directory + "/www\(generation)")
            try "served by gen \(generation)".save(to: directory + "/www\(generation)/gen.txt")
        }
        try self.serve(generation: 1, in: directory)
        chmod(directory + "/" + self.script, 0o755)
        try """
            [build]
            command = "true"
            binary = "\(self.script)"
            [watch]
            extensions = ["sh"]
            [serve]
            mode = "tcp"
            [run]
            stop_timeout = "\(stopTimeout)"

            """.save(to: directory + "/safe-watch.toml")
    }

    /// Makes the script serve www<generation>/; written in place, so it stays executable.
    static func serve(generation: Int, in directory: String) throws {
        // -v: every frame it receives is a line of output, which names the client's user agent.
        try "#!/bin/sh\nexec \(self.nghttpd) --no-tls -v -a 127.0.0.1 -d www\(generation) \"$PORT\"\n"
            .save(to: directory + "/" + self.script, atomically: false)
    }

    static func clean(_ directory: String) {
        for name in [self.script, "www1", "www2", "safe-watch.toml"] {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }
}

/// GET /gen.txt over HTTP/2 on a new connection; the body, or a failure that says what curl said.
func http2Get(port: Int) async throws -> String {
    let (status, output) = try await run(
        "/usr/bin/curl", ["-sS", "--http2-prior-knowledge", "--max-time", "20", "http://127.0.0.1:\(port)/gen.txt"], in: "/")
    guard status == .exited(0) else { throw HarnessError("curl: \(status): \(output)") }
    return output
}

/// An HTTP/2 PUT through safe-watch whose body the test writes (curl reads it from a pipe), so its
/// connection stays open until the test ends the body. nghttpd answers once the request is complete.
final class HeldHTTP2Upload: Sendable {
    private let pid: pid_t
    /// The write end of the body's pipe, until the body ends.
    private let body: Mutex<Int32?>
    private let log = LineLog()
    private let exit: Task<ExitStatus, Never>
    private let outputClosed: Task<Void, Never>

    init(port: Int, agent: String) async throws {
        Reaper.shared.start()
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw HarnessError("pipe: \(String(cString: strerror(errno)))") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let output = try OutputPipe()
        let log = self.log
        let (closed, finishClosed) = AsyncStream<Void>.makeStream()
        output.start(onLine: { log.append($0) }, onClose: { finishClosed.finish() })
        self.outputClosed = Task { for await _ in closed {} }
        // The body's read end is passed as fd 3 and becomes curl's standard input.
        let command =
            "exec /usr/bin/curl -sS --http2-prior-knowledge -A \(agent) -w '\\nover HTTP/%{http_version}\\n' "
            + "-T - http://127.0.0.1:\(port)/gen.txt <&3 3<&-"
        let pid = try await Spawner.shared.spawn(
            SpawnRequest(
                executable: "/bin/sh", arguments: ["/bin/sh", "-c", command], environment: ProcessInfo.processInfo.environment,
                workingDirectory: "/", standardOutput: output.writeEnd, standardError: output.writeEnd, passedDescriptors: [ends[0]]))
        output.closeWriteEnd()
        close(ends[0])
        self.pid = pid
        self.body = Mutex(ends[1])
        self.exit = Task { await Reaper.shared.wait(for: pid) }
    }

    deinit { self.endBody() }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        self.body.withLock { fd in
            if let fd { _ = write(fd, bytes, bytes.count) }
        }
    }

    func endBody() {
        self.body.withLock { fd in
            if let open = fd { close(open) }
            fd = nil
        }
    }

    /// curl's exit status once its output is read to the end; nil (and curl killed) after `limit`.
    func waitForExit(limit: Duration = .seconds(30)) async -> ExitStatus? {
        await exitStatus(of: self.pid, exit: self.exit, outputClosed: self.outputClosed, limit: limit)
    }

    var output: String { self.log.all.joined(separator: "\n") }
}
