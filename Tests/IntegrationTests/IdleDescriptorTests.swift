import Foundation
import Glibc
import TestSupport
import Testing

extension SupervisorIntegrationTests {
    /// Load across two swaps, then quiet: within a few seconds safe-watch holds no more descriptors
    /// than it did serving generation 1 before any request. The proxy's pooled idle connections to
    /// the servers are closed after their idle timeout, and those to a generation that no longer
    /// gets requests at once; the old generations' pipes and pidfds are gone.
    @Test func idleDescriptorsReturnToTheirBaselineAfterSwaps() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "fds-1", arguments: ["--debounce", "20ms"])
        let baseline = descriptorTargets(of: safeWatch.pid)
        #expect(!baseline.isEmpty)

        let fresh = ClientPool(port: port, threads: 4, paths: ["/"], keepAlive: false)
        let kept = ClientPool(port: port, threads: 2, paths: ["/"], keepAlive: true)
        for generation in 2...3 {
            try setVersion("fds-\(generation)", in: directory)
            #expect(await safeWatch.log.waitForLine(containing: "✓ gen \(generation) healthy") != nil, "\(safeWatch.output)")
            #expect(await safeWatch.log.waitForLine(containing: "gen \(generation - 1) stopped") != nil, "\(safeWatch.output)")
        }
        let newConnections = await fresh.stop()
        let keepAlive = await kept.stop()
        #expect(newConnections.failures.isEmpty && keepAlive.failures.isEmpty)
        #expect(newConnections.ok > 0 && keepAlive.ok > 0)

        var now: [String] = []
        let returned = await waitUntil(limit: .seconds(20), checkingEvery: .milliseconds(100)) {
            now = descriptorTargets(of: safeWatch.pid)
            return now.count <= baseline.count
        }
        #expect(returned, "\(baseline.count) descriptors serving gen 1, \(now.count) idle after the swaps: \(Self.difference(now, baseline))")
        #expect(await safeWatch.terminate() == .exited(0))
    }

    /// What `now` holds beyond `baseline`, by target (socket:[…] become "socket").
    private static func difference(_ now: [String], _ baseline: [String]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for target in now { counts[kind(target), default: 0] += 1 }
        for target in baseline { counts[kind(target), default: 0] -= 1 }
        return counts.filter { $0.value != 0 }
    }

    private static func kind(_ target: String) -> String {
        target.hasPrefix("socket:") ? "socket" : target.hasPrefix("pipe:") ? "pipe" : target
    }
}

/// Where each of `pid`'s open descriptors points (readlink of /proc/PID/fd/N).
func descriptorTargets(of pid: pid_t) -> [String] {
    let directory = "/proc/\(pid)/fd"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0) }
}
