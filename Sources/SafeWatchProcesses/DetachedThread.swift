import CSafeWatchShims
import Glibc

/// Runs `body` on a thread of its own, detached: for work that blocks in a system call (a `poll`
/// on a pipe, the spawner's wait for jobs) and so must not hold a thread of the Swift concurrency
/// pool. `name` is what `top -H` and a debugger show (its first 15 bytes).
func startDetachedThread(named name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
    let start = Unmanaged.passRetained(ThreadStart(name: name, body: body))
    var thread = pthread_t()
    let created = pthread_create(&thread, nil, { context in
        guard let context else { return nil }
        let start = Unmanaged<ThreadStart>.fromOpaque(context).takeRetainedValue()
        _ = sw_set_thread_name(start.name)  // a name is only for people: no failure to report
        start.body()
        return nil
    }, start.toOpaque())
    guard created == 0 else {
        start.release()
        // pthread_create returns its error rather than setting errno.
        throw SystemError(call: "pthread_create", errno: Errno(rawValue: created), context: name)
    }
    pthread_detach(thread)
}

private final class ThreadStart: Sendable {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}
