import CSystemd
import Foundation
import Glibc
import SafeWatchCore
import SafeWatchProcesses

extension IgnoreRules {
    /// What the watcher ignores in a project: `[watch] ignore` and the project's `.gitignore` (the
    /// built-in directories and editor droppings always). One place, for `run` and `doctor`.
    public static func watching(project directory: String, patterns: [String]) -> IgnoreRules {
        var ignore = IgnoreRules(patterns: patterns)
        if let text = try? String(contentsOfFile: directory + "/.gitignore", encoding: .utf8) {
            ignore.add(patterns: text.split(whereSeparator: { $0.isNewline }).map(String.init))
        }
        return ignore
    }
}

/// What `safe-watch doctor` reads of the machine. Each probe is one small read; the verdicts are
/// `Doctor`'s.
public enum MachineProbe {
    /// Where the sysctls are read: /proc/sys, or `SAFE_WATCH_PROC_SYS` (a directory holding
    /// `fs/inotify/max_user_watches` and `max_user_instances`), so a test can give doctor a limit
    /// the machine does not have.
    public static var procSys: String {
        ProcessInfo.processInfo.environment["SAFE_WATCH_PROC_SYS"].flatMap { $0.isEmpty ? nil : $0 } ?? "/proc/sys"
    }

    /// An integer sysctl, e.g. `fs/inotify/max_user_watches`; nil when it cannot be read.
    public static func sysctl(_ name: String, in procSys: String = Self.procSys) -> Int? {
        guard let text = readProcFile(procSys + "/" + name) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The directories safe-watch's inotify watcher would watch: each path itself and every
    /// directory below it that the ignore rules let through (one watch each).
    public static func watchedDirectories(root: String, paths: [String], ignore: IgnoreRules) -> Int {
        let roots = paths.filter { path in
            var info = stat()
            let absolute = path == "." ? root : root + "/" + path
            return stat(absolute, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
        }
        guard !roots.isEmpty else { return 0 }
        return roots.count + scanTree(root: root, paths: roots, ignore: ignore).values.count(where: \.isDirectory)
    }

    /// inotify instances and watches held by this user's processes (the limits are per user).
    /// Every process of the user can be read: an instance is an fd linking to `anon_inode:inotify`,
    /// its watches are the `inotify wd:` lines of its fdinfo (proc(5)).
    public static func inotifyUsage() -> (instances: Int, watches: Int) {
        var instances = 0
        var watches = 0
        let user = getuid()
        guard let proc = opendir("/proc") else { return (0, 0) }
        defer { closedir(proc) }
        var buffer = [CChar](repeating: 0, count: 64)
        while let entry = readdir(proc) {
            let pid = entryName(entry)
            guard pid.first?.isNumber == true else { continue }
            var info = stat()
            guard stat("/proc/\(pid)", &info) == 0, info.st_uid == user, let fds = opendir("/proc/\(pid)/fd") else { continue }
            defer { closedir(fds) }
            while let fdEntry = readdir(fds) {
                let fd = entryName(fdEntry)
                guard fd.first?.isNumber == true else { continue }
                let count = readlink("/proc/\(pid)/fd/\(fd)", &buffer, buffer.count - 1)
                guard count > 0 else { continue }
                let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard target == "anon_inode:inotify" else { continue }
                instances += 1
                let fdinfo = readProcFile("/proc/\(pid)/fdinfo/\(fd)") ?? ""
                watches += fdinfo.split(separator: "\n").count { $0.hasPrefix("inotify wd:") }
            }
        }
        return (instances, watches)
    }

    /// Binds `address` for a moment, as `run` will.
    public static func port(_ address: ListenAddress) -> Doctor.PortProbe {
        do {
            let fd = try ListeningSockets.bind(host: address.host, port: address.port)
            FileDescriptor(rawValue: fd).close()
            return .free
        } catch {
            switch error.errno {
            case .addressInUse: return .inUse
            case .permissionDenied: return .permissionDenied
            case .addressNotAvailable: return .addressNotAvailable
            default: return .failed(error.description)
            }
        }
    }

    /// The libsystemd file this process loaded (the binary links it, so it is there whenever
    /// safe-watch starts); its name carries the library's version, e.g. `libsystemd.so.0.35.0`.
    public static func loadedLibsystemd() -> String? {
        guard let maps = readProcFile("/proc/self/maps") else { return nil }
        return maps.split(separator: "\n").lazy
            .compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init) }
            .first { $0.contains("/libsystemd.so") }
    }

    /// systemd is the init system (`sd_booted`: /run/systemd/system exists).
    public static var systemdBooted: Bool { sd_booted() > 0 }

    /// A systemd user manager runs for this user: its private socket is in $XDG_RUNTIME_DIR.
    public static var userManagerRunning: Bool {
        let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/run/user/\(getuid())"
        return FileManager.default.fileExists(atPath: runtime + "/systemd/private")
    }
}
