import Glibc

/// Process-wide state shared by the accept loop, the connection threads and
/// the signal thread.
///
/// Shutdown is broadcast with a pipe that nobody writes to: `beginShutdown()`
/// closes its write end, which makes `shutdownFD` permanently readable (POLLHUP).
/// Every thread that blocks does so in `poll()` with `shutdownFD` in its set,
/// so a single `close()` wakes all of them at once, with no flags to re-check
/// and no lost wake-ups.
final class ServerState: @unchecked Sendable {  // @unchecked: the mutable fields below are guarded by `lock`.
    /// Read end of the shutdown pipe. Readable once shutdown has begun.
    let shutdownFD: Int32
    private var shutdownWriteFD: Int32  // -1 once shutdown has begun
    private var activeConnections = 0
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let connectionsChanged = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { fatalError("pipe: \(errnoDescription())") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        shutdownFD = fds[0]
        shutdownWriteFD = fds[1]
        pthread_mutex_init(lock, nil)
        // Time out waits on the monotonic clock so that wall-clock jumps do
        // not stretch or cut short the shutdown grace period.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(connectionsChanged, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return body()
    }

    /// Starts a graceful shutdown. Returns false if it had already started.
    @discardableResult
    func beginShutdown() -> Bool {
        locked {
            guard shutdownWriteFD >= 0 else { return false }
            close(shutdownWriteFD)
            shutdownWriteFD = -1
            return true
        }
    }

    var isShuttingDown: Bool {
        locked { shutdownWriteFD < 0 }
    }

    /// Sleeps up to `seconds`, returning early (with true) if shutdown begins.
    func waitForShutdown(seconds: Double) -> Bool {
        pollReadable(shutdownFD, deadline: Deadline(after: seconds))
    }

    func connectionOpened() {
        locked { activeConnections += 1 }
    }

    func connectionClosed() {
        locked {
            activeConnections -= 1
            pthread_cond_broadcast(connectionsChanged)
        }
    }

    /// Waits until every connection has closed or `seconds` have passed.
    /// Returns the number of connections still open.
    func waitForConnectionsToClose(seconds: Double) -> Int {
        let deadline = Deadline(after: seconds).timespec
        return locked {
            withUnsafePointer(to: deadline) { deadline in
                while activeConnections > 0 {
                    if pthread_cond_timedwait(connectionsChanged, lock, deadline) == ETIMEDOUT { break }
                }
            }
            return activeConnections
        }
    }
}

/// The one instance; created by `main` before any other thread exists.
let server = ServerState()

// MARK: - Threads

/// Carries a Swift closure through `pthread_create`'s `void *` argument.
private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// Runs `body` on a new detached pthread. One plain thread per connection is
/// the simplest model that handles blocking handlers (like /slow) and a few
/// hundred clients; a small stack keeps that cheap. Returns false if the
/// thread could not be created.
func spawnThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    pthread_attr_setstacksize(&attributes, 512 * 1024)

    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, &attributes, { context in
        Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
        return nil
    }, context)
    if result != 0 {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        return false
    }
    return true
}

// MARK: - Signals

/// The signals that request a graceful shutdown.
private func shutdownSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGTERM)
    sigaddset(&set, SIGINT)
    return set
}

/// Arranges for SIGTERM and SIGINT to start a graceful shutdown.
///
/// Must be called before any other thread is started: the signals are blocked
/// here and every later thread inherits that mask, so the only place they are
/// ever delivered is the `sigwait` of the dedicated signal thread. That thread
/// runs ordinary code (no async-signal-safety constraints) and just calls
/// `beginShutdown()`.
func installSignalHandling() {
    // Writing to a socket whose peer has gone away must yield EPIPE, not kill us.
    signal(SIGPIPE, SIG_IGN)
    // A shell starts background jobs with SIGINT ignored, and an ignored signal
    // is discarded before sigwait could see it: restore the defaults first.
    signal(SIGTERM, SIG_DFL)
    signal(SIGINT, SIG_DFL)

    var set = shutdownSignals()
    pthread_sigmask(SIG_BLOCK, &set, nil)

    let started = spawnThread {
        var set = shutdownSignals()
        var signalNumber: Int32 = 0
        while true {
            guard sigwait(&set, &signalNumber) == 0 else { continue }
            if server.beginShutdown() {
                log("received \(signalNumber == SIGTERM ? "SIGTERM" : "SIGINT"), shutting down")
            }
            // Later signals are ignored: the shutdown is already bounded in time.
        }
    }
    if !started { fatalError("cannot start the signal thread") }
}

// MARK: - Time

/// A point on the monotonic clock.
struct Deadline {
    let timespec: timespec

    init(after seconds: Double) {
        var now = Glibc.timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        // In nanoseconds; capping at ~30 years keeps absurd inputs in range.
        let delta = Int(min(max(seconds, 0), 1e9) * 1e9)
        let nanoseconds = now.tv_nsec + delta % 1_000_000_000
        timespec = Glibc.timespec(tv_sec: now.tv_sec + delta / 1_000_000_000 + nanoseconds / 1_000_000_000,
                                  tv_nsec: nanoseconds % 1_000_000_000)
    }

    /// Milliseconds left, rounded up, as `poll()` wants them (0 once passed).
    var remainingMilliseconds: Int32 {
        var now = Glibc.timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanoseconds = (timespec.tv_sec - now.tv_sec) * 1_000_000_000 + (timespec.tv_nsec - now.tv_nsec)
        if nanoseconds <= 0 { return 0 }
        return Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
    }
}

/// Sleeps for `seconds` (fractions allowed), resuming after interruptions.
func sleep(seconds: Double) {
    var deadline = Deadline(after: seconds).timespec
    // An absolute deadline makes restarting after EINTR exact.
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil) == EINTR {}
}
