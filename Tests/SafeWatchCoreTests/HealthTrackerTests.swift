import SafeWatchCore
import Testing

@Suite("HealthTracker")
struct HealthTrackerTests {
    let start: Moment = .seconds(50)

    func tracker(success: Int = 1, failure: Int = 3, startup: Duration = .seconds(30)) -> HealthTracker {
        HealthTracker(
            check: HealthCheck(
                kind: .tcp, interval: .milliseconds(100), timeout: .seconds(1), successThreshold: success,
                failureThreshold: failure, startupTimeout: startup),
            startedAt: start)
    }

    @Test("success threshold 1: the first success is healthy")
    func firstSuccess() {
        var tracker = tracker()
        #expect(tracker.record(.success, at: start + .milliseconds(100)) == .healthy)
    }

    @Test("success threshold 2 needs two consecutive successes")
    func twoSuccesses() {
        var tracker = tracker(success: 2)
        #expect(tracker.record(.success, at: start + .milliseconds(100)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(200)) == .healthy)
    }

    @Test("a notReady between successes breaks the run")
    func notReadyBreaksSuccesses() {
        var tracker = tracker(success: 2)
        #expect(tracker.record(.success, at: start + .milliseconds(100)) == .pending)
        #expect(tracker.record(.notReady("connection refused"), at: start + .milliseconds(200)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(300)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(400)) == .healthy)
    }

    @Test("a failure between successes breaks the run")
    func failureBreaksSuccesses() {
        var tracker = tracker(success: 3)
        #expect(tracker.record(.success, at: start + .milliseconds(100)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(200)) == .pending)
        #expect(tracker.record(.failure("HTTP 500"), at: start + .milliseconds(300)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(400)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(500)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(600)) == .healthy)
    }

    @Test("notReady never counts toward failure_threshold")
    func notReadyIsNotFailure() {
        var tracker = tracker(failure: 3)
        for step in 1...100 {
            let verdict = tracker.record(.notReady("connection refused"), at: start + .milliseconds(100 * step))
            #expect(verdict == .pending, "probe \(step)")
        }
    }

    @Test("the startup timeout makes a never-ready candidate unhealthy, naming the last problem")
    func startupTimeout() {
        var tracker = tracker(startup: .seconds(5))
        #expect(tracker.record(.notReady("connection refused"), at: start + .seconds(1)) == .pending)
        #expect(tracker.record(.notReady("connection reset"), at: start + .milliseconds(4999)) == .pending)
        #expect(tracker.deadlineVerdict(at: start + .milliseconds(4999)) == .pending)
        #expect(
            tracker.record(.notReady("no route to host"), at: start + .seconds(5))
                == .unhealthy("not healthy within startup_timeout 5.0 s (last: no route to host)"))
        #expect(
            tracker.deadlineVerdict(at: start + .seconds(6))
                == .unhealthy("not healthy within startup_timeout 5.0 s (last: no route to host)"))
    }

    @Test("the deadline with no probe at all has no last problem")
    func deadlineWithoutProbes() {
        let tracker = tracker(startup: .milliseconds(500))
        #expect(tracker.deadlineVerdict(at: start) == .pending)
        #expect(tracker.deadlineVerdict(at: start + .milliseconds(499)) == .pending)
        #expect(
            tracker.deadlineVerdict(at: start + .milliseconds(500))
                == .unhealthy("not healthy within startup_timeout 500 ms"))
    }

    @Test("failures reaching failure_threshold are unhealthy")
    func failureThreshold() {
        var tracker = tracker(failure: 3)
        #expect(tracker.record(.failure("HTTP 503"), at: start + .milliseconds(100)) == .pending)
        #expect(tracker.record(.failure("HTTP 503"), at: start + .milliseconds(200)) == .pending)
        #expect(
            tracker.record(.failure("HTTP 404"), at: start + .milliseconds(300))
                == .unhealthy("health check failed 3 times in a row: HTTP 404"))
    }

    @Test("failure_threshold 1: the first failure is unhealthy")
    func failureThresholdOne() {
        var tracker = tracker(failure: 1)
        #expect(
            tracker.record(.failure("exit status 1"), at: start + .milliseconds(100))
                == .unhealthy("health check failed 1 times in a row: exit status 1"))
    }

    @Test("a success resets the failures")
    func successResetsFailures() {
        var tracker = tracker(success: 2, failure: 3)
        #expect(tracker.record(.failure("timeout"), at: start + .milliseconds(100)) == .pending)
        #expect(tracker.record(.failure("timeout"), at: start + .milliseconds(200)) == .pending)
        #expect(tracker.record(.success, at: start + .milliseconds(300)) == .pending)
        #expect(tracker.record(.failure("timeout"), at: start + .milliseconds(400)) == .pending)
        #expect(tracker.record(.failure("timeout"), at: start + .milliseconds(500)) == .pending)
        #expect(
            tracker.record(.failure("timeout"), at: start + .milliseconds(600))
                == .unhealthy("health check failed 3 times in a row: timeout"))
    }

    @Test("failures past the startup timeout are unhealthy by the deadline before the threshold")
    func failuresPastDeadline() {
        var tracker = tracker(failure: 5, startup: .seconds(1))
        #expect(tracker.record(.failure("HTTP 500"), at: start + .milliseconds(500)) == .pending)
        #expect(
            tracker.record(.failure("HTTP 502"), at: start + .seconds(1))
                == .unhealthy("not healthy within startup_timeout 1.0 s (last: HTTP 502)"))
    }

    @Test("HealthCheck defaults")
    func defaults() {
        let check = HealthCheck()
        #expect(check.kind == .http(path: "/health"))
        #expect(check.interval == .milliseconds(100))
        #expect(check.timeout == .seconds(2))
        #expect(check.successThreshold == 1)
        #expect(check.failureThreshold == 3)
        #expect(check.startupTimeout == .seconds(30))
    }
}
