import Foundation
import Glibc

/// Faults that no honest input produces, for integration tests. Each is read from an environment
/// variable named SAFE_WATCH_TEST_…, and does nothing when the variable is unset or empty.
enum TestHooks {
    /// SAFE_WATCH_TEST_STALL_LOOP_WHILE=FILE: while FILE exists, the supervisor's event loop blocks
    /// its thread before handling its next event, as a deadlock or a runaway computation would: no
    /// more WATCHDOG=1, no reaction to signals or control requests (builds, servers and the proxy
    /// carry on). Tests use it to show that a wedged safe-watch is still stopped by SIGTERM.
    /// Deleting FILE lets the loop go on.
    static let stallFile: String? = ProcessInfo.processInfo.environment["SAFE_WATCH_TEST_STALL_LOOP_WHILE"].flatMap {
        $0.isEmpty ? nil : $0
    }

    static func stallWhileAsked() {
        guard let file = Self.stallFile else { return }
        while access(file, F_OK) == 0 { usleep(50_000) }
    }
}
