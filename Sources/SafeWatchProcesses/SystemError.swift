import CSafeWatchShims
import Glibc

/// An error number, as a failed system call leaves it in `errno` (or returns it, like
/// `posix_spawn`). Only the values safe-watch decides something on are named.
public struct Errno: RawRepresentable, Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// The calling thread's errno: read it right after the call that failed, before anything
    /// else (an allocation, a log line) can overwrite it.
    public static var current: Errno { Errno(rawValue: sw_errno()) }

    /// The C library's sentence for it ("No such file or directory").
    public var description: String { String(cString: strerror(self.rawValue)) }

    public static let notPermitted = Errno(rawValue: EPERM)
    public static let noSuchFileOrDirectory = Errno(rawValue: ENOENT)
    public static let interrupted = Errno(rawValue: EINTR)
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    public static let ioError = Errno(rawValue: EIO)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let wouldBlock = Errno(rawValue: EWOULDBLOCK)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let badAddress = Errno(rawValue: EFAULT)
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    public static let isDirectory = Errno(rawValue: EISDIR)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let readOnlyFileSystem = Errno(rawValue: EROFS)
    public static let fileNameTooLong = Errno(rawValue: ENAMETOOLONG)
    public static let addressInUse = Errno(rawValue: EADDRINUSE)
    public static let addressNotAvailable = Errno(rawValue: EADDRNOTAVAIL)
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    public static let diskQuotaExceeded = Errno(rawValue: EDQUOT)

    /// Only a bug in safe-watch gets these: a descriptor used after it was closed (by then the
    /// number may be another file's), or a pointer to memory that is not there.
    var isABug: Bool { self == .badFileDescriptor || self == .badAddress }
}

/// A failed system call, with errno turned into a sentence once, here.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed (`inotify_add_watch`, `posix_spawn`, …).
    public var call: String
    public var errno: Errno
    /// What it was doing, e.g. the path.
    public var context: String

    public init(call: String, errno: Errno, context: String = "") {
        self.call = call
        self.errno = errno
        self.context = context
    }

    /// The call of a spawn whose program could not be run (the `context` is the program): said as
    /// "cannot run PROGRAM: REASON", what people recognise from their shell.
    public static let execCall = "execve"

    /// True when a spawned program could not be run (missing, not executable, bad interpreter).
    public var isExecFailure: Bool { self.call == Self.execCall }

    public var description: String {
        if self.isExecFailure { return "cannot run \(self.context): \(self.errno)" }
        let what = self.context.isEmpty ? self.call : "\(self.call) \(self.context)"
        return "\(what): \(self.errno)\(self.hint)"
    }

    /// What the user can do about the errors people actually hit.
    private var hint: String {
        switch (self.call, self.errno) {
        case ("inotify_add_watch", .noSpace):
            return " — the inotify watch limit is reached; raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/)"
        case ("inotify_init1", .tooManyOpenFiles):
            return " — too many inotify instances; raise `fs.inotify.max_user_instances` with sysctl"
        case ("bind", .addressInUse):
            return " — another process listens there; stop it, or choose another address with --listen or serve.listen"
        default:
            return ""
        }
    }
}

/// How safe-watch makes a system call: one place that retries after a signal, reads errno at
/// once and stops on the errors only a bug can cause. NIOPosix's `syscall(blocking:where:_:)` does
/// the same for SwiftNIO's own calls.
public enum Syscall {
    /// Calls `body` — a system call that returns -1 and sets errno when it fails — again for as
    /// long as it fails with EINTR (a signal arrived while it blocked: a handler installed without
    /// SA_RESTART, or a call the kernel never restarts, such as `poll`), and returns its result.
    /// Any other failure is thrown with the errno read at once. `body` runs anew each time, so a
    /// timeout computed inside it shrinks as time passes.
    ///
    /// EBADF and EFAULT stop the process: they mean a descriptor used after it was closed (its
    /// number may belong to another file by now) or a bad pointer, and going on would read or write
    /// the wrong thing. `descriptorMayBeClosed` is for the descriptors safe-watch was given rather
    /// than opened (0, 1, 2): whoever started it may have closed them, which is not a bug here.
    ///
    /// Never for `close`, which must not be retried on Linux: `FileDescriptor.close()`.
    @discardableResult
    public static func retrying<Result: FixedWidthInteger & SignedInteger>(
        _ call: String, context: String = "", descriptorMayBeClosed: Bool = false, _ body: () -> Result
    ) throws(SystemError) -> Result {
        while true {
            let result = body()
            guard result == -1 else { return result }
            let code = Errno.current
            if code == .interrupted { continue }
            if code.isABug && !(descriptorMayBeClosed && code == .badFileDescriptor) {
                preconditionFailure("\(call)\(context.isEmpty ? "" : " \(context)"): \(code) (errno \(code.rawValue)): a bug in safe-watch")
            }
            throw SystemError(call: call, errno: code, context: context)
        }
    }
}
