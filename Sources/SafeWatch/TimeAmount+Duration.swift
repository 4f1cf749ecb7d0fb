import NIOCore

extension TimeAmount {
    /// NIO's nanoseconds for a Swift `Duration`, capped at what Int64 holds instead of trapping:
    /// durations come from the configuration, and a large one must mean "very long", not a crash.
    init(saturating duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let limit = Int64.max / 1_000_000_000 - 1
        if seconds >= limit {
            self = .nanoseconds(Int64.max)
        } else if seconds < 0 {
            self = .zero
        } else {
            self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }
    }
}
