import Glibc
import SafeWatchProcesses
import Synchronization

/// Runs pg_dump, pg_restore and the test-cluster script through the project's `Spawner` and
/// `Reaper` (Foundation.Process would race the process-wide `waitpid(-1)` reaper for the exit).
package enum ExternalCommand {
    package struct Result: Sendable {
        /// nil: it ran past its timeout and was stopped.
        package var status: ExitStatus?
        package var standardOutput: [String]
        package var standardError: [String]

        package var succeeded: Bool { self.status == .exited(0) }

        /// How it ended, for a message.
        package var outcome: String { self.status.map { "\($0)" } ?? "stopped at its timeout" }

        /// The last lines of stderr (or stdout), joined: what to quote in an error message.
        package var diagnostic: String {
            let lines = (self.standardError.isEmpty ? self.standardOutput : self.standardError)
                .map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            return lines.suffix(3).joined(separator: " / ")
        }
    }

    /// How a command that outlives its timeout is stopped: SIGTERM to its group (pg_dump removes
    /// its temporary files), SIGKILL 5 s later.
    static let stop = Teardown.group(SIGTERM, grace: .seconds(5))

    /// Runs `executable` (an absolute path) with `arguments` (argv[0] excluded), waits for it to exit
    /// and for its output to end, or stops it after `timeout` (then `status` is nil). `environment`
    /// entries are added to this process's environment. The command gets SIGTERM if safe-watch dies,
    /// as servers and builds do.
    package static func run(
        _ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
        timeout: Duration = .seconds(600)
    ) async throws -> Result {
        Reaper.shared.start()
        let output = try OutputPipe(label: "safe-watch.migrations.stdout")
        let errors = try OutputPipe(label: "safe-watch.migrations.stderr")
        let outputLines = Mutex<[String]>([])
        let errorLines = Mutex<[String]>([])
        let (ends, endReached) = AsyncStream<Void>.makeStream()
        output.start(onLine: { line in outputLines.withLock { $0.append(line) } }, onClose: { endReached.yield() })
        errors.start(onLine: { line in errorLines.withLock { $0.append(line) } }, onClose: { endReached.yield() })

        var environment = currentEnvironment()
        for (key, value) in extra { environment[key] = value }
        let name = executable.split(separator: "/").last.map(String.init) ?? executable
        let request = SpawnRequest(
            executable: executable, arguments: [name] + arguments, environment: environment,
            standardOutput: output.writeEnd, standardError: errors.writeEnd, deathSignal: SIGTERM)
        let process: ProcessHandle
        do {
            process = try await Spawner.shared.start(request)
        } catch {
            output.closeWriteEnd()
            errors.closeWriteEnd()
            // An exec failure says "cannot run PROGRAM: REASON" itself.
            throw MigrationDatabaseError(.toolMissing, error.isExecFailure ? "\(error)" : "cannot run \(executable): \(error)")
        }
        output.closeWriteEnd()
        errors.closeWriteEnd()
        let status = await process.exitStatus(within: timeout, orElse: Self.stop)
        var closed = 0
        for await _ in ends {
            closed += 1
            if closed == 2 { break }
        }
        return Result(
            status: status, standardOutput: outputLines.withLock { $0 }, standardError: errorLines.withLock { $0 })
    }

    /// The first executable `name` in `directories`, then on PATH.
    package static func find(_ name: String, preferring directories: [String] = []) -> String? {
        let path = currentEnvironment()["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let candidates = directories + path.split(separator: ":").map(String.init)
        for directory in candidates where !directory.isEmpty {
            let file = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            if access(file, X_OK) == 0 { return file }
        }
        return nil
    }

    /// `/usr/lib/postgresql/<version>/bin`, newest version first (Debian's layout: the newest
    /// pg_dump can dump every older server).
    package static func postgresBinaryDirectories() -> [String] {
        guard let directory = opendir("/usr/lib/postgresql") else { return [] }
        defer { closedir(directory) }
        var versions: [(Int, String)] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            let number = Int(name.split(separator: ".").first ?? "") ?? -1
            if number >= 0 { versions.append((number, name)) }
        }
        return versions.sorted { $0.0 > $1.0 }.map { "/usr/lib/postgresql/\($0.1)/bin" }
    }

    package static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}

/// Single-quotes `text` for a POSIX shell.
package func shellQuoted(_ text: String) -> String {
    let safe = text.allSatisfy { $0.isLetter || $0.isNumber || "/._-+:=@%,".contains($0) } && !text.isEmpty
    if safe && text.allSatisfy(\.isASCII) { return text }
    return "'" + text.replacing("'", with: "'\\''") + "'"
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
