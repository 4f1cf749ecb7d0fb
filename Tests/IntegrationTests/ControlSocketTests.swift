import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem
import TestSupport
import Testing

/// `safe-watch status`, `rebuild`, `rollback`, `stop` and `events` against a real running
/// safe-watch, and its control socket under bad clients.
extension SupervisorIntegrationTests {

    func control(_ arguments: [String], project directory: String) async throws -> (ExitStatus, String) {
        try await runAsAccount(Paths.safeWatch, arguments + ["--project", directory], in: "/")
    }

    func status(of directory: String) async throws -> StatusSnapshot {
        let (code, output) = try await control(["status", "--json"], project: directory)
        try #require(code == .exited(0), "\(output)")
        return try JSONDecoder.controlLine.decode(StatusSnapshot.self, from: Data(output.utf8))
    }

    @Test func statusRebuildRollbackEventsAndStopAgainstARunningSafeWatch() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "ctl-1")
        let events = try await SafeWatchProcess(["events", "--project", directory, "--since", "1000"])

        var status = try await self.status(of: directory)
        #expect(status.state == "serving")
        #expect(status.pid == safeWatch.pid)
        #expect(status.project == directory)
        let gen1 = try #require(status.active, "\(status)")
        #expect(gen1.generation == 1)
        #expect(gen1.pid.map { safeWatch.descendants.contains($0) } == true, "gen 1's pid is safe-watch's child")
        #expect(status.serve == StatusSnapshot.Serve(mode: "proxy", addresses: ["http://127.0.0.1:\(port)"]))
        #expect(status.watching.directories >= 3, "\(status.watching)")
        #expect(status.lastBuild?.result == "succeeded")
        #expect(status.lastSwap?.to == 1)
        #expect(status.migrations == "no migrations directory")
        #expect(status.uptimeSeconds > 0)
        let (_, text) = try await control(["status"], project: directory)
        #expect(text.contains("serving · gen 1 (pid \(gen1.pid ?? 0))"), "\(text)")
        #expect(text.contains("proxy mode on http://127.0.0.1:\(port)"), "\(text)")

        try setVersion("ctl-2", in: directory)
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy") != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server ctl-2\n")

        // Rollback: gen 1 again, health-checked beside gen 2 before it takes over.
        var mark = safeWatch.log.count
        let (rolledBack, rollbackOutput) = try await control(["rollback"], project: directory)
        #expect(rolledBack == .exited(0))
        #expect(rollbackOutput.contains("rolling back from gen 2 to gen 1"), "\(rollbackOutput)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server ctl-1\n")
        let (refused, refusal) = try await control(["rollback"], project: directory)
        #expect(refused == .exited(1))
        #expect(refusal.contains("no generation older than gen 1 that served is kept"), "\(refusal)")

        // Rebuild: the tree as it is (ctl-2) becomes gen 3.
        mark = safeWatch.log.count
        let (rebuilt, rebuildOutput) = try await control(["rebuild"], project: directory)
        #expect(rebuilt == .exited(0))
        #expect(rebuildOutput.hasPrefix("build 3 started"), "\(rebuildOutput)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 3 healthy", after: mark) != nil, "\(safeWatch.output)")
        #expect(await body(port: port) == "hello-server ctl-2\n")

        // A broken build: status names the file and line, and gen 3 still serves.
        mark = safeWatch.log.count
        try (versionSource("ctl-4") + "let broken: Int = \"not a number\"\n")
            .save(to: directory + "/Sources/hello-server/Version.swift")
        #expect(await safeWatch.log.waitForLine(containing: "failed in", after: mark) != nil, "\(safeWatch.output)")
        status = try await self.status(of: directory)
        #expect(status.state == "serving")
        #expect(status.active?.generation == 3)
        #expect(status.lastBuild?.result == "failed")
        let diagnostic = try #require(status.lastBuild?.diagnostics.first, "\(status)")
        #expect(diagnostic.file == "Sources/hello-server/Version.swift" && diagnostic.line == 3, "\(diagnostic)")
        #expect(status.problem?.contains("build 4 failed") == true, "\(String(describing: status.problem))")

        // The events stream saw all of it, in order, as JSON lines.
        #expect(await events.log.waitForLine(containing: #""event":"build_failed""#) != nil, "\(events.output)")
        let records = events.log.all.compactMap { try? JSONDecoder.controlLine.decode(EventRecord.self, from: Data($0.utf8)) }
        #expect(records.count == events.log.all.count, "every line is an event: \(events.output.prefix(2000))")
        #expect(records.map(\.seq) == records.map(\.seq).sorted() && Set(records.map(\.seq)).count == records.count)
        #expect(records.contains { $0.event == "swapped" && $0.generation == 1 && $0.seq < 10 }, "--since replays the start")
        #expect(records.contains { $0.event == "rolling_back" && $0.message.contains("(requested)") })
        #expect(records.contains { $0.event == "build_started" && $0.build == 3 && $0.message.contains("(requested)") })
        #expect(records.contains { $0.event == "output" && $0.generation == 3 && $0.message.contains("hello-server ctl-2 listening") })
        #expect(records.contains { $0.event == "diagnostic" && $0.message.contains("Version.swift:3") })

        // Stop: returns once safe-watch has gone; then every command says it is not running.
        let (stopped, stopOutput) = try await control(["stop"], project: directory)
        #expect(stopped == .exited(0))
        #expect(stopOutput.hasSuffix("stopped"), "\(stopOutput)")
        #expect(await safeWatch.waitForExit(limit: .seconds(5)) == .exited(0))
        #expect(await events.waitForExit(limit: .seconds(5)) == .exited(0), "events ends with safe-watch")
        #expect(!FileManager.default.fileExists(atPath: directory + "/.safe-watch/control.sock"))
        for command in ["status", "rebuild", "rollback", "stop", "events"] {
            let (code, output) = try await control([command], project: directory)
            #expect(code == .exited(3), "\(command): \(output)")
            #expect(output.contains("safe-watch is not running for \(directory)"), "\(command): \(output)")
        }
        #expect(processes(mentioning: directory + "/.safe-watch/generations").isEmpty)
    }

    @Test func theControlSocketIsPrivateALiveOneIsNotStolenAndAStaleOneIsReplaced() async throws {
        let (first, port, directory) = try await startServing(version: "own-1")
        let socket = directory + "/.safe-watch/control.sock"
        var info = stat()
        #expect(stat(socket, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(info.st_mode & 0o777 == 0o600)

        // A second safe-watch for the same project refuses to start and leaves the first alone.
        let (second, secondOutput) = try await runAsAccount(
            Paths.safeWatch, ["run", "--project", directory, "--listen", "127.0.0.1:0"], in: directory)
        #expect(second == .exited(69), "\(secondOutput)")
        #expect(secondOutput.contains("safe-watch is already running for \(directory) (pid \(first.pid))"), "\(secondOutput)")
        #expect(await body(port: port) == "hello-server own-1\n")
        #expect(try await self.status(of: directory).pid == first.pid)

        // Killed: the socket file stays behind, and says so.
        first.signal(SIGKILL)
        _ = await first.waitForExit(limit: .seconds(10))
        #expect(FileManager.default.fileExists(atPath: socket))
        let (code, output) = try await control(["status"], project: directory)
        #expect(code == .exited(3))
        #expect(output.contains("did not stop cleanly"), "\(output)")

        // The next safe-watch replaces the stale socket.
        let next = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        #expect(await next.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(next.output)")
        #expect(next.output.contains("replaced \(socket), left by a safe-watch that did not stop cleanly"), "\(next.output)")
        #expect(try await self.status(of: directory).pid == next.pid)
        #expect(await next.terminate() == .exited(0))
        #expect(!FileManager.default.fileExists(atPath: socket))

        // A state directory another user owns: no control socket there, and safe-watch says why.
        try createAccountDirectory(directory + "/.safe-watch")
        #expect(chown(directory + "/.safe-watch", 65534, 65534) == 0)
        defer { giveToAccount(directory + "/.safe-watch") }
        let foreign = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0"])
        #expect(await foreign.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(foreign.output)")
        #expect(foreign.output.contains("belongs to uid 65534, not to you"), "\(foreign.output)")
        #expect(!FileManager.default.fileExists(atPath: socket))
        #expect(await foreign.terminate() == .exited(0))
    }

    @Test func garbageOversizedSilentAndNonReadingClientsCostOnlyTheirOwnConnection() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "bad-1")
        let socket = directory + "/.safe-watch/control.sock"
        let descriptorsBefore = openDescriptors(of: safeWatch.pid)

        let garbage = try RawControlClient(path: socket)
        garbage.send(Array("hello there\n".utf8))
        #expect(garbage.readAll(limit: .seconds(10)).contains(#""error":"unknown command \"hello\": use status, rebuild, rollback, stop or events","ok":false"#))

        let binary = try RawControlClient(path: socket)
        binary.send((0...255).map(UInt8.init) + [10])
        #expect(binary.readAll(limit: .seconds(10)).contains(#""ok":false"#))

        let oversized = try RawControlClient(path: socket)
        oversized.send([UInt8](repeating: UInt8(ascii: "a"), count: 100_000))
        let answer = oversized.readAll(limit: .seconds(10))
        #expect(answer.contains("request longer than 4096 bytes"), "\(answer)")
        #expect(oversized.sawEnd, "the connection is closed after the refusal")

        // One client never sends anything; another asks for events and never reads them.
        let silent = try RawControlClient(path: socket)
        let stuck = try RawControlClient(path: socket)
        stuck.send(Array("events\n".utf8))

        // Flood the event log: gen 2 prints 40,000 lines (about 4.5 MB of events) before it listens.
        var mark = safeWatch.log.count
        try "[run]\nenv = { HELLO_CHATTER = \"40000\" }\n".save(to: directory + "/safe-watch.toml")
        #expect(await safeWatch.log.waitForLine(containing: "configuration reloaded", after: mark) != nil, "\(safeWatch.output.suffix(3000))")
        mark = safeWatch.log.count
        let (rebuilt, rebuildOutput) = try await control(["rebuild"], project: directory)
        #expect(rebuilt == .exited(0), "\(rebuildOutput)")
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 2 healthy", after: mark) != nil, "\(safeWatch.output.suffix(3000))")
        #expect(await body(port: port) == "hello-server bad-1\n")
        let status = try await self.status(of: directory)
        #expect(status.active?.generation == 2 && status.state == "serving")

        // The client that did not read was dropped, not buffered for: what it can still read ends
        // well short of the flood, and then the connection ends.
        let backlog = stuck.readAll(limit: .seconds(20))
        #expect(stuck.sawEnd, "the non-reading events client is disconnected")
        #expect(backlog.contains("this client fell more than 1 MiB behind and was disconnected"), "\(backlog.suffix(300))")
        #expect(backlog.utf8.count < 3_000_000, "\(backlog.utf8.count) bytes were kept for it")
        // The silent one is closed once its 10 s to send a request are over.
        _ = silent.readAll(limit: .seconds(20))
        #expect(silent.sawEnd, "the silent client is disconnected")
        // Nothing of the bad clients is left open in safe-watch.
        let descriptorsAfter = openDescriptors(of: safeWatch.pid)
        #expect(descriptorsAfter <= descriptorsBefore + 2, "\(descriptorsBefore) → \(descriptorsAfter) open descriptors")
        try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml")
        #expect(await safeWatch.terminate() == .exited(0))
    }
}

/// A control-socket client that sends raw bytes and reads whatever comes back.
final class RawControlClient {
    private let fd: Int32
    private(set) var sawEnd = false

    init(path: String) throws {
        self.fd = try ControlSocket.connect(path: path).rawValue
    }

    deinit {
        close(self.fd)
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }  // the server may close before taking all of an oversized line
            offset += written
        }
    }

    /// Everything until the server closes the connection or `limit` passes.
    func readAll(limit: Duration) -> String {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + limit
        var chunk = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var entry = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 {
                self.sawEnd = true
                break
            }
            received += chunk[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

extension SupervisorIntegrationTests {
    /// `--log-format json`: every line safe-watch writes is one event object, numbered as
    /// `safe-watch events` numbers them.
    @Test func logFormatJSONWritesOneEventObjectPerLine() async throws {
        let directory = try await Fixture.shared.reset(version: "json-1")
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory, "--listen", "127.0.0.1:0", "--log-format", "json"])
        #expect(await safeWatch.log.waitForLine(containing: #""event":"swapped""#) != nil, "\(safeWatch.output)")
        #expect(await safeWatch.terminate() == .exited(0))
        let lines = safeWatch.log.all
        let records = lines.compactMap { try? JSONDecoder.controlLine.decode(EventRecord.self, from: Data($0.utf8)) }
        #expect(records.count == lines.count, "not JSON: \(lines.filter { !$0.hasPrefix("{") }.prefix(3))")
        #expect(records.map(\.seq) == Array(1...records.count), "numbered from 1 without gaps")
        #expect(records.first?.message.contains("proxy mode on http://127.0.0.1:") == true)
        #expect(records.contains { $0.event == "build_succeeded" && $0.build == 1 && $0.level == "info" })
        #expect(records.contains { $0.event == "output" && $0.generation == 1 && $0.message.contains("hello-server json-1 listening") })
        #expect(records.contains { $0.event == "swapped" && $0.generation == 1 && $0.level == "notice" })
        #expect(records.last?.event == "stopped")
        #expect(!lines.joined().contains("\u{1B}["), "no colour codes")
    }
}

/// How many descriptors `pid` has open.
func openDescriptors(of pid: pid_t) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
}

extension SupervisorIntegrationTests {
    /// `doctor` while safe-watch serves the project: its port and watches are not another program's.
    @Test func doctorWhileSafeWatchServesTheProjectCountsItsPortAsOurs() async throws {
        let directory = try await Fixture.shared.reset(version: "doc-1")
        let port = try freeLoopbackPort()
        try "[serve]\nlisten = \"127.0.0.1:\(port)\"\n".save(to: directory + "/safe-watch.toml")
        defer { try? FileManager.default.removeItem(atPath: directory + "/safe-watch.toml") }
        let safeWatch = try await SafeWatchProcess(["run", "--project", directory])
        #expect(await safeWatch.log.waitForLine(containing: "✓ gen 1 healthy") != nil, "\(safeWatch.output)")
        let (code, output) = try await control(["doctor"], project: directory)
        #expect(output.contains("✓ serve.listen 127.0.0.1:\(port): served by the safe-watch running for this project (pid \(safeWatch.pid))"), "\(output)")
        #expect(code == .exited(0), "\(output)")
        #expect(await safeWatch.terminate() == .exited(0))
        // Stopped, the port is free again.
        let (_, after) = try await control(["doctor"], project: directory)
        #expect(after.contains("✓ serve.listen 127.0.0.1:\(port): free"), "\(after)")
    }
}
