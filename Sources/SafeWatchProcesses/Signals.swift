/// Signal names people write in configuration, with Linux's numbers.
public let signalNumbers: [String: Int32] = [
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12,
    "SIGTERM": 15, "SIGCONT": 18, "SIGSTOP": 19, "SIGWINCH": 28,
]

/// "SIGTERM", "TERM", "term" or "15" → 15; nil for anything else.
public func parseSignal(_ text: String) -> Int32? {
    let upper = text.uppercased()
    if let number = Int32(upper), signalNumbers.values.contains(number) { return number }
    return signalNumbers[upper] ?? signalNumbers["SIG" + upper]
}

/// 15 → "SIGTERM"; unknown numbers print as the number.
public func signalName(_ signal: Int32) -> String {
    signalNumbers.first(where: { $0.value == signal })?.key ?? String(signal)
}
