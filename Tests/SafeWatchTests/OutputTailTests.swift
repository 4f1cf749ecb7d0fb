import SafeWatchCore
import Testing

@testable import SafeWatch

/// What a server printed, kept for saying why it died.
@Suite struct OutputTailTests {
    @Test func keepsTheLastLinesAndTheNotableOnesBeforeThem() {
        let tail = OutputTail(limit: 3, notable: PortHandoff.isNotable)
        tail.append("[ WARNING ] bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)")
        // A crash's backtrace after it: far more lines than are kept.
        for frame in 0..<200 { tail.append("  \(frame) 0x0000 in App") }
        #expect(tail.lines == ["[ WARNING ] bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)", "  197 0x0000 in App", "  198 0x0000 in App", "  199 0x0000 in App"])
        #expect(PortHandoff(port: 1, mode: .proxy, args: [], portEnv: "PORT", publicAddress: nil).diagnoseExit(output: tail.lines) != nil)
    }
}
