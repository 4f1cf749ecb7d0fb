import SafeWatchProcesses
import Testing

@Suite("Signals")
struct SignalTests {
    @Test(
        "parseSignal",
        arguments: [
            ("TERM", Int32?.some(15)),
            ("SIGTERM", 15),
            ("term", 15),
            ("sigterm", 15),
            ("SIGINT", 2),
            ("INT", 2),
            ("15", 15),
            ("2", 2),
            ("9", 9),
            ("HUP", 1),
            ("SIGUSR2", 12),
            ("WINCH", 28),
            ("bogus", nil),
            ("SIGBOGUS", nil),
            ("99", nil),
            ("-15", nil),
            ("0", nil),
            ("", nil),
            ("SIG", nil),
        ])
    func parse(text: String, expected: Int32?) {
        #expect(parseSignal(text) == expected)
    }

    @Test("signalName")
    func names() {
        #expect(signalName(15) == "SIGTERM")
        #expect(signalName(2) == "SIGINT")
        #expect(signalName(9) == "SIGKILL")
        #expect(signalName(64) == "64")
    }

    @Test("every named signal round-trips")
    func roundTrip() {
        for (name, number) in signalNumbers {
            #expect(parseSignal(name) == number)
            #expect(parseSignal(String(name.dropFirst(3))) == number)
            #expect(parseSignal(String(number)) == number)
            #expect(signalName(number) == name)
        }
    }
}
