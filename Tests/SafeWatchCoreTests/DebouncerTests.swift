import SafeWatchCore
import Testing

@Suite("Debouncer")
struct DebouncerTests {
    let start: Moment = .seconds(1000)

    @Test("a burst of 5,000 paths over time is released once, after the quiet period since the last change")
    func burst() {
        var debouncer = Debouncer(quietPeriod: .milliseconds(100))
        let paths = (0..<5000).map { "Sources/App/File\($0).swift" }
        var now = start
        var expected: [String] = []
        // 50 batches of 100 new paths, 10 ms apart, each also repeating paths already seen.
        for batch in 0..<50 {
            let fresh = Array(paths[(batch * 100)..<((batch + 1) * 100)])
            let repeats = batch == 0 ? [] : [paths[0], paths[batch * 100 - 1]]
            let next = debouncer.record(repeats + fresh + [fresh[0]], at: now)
            expected += fresh
            #expect(next == now + .milliseconds(100))
            #expect(debouncer.nextCheck == now + .milliseconds(100))
            #expect(debouncer.release(at: now) == nil)
            #expect(debouncer.release(at: now + .milliseconds(9)) == nil)
            now += .milliseconds(10)
        }
        let last = start + .milliseconds(490)
        #expect(debouncer.release(at: last + .milliseconds(50)) == nil)
        #expect(debouncer.release(at: last + .milliseconds(99)) == nil)
        #expect(debouncer.release(at: last + .nanoseconds(99_999_999)) == nil)

        let released = debouncer.release(at: last + .milliseconds(100))
        #expect(released?.count == 5000)
        #expect(released == expected)
        #expect(released == paths)

        // Released once: nothing more, and nothing pending.
        #expect(debouncer.release(at: last + .milliseconds(200)) == nil)
        #expect(debouncer.release(at: last + .seconds(60)) == nil)
        #expect(debouncer.nextCheck == nil)
    }

    @Test("paths are deduplicated in first-seen order")
    func deduplicated() {
        var debouncer = Debouncer(quietPeriod: .milliseconds(50))
        _ = debouncer.record(["b.swift", "a.swift", "b.swift"], at: start)
        _ = debouncer.record(["c.swift", "a.swift"], at: start + .milliseconds(10))
        _ = debouncer.record(["b.swift", "d.swift"], at: start + .milliseconds(20))
        #expect(debouncer.release(at: start + .milliseconds(69)) == nil)
        #expect(debouncer.release(at: start + .milliseconds(70)) == ["b.swift", "a.swift", "c.swift", "d.swift"])
    }

    @Test("the quiet period runs from the latest change seen, whatever order two watchers' changes arrive in")
    func changesSeenOutOfOrder() {
        var debouncer = Debouncer(quietPeriod: .milliseconds(50))
        #expect(debouncer.record(["polled.swift"], at: start + .milliseconds(30)) == start + .milliseconds(80))
        // Read by the other watcher 20 ms before, recorded after: it does not shorten the wait.
        #expect(debouncer.record(["watched.swift"], at: start + .milliseconds(10)) == start + .milliseconds(80))
        #expect(debouncer.nextCheck == start + .milliseconds(80))
        #expect(debouncer.release(at: start + .milliseconds(79)) == nil)
        #expect(debouncer.release(at: start + .milliseconds(80)) == ["polled.swift", "watched.swift"])
        // A new burst starts from its own first change.
        #expect(debouncer.record(["next.swift"], at: start + .milliseconds(200)) == start + .milliseconds(250))
    }

    @Test("a late change restarts the quiet period")
    func lateChangeRestarts() {
        var debouncer = Debouncer(quietPeriod: .milliseconds(100))
        _ = debouncer.record(["a.swift"], at: start)
        // 99 ms later: still quiet period, then another change arrives.
        #expect(debouncer.release(at: start + .milliseconds(99)) == nil)
        let next = debouncer.record(["b.swift"], at: start + .milliseconds(99))
        #expect(next == start + .milliseconds(199))
        #expect(debouncer.release(at: start + .milliseconds(100)) == nil)
        #expect(debouncer.release(at: start + .milliseconds(198)) == nil)
        #expect(debouncer.release(at: start + .milliseconds(199)) == ["a.swift", "b.swift"])
    }

    @Test("nothing recorded, nothing released")
    func empty() {
        var debouncer = Debouncer(quietPeriod: .milliseconds(100))
        #expect(debouncer.nextCheck == nil)
        #expect(debouncer.release(at: start) == nil)
        #expect(debouncer.release(at: start + .seconds(10)) == nil)
    }

    @Test("a second burst after a release starts fresh")
    func secondBurst() {
        var debouncer = Debouncer(quietPeriod: .milliseconds(100))
        _ = debouncer.record(["a.swift", "b.swift"], at: start)
        #expect(debouncer.release(at: start + .milliseconds(100)) == ["a.swift", "b.swift"])
        _ = debouncer.record(["b.swift", "c.swift"], at: start + .seconds(1))
        #expect(debouncer.nextCheck == start + .milliseconds(1100))
        #expect(debouncer.release(at: start + .milliseconds(1050)) == nil)
        #expect(debouncer.release(at: start + .milliseconds(1100)) == ["b.swift", "c.swift"])
    }

    @Test("a zero quiet period releases at once")
    func zeroQuietPeriod() {
        var debouncer = Debouncer(quietPeriod: .zero)
        #expect(debouncer.record(["a.swift"], at: start) == start)
        #expect(debouncer.release(at: start) == ["a.swift"])
    }

    // MARK: sameSecondWait

    @Test("a file modified in the current second waits until just past the next whole second")
    func sameSecond() {
        let wait = sameSecondWait(now: 1_700_000_100.3, newestModification: 1_700_000_100.2)
        // 0.7 s to the next second, plus ~1 ms margin.
        #expect(wait >= .milliseconds(701))
        #expect(wait < .milliseconds(702))
        // now + wait lands after the whole second.
        #expect(1_700_000_100.3 + wait.seconds > 1_700_000_101.0)
    }

    @Test("a modification late in the second waits only a little")
    func lateInSecond() {
        let wait = sameSecondWait(now: 500.999, newestModification: 500.998)
        #expect(wait >= .milliseconds(2))
        #expect(wait < .milliseconds(3))
    }

    @Test("a modification exactly on a whole second waits the full second")
    func onWholeSecond() {
        let wait = sameSecondWait(now: 200.0, newestModification: 200.0)
        #expect(wait >= .milliseconds(1001))
        #expect(wait < .milliseconds(1002))
    }

    @Test("a modification time in the future (clock skew) waits past its second")
    func futureModification() {
        let wait = sameSecondWait(now: 100.5, newestModification: 101.2)
        #expect(wait >= .milliseconds(1501))
        #expect(wait < .milliseconds(1502))
    }

    @Test("an older modification needs no wait", arguments: [(100.3, 99.9), (100.0, 99.0), (100.0, 99.999), (5000.0, 1.0)])
    func olderModification(now: Double, newest: Double) {
        #expect(sameSecondWait(now: now, newestModification: newest) == .zero)
    }

    @Test("no modification time needs no wait")
    func noModification() {
        #expect(sameSecondWait(now: 100.3, newestModification: nil) == .zero)
    }
}
