/// Delays between restarts of a crashing server: `initial`, doubling, never above `maximum`.
public struct Backoff: Equatable, Sendable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before the next attempt after `failures` consecutive failures (0 → `initial`).
    public func delay(afterFailures failures: Int) -> Duration {
        var delay = self.initial
        for _ in 0..<min(failures, 64) {
            delay = delay * 2
            if delay >= self.maximum { return self.maximum }
        }
        return min(delay, self.maximum)
    }
}
