import Foundation
import Glibc
import SafeWatchProcesses

/// Changing who this process is (OwnerSwitch decides when).
public enum Privileges {
    /// The owner and group of `path` (following a symlink), nil if it cannot be examined.
    public static func owner(of path: String) -> (uid: UInt32, gid: UInt32)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (info.st_uid, info.st_gid)
    }

    /// The first directory in the tree at `root` (itself included; only itself unless `descending`)
    /// that this process cannot create and remove entries in, by its effective ids; nil when it can
    /// write them all (or `root` is missing). Symbolic links are not followed.
    public static func firstUnwritableDirectory(in root: String, descending: Bool = true) -> String? {
        var pending = [root]
        while let directory = pending.popLast() {
            var info = stat()
            guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            if faccessat(AT_FDCWD, directory, W_OK | X_OK, AT_EACCESS) != 0 { return directory }
            guard descending else { continue }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            pending += entries.map { directory + "/" + $0 }
        }
        return nil
    }

    /// The user name of `uid`, nil when the passwd database has none (a host's uid in a container).
    public static func userName(of uid: UInt32) -> String? {
        guard let entry = getpwuid(uid) else { return nil }
        return String(cString: entry.pointee.pw_name)
    }

    /// Becomes `uid`/`gid` for good: the groups first (the user's, or only `gid` when the passwd
    /// database does not know the uid), then the group, then the user — after setuid nothing else
    /// may be changed. glibc applies each change to every thread of the process. HOME, USER and
    /// LOGNAME follow the passwd entry; without one, a HOME the new user cannot write becomes /tmp,
    /// because `swift build` keeps its caches under HOME.
    public static func become(uid: UInt32, gid: UInt32) throws(SystemError) {
        let entry = getpwuid(uid)
        if let entry {
            try Syscall.retrying("initgroups", context: "uid \(uid)") { initgroups(entry.pointee.pw_name, gid) }
        } else {
            var groups = [gid]
            try Syscall.retrying("setgroups", context: "gid \(gid)") { setgroups(1, &groups) }
        }
        try Syscall.retrying("setgid", context: "\(gid)") { setgid(gid) }
        try Syscall.retrying("setuid", context: "\(uid)") { setuid(uid) }
        // Never go on half-switched: root must be out of reach.
        guard getuid() == uid, geteuid() == uid, getegid() == gid, setuid(0) != 0 else {
            throw SystemError(call: "setuid", errno: .notPermitted, context: "\(uid): root could still be regained")
        }
        if let entry {
            setenv("HOME", entry.pointee.pw_dir, 1)
            setenv("USER", entry.pointee.pw_name, 1)
            setenv("LOGNAME", entry.pointee.pw_name, 1)
        } else if let home = getenv("HOME").map({ String(cString: $0) }), access(home, W_OK) != 0 {
            setenv("HOME", "/tmp", 1)
        }
    }

    /// Runs this program again with `arguments`, in this process (same pid: PID 1 stays PID 1), and
    /// returns only if that failed. After `become`, needed for a clean switch: a Swift program with
    /// an async main has already ended its main thread (dispatch_main), whose credentials no call can
    /// change any more, and the kernel shows the process as that thread's user (ps, /proc/PID); the
    /// thread that execs becomes the new main thread with the new credentials.
    public static func runAgain(arguments: [String]) -> SystemError {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &argv)
        let failure = SystemError(call: "execv", errno: .current, context: "/proc/self/exe")
        for pointer in argv { free(pointer) }
        return failure
    }

    /// Gives `path` and everything under it to `uid`/`gid`. Symbolic links are changed themselves,
    /// never followed, so nothing outside the tree changes hands. Best effort: what cannot be
    /// changed is left as it is and counted.
    @discardableResult
    public static func giveTree(_ path: String, uid: UInt32, gid: UInt32) -> Int {
        var failures = lchown(path, uid, gid) == 0 ? 0 : 1
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR,
            let entries = try? FileManager.default.contentsOfDirectory(atPath: path)
        else { return failures }
        for entry in entries {
            failures += giveTree(path + "/" + entry, uid: uid, gid: gid)
        }
        return failures
    }
}
