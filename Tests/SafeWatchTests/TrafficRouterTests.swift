import Synchronization
import Testing

@testable import SafeWatch

/// What the proxy does with a client connection it cannot set up.
@Suite struct TrafficRouterTests {
    @Test func aConnectionThatCannotBeSetUpIsLoggedAndCountedNotDroppedSilently() {
        let router = TrafficRouter()
        let lines = Mutex<[String]>([])
        router.onConnectionFailure { line in lines.withLock { $0.append(line) } }
        #expect(router.connectionFailures.count == 0)
        router.connectionSetupFailed("setsockopt(SO_DEBUG): Permission denied (errno: 13)")
        #expect(lines.withLock { $0 } == [
            "the proxy could not set up a client connection and closed it: setsockopt(SO_DEBUG): Permission denied (errno: 13)"
        ])
        // A flood is counted in full but logged at most every 10 s.
        for _ in 0..<99 { router.connectionSetupFailed("again") }
        #expect(lines.withLock { $0.count } == 1)
        #expect(router.connectionFailures.count == 100)
        #expect(router.connectionFailures.last == "again")
    }
}
