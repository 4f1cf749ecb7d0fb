import CSafeWatchShims
import SafeWatchProcesses
import TestSupport
import Testing

/// `sleepForTimeout`, the timeout side of every race against real work: it lasts its duration,
/// ends at once when cancelled, and a cancelled one leaves no memory behind for long (a cancelled
/// `Task.sleep` keeps its job and timer until its deadline: ~0.8 KB per race for 10 minutes).
@Suite(.serialized) struct TimeoutSleepTests {
    @Test func anUncancelledTimeoutLastsItsDuration() async {
        let begun = ContinuousClock.now
        await sleepForTimeout(.milliseconds(300), step: .milliseconds(40))
        let slept = ContinuousClock.now - begun
        #expect(slept >= .milliseconds(300))
        #expect(slept < .seconds(5))
    }

    @Test func aCancelledTimeoutReturnsAtOnce() async {
        let started = AsyncStream<Void>.makeStream()
        let sleeper = Task {
            started.continuation.yield()
            await sleepForTimeout(.seconds(600))
        }
        for await _ in started.stream { break }
        let cancelled = ContinuousClock.now
        sleeper.cancel()
        await sleeper.value
        #expect(ContinuousClock.now - cancelled < .seconds(5))
    }

    /// The tests' own race, `result(within:)`: it returns at its limit even when the work does not
    /// heed cancellation, as a wait for a process that never exits does (a task group would wait
    /// for the work, and the test for its suite's time limit).
    @Test func theTestsRaceReturnsAtItsLimitWhenTheWorkIgnoresCancellation() async {
        // Not the race's child, so not cancelled by it; long enough that a loaded machine, slow to
        // run the race's timer (seconds, with every test running at once), still tells the two apart.
        let stubborn = Task { await sleepForTimeout(.seconds(120)) }
        let begun = ContinuousClock.now
        let value = await result(within: .milliseconds(200)) { () -> Int? in
            await stubborn.value
            return 1
        }
        let waited = ContinuousClock.now - begun
        #expect(value == nil)
        #expect(waited < .seconds(60), "returned after \(waited), at the work's end rather than its limit")
        #expect(await result(within: .seconds(30)) { 7 } == 7)
        stubborn.cancel()
    }

    /// 4,000 races won by the work, each cancelling a 10-minute timeout: once a step has passed,
    /// the heap is back where it was (a plain `Task.sleep(for:)` in its place keeps ~3 MB).
    @Test func cancelledTimeoutsLeaveNoMemoryBehind() async {
        let step = Duration.milliseconds(50)
        await Self.race(times: 200, step: step)  // the runtime's and the allocator's own first costs
        let settled = await waitUntil { await Self.heapIsSteady() }
        #expect(settled)
        let before = sw_heap_in_use()
        await Self.race(times: 4_000, step: step)
        var after = sw_heap_in_use()
        let returned = await waitUntil {
            after = sw_heap_in_use()
            return after < before + 1_048_576
        }
        #expect(returned, "heap in use \(before) → \(after) bytes after 4,000 cancelled timeouts")
    }

    private static func race(times: Int, step: Duration) async {
        for _ in 0..<times {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {}  // the work, done at once
                group.addTask { await sleepForTimeout(.seconds(600), step: step) }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Whether the heap in use moved by less than 64 KiB over 100 ms (what earlier steps left is
    /// freed by then).
    private static func heapIsSteady() async -> Bool {
        let first = sw_heap_in_use()
        try? await Task.sleep(for: .milliseconds(100))
        let second = sw_heap_in_use()
        return max(first, second) - min(first, second) < 64 << 10
    }
}
