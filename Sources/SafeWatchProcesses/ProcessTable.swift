import Glibc

/// What /proc says about processes, for the supervisor's clean-up duties.
public enum ProcessTable {
    /// Live (not zombie) children of `parent`.
    public static func children(of parent: pid_t) -> [pid_t] {
        pids().filter { pid in
            guard let stat = readProcFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")")
            else { return false }
            // After "comm)": state ppid …
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && fields[0] != "Z" && pid_t(fields[1]) == parent
        }
    }

    /// Processes other than this one running a program under `directory` (its executable, or the
    /// script an interpreter runs).
    public static func running(under directory: String) -> [pid_t] {
        pids().filter { pid in
            guard pid != getpid() else { return false }
            let executable = readLink("/proc/\(pid)/exe") ?? ""
            let arguments = readProcFile("/proc/\(pid)/cmdline")?.split(separator: "\0").prefix(2).map(String.init) ?? []
            return ([executable] + arguments).contains { $0.hasPrefix(directory) }
        }
    }

    private static func pids() -> [pid_t] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [pid_t] = []
        while let entry = readdir(directory) {
            if let pid = pid_t(entryName(entry)) { pids.append(pid) }
        }
        return pids
    }

    /// Where a symbolic link points; nil if it cannot be read (the process is gone, or not ours).
    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        let count = readlink(path, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A directory entry's name (of /proc here, and of the watched trees in SafeWatchSystem).
package func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

/// A /proc file read to its end. /proc files report size 0, and Foundation's
/// `String(contentsOfFile:)` then stops after its first read (4 KiB: /proc/self/maps came back cut
/// off), so read until read(2) returns 0.
public func readProcFile(_ path: String) -> String? {
    guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
    defer { fd.close() }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        // A read that fails (the process behind the file is gone, say) gives nothing, as open does.
        guard let count = try? fd.read(into: &chunk) else { return nil }
        guard count > 0 else { return String(decoding: bytes, as: UTF8.self) }
        bytes += chunk[0..<count]
    }
}
