/// One line of `safe-watch doctor`: what was checked, the verdict, and for a problem the exact fix.
public struct DoctorCheck: Equatable, Sendable {
    public enum Verdict: Equatable, Sendable {
        /// Fine.
        case ok
        /// Worth knowing, but safe-watch works (exit status stays 0).
        case warning
        /// safe-watch will fail or miss changes until it is fixed (exit status 1).
        case problem

        public var symbol: String {
            switch self {
            case .ok: "✓"
            case .warning: "!"
            case .problem: "✗"
            }
        }
    }

    public var verdict: Verdict
    /// What was checked: "inotify watches", "port", ….
    public var subject: String
    /// One line: what was found.
    public var summary: String
    /// What to do, one line each: commands to copy, or the edit to make.
    public var fixes: [String]

    public init(_ verdict: Verdict, _ subject: String, _ summary: String, fixes: [String] = []) {
        self.verdict = verdict
        self.subject = subject
        self.summary = summary
        self.fixes = fixes
    }

    /// `✗ subject: summary`, then each fix indented under it.
    public var rendered: String {
        "\(self.verdict.symbol) \(self.subject): \(self.summary)\n" + self.fixes.map { "    \($0)\n" }.joined()
    }
}

/// The decisions of `safe-watch doctor`: probes happen in the CLI, the verdicts and
/// the fix texts here.
public enum Doctor {
    // MARK: inotify

    /// `max_user_watches` counts every inotify watch of the user, across all programs (editors and
    /// language servers watch trees too), and safe-watch adds a watch for each directory created
    /// while it runs: the limit must leave room beyond today's count.
    public static func watchHeadroom(directories: Int) -> Int { max(1024, directories / 2) }

    /// The limit to suggest: the usual 524288 (the kernel charges about 1 KiB of unswappable
    /// memory per watch in use, none for the limit itself), more for a huge tree.
    static func suggestedWatchLimit(needed: Int) -> Int {
        var limit = 524_288
        while limit < needed * 2 { limit *= 2 }
        return limit
    }

    /// `fs.inotify.max_user_watches` against the directories safe-watch would watch.
    /// - Parameters:
    ///   - limit: the sysctl's value; nil when it cannot be read.
    ///   - inUse: watches this user's programs hold now.
    ///   - directories: directories safe-watch would watch with inotify (polled trees take none).
    ///   - source: the file the limit was read from, for the message.
    public static func inotifyWatches(limit: Int?, inUse: Int, directories: Int, source: String) -> DoctorCheck {
        let subject = "inotify watches"
        guard directories > 0 else {
            return DoctorCheck(.ok, subject, "none needed: every watched path is polled")
        }
        guard let limit else {
            return DoctorCheck(
                .warning, subject, "cannot read \(source); safe-watch needs \(directories) (one per directory)",
                fixes: ["if watching fails with \"No space left on device\", raise fs.inotify.max_user_watches with sysctl"])
        }
        let headroom = Self.watchHeadroom(directories: directories)
        let needed = directories + headroom
        let available = limit - inUse
        let counts = "limit \(limit), \(inUse) in use by this user's programs, this project needs \(directories) "
            + "(one per directory) + \(headroom) headroom"
        guard available >= needed else {
            let suggested = Self.suggestedWatchLimit(needed: inUse + needed)
            return DoctorCheck(
                .problem, subject, counts,
                fixes: [
                    "fix: sudo sysctl fs.inotify.max_user_watches=\(suggested)",
                    "keep it across reboots: echo fs.inotify.max_user_watches=\(suggested) | sudo tee /etc/sysctl.d/90-safe-watch.conf",
                    "or watch less: [watch] paths, or [watch] ignore patterns for generated trees",
                ])
        }
        return DoctorCheck(.ok, subject, counts)
    }

    /// `fs.inotify.max_user_instances`: safe-watch needs one, and every program of the user that
    /// watches files holds one or more (`inotify_init1` fails with EMFILE at the limit).
    public static func inotifyInstances(limit: Int?, inUse: Int, needed: Int, source: String) -> DoctorCheck {
        let subject = "inotify instances"
        guard needed > 0 else { return DoctorCheck(.ok, subject, "none needed: every watched path is polled") }
        guard let limit else {
            return DoctorCheck(.warning, subject, "cannot read \(source); safe-watch needs \(needed)")
        }
        let summary = "limit \(limit), \(inUse) in use by this user's programs, safe-watch needs \(needed)"
        guard limit - inUse >= needed else {
            var suggested = 1024
            while suggested < (inUse + needed) * 2 { suggested *= 2 }
            return DoctorCheck(
                .problem, subject, summary,
                fixes: [
                    "fix: sudo sysctl fs.inotify.max_user_instances=\(suggested)",
                    "keep it across reboots: echo fs.inotify.max_user_instances=\(suggested) | sudo tee /etc/sysctl.d/90-safe-watch.conf",
                ])
        }
        return DoctorCheck(.ok, subject, summary)
    }

    // MARK: file systems

    /// Names for the local file systems people have (`statfs` magic numbers, linux/magic.h); the
    /// ones that lose inotify events are named by `FileSystemKind`.
    public static func fileSystemName(_ kind: FileSystemKind) -> String {
        guard case .other(let magic) = kind else { return kind.name }
        switch UInt32(truncatingIfNeeded: magic) {
        case 0xEF53: return "ext4"
        case 0x9123_683E: return "btrfs"
        case 0x5846_5342: return "xfs"
        case 0x0102_1994: return "tmpfs"
        case 0x794C_7630: return "overlayfs"
        case 0x2FC1_2FC1: return "zfs"
        case 0xF2F5_2010: return "f2fs"
        default: return kind.name
        }
    }

    /// One watched path: its file system, and whether safe-watch will use inotify or poll it.
    /// - Parameter kind: `statfs`'s answer; nil when the path does not exist or cannot be read.
    public static func watchedPath(_ path: String, kind: FileSystemKind?, poll: PollSetting) -> DoctorCheck {
        let subject = "watch \(path)"
        guard let kind else {
            return DoctorCheck(
                .warning, subject, "does not exist or cannot be read: nothing under it is watched",
                fixes: ["create it, or remove it from [watch] paths"])
        }
        let name = Self.fileSystemName(kind)
        switch poll {
        case .every(let interval):
            return DoctorCheck(.ok, subject, "\(name), polled every \(interval.humanReadable) ([watch] poll, --poll or SAFE_WATCH_POLL)")
        case .auto where kind.losesInotifyEvents:
            return DoctorCheck(
                .ok, subject,
                "\(name), polled every \(PollSetting.automaticInterval.humanReadable) (inotify misses changes made outside this machine there)")
        case .off where kind.losesInotifyEvents:
            return DoctorCheck(
                .warning, subject, "\(name) with inotify only: changes made outside this machine (the host of a container or VM) are missed",
                fixes: ["set [watch] poll = \"auto\" (the default) to poll it"])
        case .auto, .off:
            return DoctorCheck(.ok, subject, "\(name), inotify")
        }
    }

    // MARK: toolchain

    /// What `swift --version` gave.
    public enum ToolchainProbe: Equatable, Sendable {
        case notFound
        case found(path: String, version: String)
        case failed(path: String, output: String)
    }

    /// The Swift toolchain; not needed when `build.command` builds something else.
    public static func toolchain(_ probe: ToolchainProbe, buildCommand: String?) -> DoctorCheck {
        let subject = "toolchain"
        let needed = buildCommand.map { $0.contains("swift") } ?? true
        switch probe {
        case .found(let path, let version):
            return DoctorCheck(.ok, subject, "\(version) (\(path))")
        case .notFound where !needed:
            return DoctorCheck(.ok, subject, "`swift` is not on PATH; not needed by build.command")
        case .notFound:
            return DoctorCheck(
                .problem, subject, "`swift` is not on PATH",
                fixes: ["install the Swift toolchain (https://www.swift.org/install/linux/) and add its usr/bin to PATH"])
        case .failed(let path, let output):
            let first = output.split(whereSeparator: \.isNewline).first.map(String.init) ?? "no output"
            return DoctorCheck(
                needed ? .problem : .warning, subject, "\(path) --version failed: \(first)",
                fixes: ["reinstall the toolchain, or put a working one first on PATH"])
        }
    }

    // MARK: port

    /// What binding `serve.listen` for a moment gave.
    public enum PortProbe: Equatable, Sendable {
        case free
        case inUse
        case permissionDenied
        case addressNotAvailable
        case failed(String)
    }

    /// `serve.listen`: safe-watch binds it at start and exits 69 when it cannot. Port 0 is picked
    /// by the kernel, so it is never probed.
    /// - Parameter runningSafeWatch: the pid of a safe-watch already serving this project on
    ///   `address`, which holds the port on purpose.
    public static func port(_ address: ListenAddress, probe: PortProbe?, runningSafeWatch: Int32? = nil) -> DoctorCheck {
        let subject = "serve.listen \(address)"
        guard address.port != 0, let probe else {
            return DoctorCheck(.ok, subject, "a free port is picked at start")
        }
        switch probe {
        case .free:
            return DoctorCheck(.ok, subject, "free")
        case .inUse where runningSafeWatch != nil:
            return DoctorCheck(.ok, subject, "served by the safe-watch running for this project (pid \(runningSafeWatch ?? 0))")
        case .inUse:
            return DoctorCheck(
                .problem, subject, "in use: another program listens on port \(address.port)",
                fixes: [
                    "see which: ss -ltnp 'sport = :\(address.port)'",
                    "stop it, or choose another address: [serve] listen = \"\(address.host.contains(":") ? "[\(address.host)]" : address.host):\(address.port + 1)\" or --listen",
                    "(a safe-watch.socket unit or a safe-watch already serving this project holds it on purpose)",
                ])
        case .permissionDenied:
            return DoctorCheck(
                .problem, subject, "permission denied: ports below 1024 need CAP_NET_BIND_SERVICE",
                fixes: ["use a port from 1024 up: [serve] listen = \"\(address.host):8080\" or --listen"])
        case .addressNotAvailable:
            return DoctorCheck(
                .problem, subject, "\(address.host) is not an address of this machine",
                fixes: ["use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface) in [serve] listen or --listen"])
        case .failed(let reason):
            return DoctorCheck(.problem, subject, "cannot bind it: \(reason)")
        }
    }

    // MARK: systemd

    /// libsystemd and the service managers `init --systemd` needs. Never a problem: the terminal
    /// and containers need neither.
    /// - Parameters:
    ///   - library: the libsystemd file loaded into safe-watch (from /proc/self/maps).
    ///   - booted: systemd is the init system (`sd_booted`).
    ///   - userManager: a systemd user manager runs for this user.
    ///   - notifySocket: `NOTIFY_SOCKET`, when doctor itself runs under a service manager.
    public static func systemd(library: String?, booted: Bool, userManager: Bool, notifySocket: String?) -> DoctorCheck {
        let subject = "systemd"
        let loaded = library.map { "\($0) loaded" } ?? "libsystemd linked"
        let underManager = notifySocket.map { "; running under a service manager (NOTIFY_SOCKET=\($0))" } ?? ""
        guard booted else {
            return DoctorCheck(
                .warning, subject, "\(loaded); systemd is not the init system here\(underManager)",
                fixes: ["`safe-watch init --systemd` units need a systemd user manager; the terminal and `init --docker` do not"])
        }
        guard userManager else {
            return DoctorCheck(
                .warning, subject, "\(loaded); no systemd user manager for this user (no $XDG_RUNTIME_DIR/systemd/private)\(underManager)",
                fixes: ["for `init --systemd`: log in through a session, or keep one running with `sudo loginctl enable-linger $USER`"])
        }
        return DoctorCheck(.ok, subject, "\(loaded); user manager running\(underManager)")
    }

    // MARK: configuration

    /// The configuration file: absent (defaults; a problem when `--config` named it, as `run`
    /// refuses it then), loaded, or its error as `run` would print it.
    public static func configuration(file: String, exists: Bool, named: Bool = false, error: String?) -> DoctorCheck {
        let subject = "configuration"
        guard exists else {
            if named {
                return DoctorCheck(.problem, subject, "\(file) does not exist (--config)", fixes: ["name an existing file, or drop --config to use the project's safe-watch.toml"])
            }
            return DoctorCheck(.ok, subject, "no \(file): the defaults apply (`safe-watch init` writes a commented one)")
        }
        guard let error else { return DoctorCheck(.ok, subject, "\(file) loads") }
        return DoctorCheck(
            .problem, subject, error,
            fixes: ["fix the line named (every key is in README's Configuration reference); the checks below use the defaults"])
    }

    // MARK: report

    /// Every check's lines, a summary line, and the exit status: 1 when any check is a problem.
    public static func report(_ checks: [DoctorCheck]) -> (text: String, exitStatus: Int32) {
        let problems = checks.filter { $0.verdict == .problem }.count
        let warnings = checks.filter { $0.verdict == .warning }.count
        var summary: String
        if problems == 0 && warnings == 0 {
            summary = "no problems found"
        } else {
            var parts: [String] = []
            if problems > 0 { parts.append("\(problems) problem\(problems == 1 ? "" : "s") (✗)") }
            if warnings > 0 { parts.append("\(warnings) warning\(warnings == 1 ? "" : "s") (!)") }
            summary = parts.joined(separator: ", ")
        }
        summary += "\n"
        return (checks.map(\.rendered).joined() + "\n" + summary, problems > 0 ? 1 : 0)
    }
}
