import SafeWatchCore
import Testing

@Suite("Event loop count")
struct EventLoopCountTests {
    @Test("half the cores, and never none")
    func halfTheCoresAndNeverNone() {
        #expect(eventLoopCount(forCores: 1) == 1)
        #expect(eventLoopCount(forCores: 2) == 1)
        #expect(eventLoopCount(forCores: 3) == 1)
        #expect(eventLoopCount(forCores: 8) == 4)
        #expect(eventLoopCount(forCores: 0) == 1)
    }
}
