import SafeWatchCore
import Testing

@Suite("Backoff")
struct BackoffTests {
    @Test("100 ms, doubling, capped at 5 s")
    func defaultSequence() {
        let backoff = Backoff()
        let delays = (0...8).map { backoff.delay(afterFailures: $0) }
        #expect(
            delays == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                .milliseconds(3200), .seconds(5), .seconds(5), .seconds(5),
            ])
    }

    @Test("many failures stay at the maximum without overflow", arguments: [10, 63, 64, 65, 1000, Int.max])
    func manyFailures(failures: Int) {
        #expect(Backoff().delay(afterFailures: failures) == .seconds(5))
    }

    @Test("custom initial and maximum")
    func custom() {
        let backoff = Backoff(initial: .seconds(1), maximum: .seconds(3))
        #expect(backoff.delay(afterFailures: 0) == .seconds(1))
        #expect(backoff.delay(afterFailures: 1) == .seconds(2))
        #expect(backoff.delay(afterFailures: 2) == .seconds(3))
        #expect(backoff.delay(afterFailures: 3) == .seconds(3))
    }

    @Test("an initial above the maximum is capped")
    func initialAboveMaximum() {
        let backoff = Backoff(initial: .seconds(10), maximum: .seconds(5))
        #expect(backoff.delay(afterFailures: 0) == .seconds(5))
        #expect(backoff.delay(afterFailures: 1) == .seconds(5))
    }
}

@Suite("Durations")
struct DurationTests {
    @Test(
        "humanReadable",
        arguments: [
            (Duration.milliseconds(240), "240 ms"),
            (.zero, "0 ms"),
            (.microseconds(1500), "2 ms"),
            (.milliseconds(999), "999 ms"),
            (.milliseconds(1000), "1.0 s"),
            (.milliseconds(3100), "3.1 s"),
            (.milliseconds(3140), "3.1 s"),
            (.milliseconds(3160), "3.2 s"),
            (.seconds(30), "30.0 s"),
            (.seconds(60), "1 min 0 s"),
            (.seconds(125), "2 min 5 s"),
            (.seconds(3600), "60 min 0 s"),
        ])
    func humanReadable(duration: Duration, expected: String) {
        #expect(duration.humanReadable == expected)
    }

    @Test("seconds as a Double")
    func seconds() {
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(Duration.seconds(3).seconds == 3.0)
        #expect(Duration.zero.seconds == 0)
        #expect(Duration.milliseconds(-250).seconds == -0.25)
    }

    @Test(
        "parseDuration accepts",
        arguments: [
            ("250ms", Duration.milliseconds(250)),
            ("1.5s", .milliseconds(1500)),
            ("2m", .seconds(120)),
            ("1h", .seconds(3600)),
            ("5s", .seconds(5)),
            ("0s", .zero),
            ("10us", .microseconds(10)),
            ("42ns", .nanoseconds(42)),
            (" 3s ", .seconds(3)),
            ("3 s", .seconds(3)),
            ("4.1ms", .microseconds(4100)),
            ("1.001s", .milliseconds(1001)),
            ("0.1s", .milliseconds(100)),
            ("0.3s", .milliseconds(300)),
        ])
    func parseDurationAccepts(text: String, expected: Duration) {
        #expect(parseDuration(text) == expected)
    }

    @Test(
        "parseDuration rejects",
        arguments: ["", "5", "ms", "s", "-1s", "fast", "1.5 minutes", "5 sec", "nans", "infs", "1e30h", "1e300s", "5d"])
    func parseDurationRejects(text: String) {
        #expect(parseDuration(text) == nil)
    }
}
