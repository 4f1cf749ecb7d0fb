/// Parses the durations configuration uses: "250ms", "5s", "1.5s", "2m", "1h".
public func parseDuration(_ text: String) -> Duration? {
    let units: [(suffix: String, nanoseconds: Double)] = [
        ("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]
    let trimmed = text.trimmingWhitespace()
    for unit in units where trimmed.hasSuffix(unit.suffix) {
        let number = trimmed.dropLast(unit.suffix.count).trimmingWhitespace()
        guard let value = Double(number), value >= 0, value.isFinite else { return nil }
        // Rounded: "4.1ms" is 4_100_000 ns, not 4_099_999; too large for Int64 is invalid, not a trap.
        let nanoseconds = (value * unit.nanoseconds).rounded()
        guard nanoseconds < Double(Int64.max) else { return nil }
        return .nanoseconds(Int64(nanoseconds))
    }
    return nil
}

extension Duration {
    /// "240 ms", "3.1 s", "2 min 5 s": how people read a duration in a log line.
    public var humanReadable: String {
        let (seconds, attoseconds) = self.components
        let milliseconds = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        if milliseconds < 1000 { return "\(Int(milliseconds.rounded())) ms" }
        if milliseconds < 60_000 {
            let tenths = (milliseconds / 100).rounded() / 10
            return "\(tenths) s"
        }
        let total = Int(milliseconds / 1000)
        return "\(total / 60) min \(total % 60) s"
    }

    /// The duration in seconds as a floating-point number.
    public var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = self.firstIndex(where: { !isSpace($0) }),
            let end = self.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(self[start...end])
    }
}
