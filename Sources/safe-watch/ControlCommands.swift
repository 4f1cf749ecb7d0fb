import ArgumentParser
import Foundation
import SafeWatch
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// `status`, `rebuild`, `rollback`, `stop` and `events`: clients of a running safe-watch's control
/// socket. Each says plainly when no safe-watch runs for the project (exit status 3).
struct ControlOptions: ParsableArguments {
    @OptionGroup var project: ProjectOptions

    var directory: String { self.project.directory }

    /// Exit status when no safe-watch runs for the project (as `systemctl status` for a stopped unit).
    static let notRunning: Int32 = 3

    /// A client connected to the project's safe-watch, or the reason there is none.
    func connect() throws -> ControlClient {
        try connectToRunningSafeWatch(projectDirectory: self.directory)
    }

    /// Sends one request and reads its one-line answer.
    func ask(_ request: ControlRequest) throws -> (ControlReply, ControlClient) {
        try askRunningSafeWatch(request, projectDirectory: self.directory)
    }
}

/// A client connected to the safe-watch running for `directory` (one connection: a failed
/// connect says what is there), or the reason there is none.
func connectToRunningSafeWatch(projectDirectory directory: String) throws -> ControlClient {
    let path = ControlSocketLocation.path(forProject: directory)
    do {
        return try ControlClient(path: path)
    } catch {
        switch ControlSocket.existing(afterFailing: error) {
        case .none:
            throw ControlCommandError(
                "safe-watch is not running for \(directory) (no control socket at \(path)); start it with `safe-watch --project \(directory)`",
                exitCode: ControlOptions.notRunning)
        case .stale:
            throw ControlCommandError(
                "safe-watch is not running for \(directory): \(path) is left from a safe-watch that did not stop cleanly (the next one replaces it); start it with `safe-watch --project \(directory)`",
                exitCode: ControlOptions.notRunning)
        case .unusable, .live:
            throw ControlCommandError("cannot reach safe-watch at \(path): \(error)", exitCode: 1)
        }
    }
}

/// Sends one request to the safe-watch running for `directory` and reads its one-line answer.
func askRunningSafeWatch(_ request: ControlRequest, projectDirectory directory: String) throws -> (ControlReply, ControlClient) {
    let client = try connectToRunningSafeWatch(projectDirectory: directory)
    try client.send(request.line)
    let line: String
    switch try client.read(timeout: .seconds(10)) {
    case .line(let text): line = text
    case .end: throw ControlCommandError("safe-watch at \(directory) closed the connection without answering", exitCode: 1)
    case .timedOut: throw ControlCommandError("safe-watch at \(directory) did not answer within 10 s", exitCode: 1)
    }
    guard let reply = try? JSONDecoder.controlLine.decode(ControlReply.self, from: Data(line.utf8)) else {
        throw ControlCommandError("safe-watch answered something that is not a reply: \(line.prefix(200))", exitCode: 1)
    }
    return (reply, client)
}

/// The status of the safe-watch running for `directory`, or nil when none answers.
func runningStatus(projectDirectory directory: String) -> StatusSnapshot? {
    (try? askRunningSafeWatch(.status, projectDirectory: directory))?.0.status
}

struct ControlCommandError: Error, CustomStringConvertible {
    var description: String
    var exitCode: Int32
    init(_ description: String, exitCode: Int32) {
        self.description = description
        self.exitCode = exitCode
    }
}

/// Runs a control command: errors go to stderr as one line, with the command's exit status.
private func runControlCommand(_ body: () throws -> Int32) -> Never {
    let code: Int32
    do {
        code = try body()
    } catch let error as ControlCommandError {
        writeToStandardError("safe-watch: \(error.description)\n")
        code = error.exitCode
    } catch {
        writeToStandardError("safe-watch: \(error)\n")
        code = 1
    }
    _exit(code)  // not exit(): see SafeWatchCommand.Run.run
}

private func printLine(_ text: String) {
    TerminalLogHandler.write(text + "\n", to: 1)
}

/// Prints a reply's message, or its refusal on stderr with exit status 1.
private func outcome(_ reply: ControlReply) -> Int32 {
    if reply.ok {
        if let message = reply.message { printLine(message) }
        return 0
    }
    writeToStandardError("safe-watch: \(reply.error ?? "refused")\n")
    return 1
}

extension SafeWatchCommand {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what the running safe-watch is doing.",
            discussion: """
                State, the serving generation and its pid, uptime, the build in progress, the last build \
                with its diagnostics, the last swap, the migrations verdict, what is watched, and where it \
                serves. --json prints the same as one JSON object. Exit status 3 when safe-watch is not \
                running for the project.
                """)

        @OptionGroup var options: ControlOptions

        @Flag(name: .long, help: "Print one JSON object.")
        var json = false

        func run() throws {
            runControlCommand {
                let (reply, _) = try self.options.ask(.status)
                guard reply.ok, let status = reply.status else { return outcome(reply) }
                if self.json {
                    let data = try JSONEncoder.controlLine.encode(status)
                    printLine(String(decoding: data, as: UTF8.self))
                } else {
                    printLine(status.text(now: Date(), clock: { TerminalLogHandler.clock($0.timeIntervalSince1970) }))
                }
                return 0
            }
        }
    }

    struct Rebuild: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build again now, as if a file had changed (a running build is cancelled first).")

        @OptionGroup var options: ControlOptions

        func run() throws {
            runControlCommand { outcome(try self.options.ask(.rebuild).0) }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Go back to the generation before the serving one.",
            discussion: """
                The previous generation is started beside the serving one, health-checked, and takes \
                over once healthy, like any new build. Refused when there is no older generation kept \
                ([run] keep_generations) or a generation is starting.
                """)

        @OptionGroup var options: ControlOptions

        func run() throws {
            runControlCommand { outcome(try self.options.ask(.rollback).0) }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop safe-watch: the server finishes its requests, then everything exits.",
            discussion: "Returns once safe-watch has stopped. Under systemd, use `systemctl --user stop safe-watch` instead.")

        @OptionGroup var options: ControlOptions

        func run() throws {
            runControlCommand {
                let (reply, client) = try self.options.ask(.stop)
                guard reply.ok else { return outcome(reply) }
                printLine(reply.message ?? "stopping")
                // The connection ends when safe-watch exits.
                while true {
                    switch try client.read(timeout: .seconds(120)) {
                    case .line: continue
                    case .end:
                        printLine("stopped")
                        return 0
                    case .timedOut:
                        throw ControlCommandError("safe-watch is still stopping after 2 minutes; see its output", exitCode: 1)
                    }
                }
            }
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print safe-watch's events as JSON lines, one per event, as they happen.",
            discussion: """
                Each line has seq, time, level, event (build_started, build_failed, diagnostic, swapped, \
                output, …), message, and generation or build where they apply. --since N first prints the \
                last N events (up to \(ControlRequest.eventsKept) are kept). Runs until safe-watch stops or \
                you press Ctrl-C.
                """)

        @OptionGroup var options: ControlOptions

        @Option(name: .long, help: ArgumentHelp("Print the last N events first.", valueName: "N"))
        var since: Int?

        func validate() throws {
            if let since, since < 0 { throw ValidationError("--since must be 0 or more, got \(since)") }
        }

        func run() throws {
            runControlCommand {
                let client = try self.options.connect()
                try client.send(ControlRequest.events(since: self.since).line)
                while case .line(let line) = try client.read() {
                    // A refusal instead of an event: a bad request, or this client was dropped.
                    if line.hasPrefix(#"{"error""#),
                        let reply = try? JSONDecoder.controlLine.decode(ControlReply.self, from: Data(line.utf8)), !reply.ok
                    {
                        return outcome(reply)
                    }
                    printLine(line)
                }
                return 0
            }
        }
    }
}
