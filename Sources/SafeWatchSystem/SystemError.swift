import Glibc

/// A failed system call, with errno turned into a sentence once, here.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The call that failed (`inotify_add_watch`, `posix_spawn`, …).
    public var call: String
    public var errno: Int32
    /// What it was doing, e.g. the path.
    public var context: String

    public init(call: String, errno: Int32, context: String = "") {
        self.call = call
        self.errno = errno
        self.context = context
    }

    public var description: String {
        let what = self.context.isEmpty ? self.call : "\(self.call) \(self.context)"
        return "\(what): \(String(cString: strerror(self.errno)))\(self.hint)"
    }

    /// What the user can do about the errors people actually hit.
    private var hint: String {
        switch (self.call, self.errno) {
        case ("inotify_add_watch", ENOSPC):
            return " — the inotify watch limit is reached; raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/)"
        case ("inotify_init1", EMFILE):
            return " — too many inotify instances; raise `fs.inotify.max_user_instances` with sysctl"
        case ("bind", EADDRINUSE):
            return " — another process listens there; stop it or choose another address with --listen"
        default:
            return ""
        }
    }
}

/// Calls `body` until it stops failing with EINTR; throws any other failure with errno captured
/// at once. Never use it for `close`, which must not be retried on Linux.
@discardableResult
public func retryingOnInterrupt<Result: BinaryInteger>(
    _ call: String, context: String = "", _ body: () -> Result
) throws(SystemError) -> Result {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = errno
        if code == EINTR { continue }
        throw SystemError(call: call, errno: code, context: context)
    }
}
