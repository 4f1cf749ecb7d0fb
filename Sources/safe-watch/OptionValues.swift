import ArgumentParser
import SafeWatchCore

// `run`'s flags take exactly what safe-watch.toml's keys take: the same parsers read both. A bad
// value stops argument parsing with "The value 'x' is invalid for '--listen <host:port>': " and
// the reason (exit status 64), before anything starts.

/// `--mode`: a wrong name is answered with the list of modes ("Please provide one of …").
extension ServeMode: ExpressibleByArgument {}

/// The parsers `@Option(transform:)` uses where the reason a value is wrong matters more than the
/// list of right ones (an address, a duration).
enum OptionValue {
    /// `--listen`: as `[serve] listen`.
    static func listenAddress(_ text: String) throws(OptionValueError) -> ListenAddress {
        guard let address = ListenAddress(parsing: text) else {
            throw OptionValueError("not an address (use 127.0.0.1:8080, [::1]:8080, or :8080 for the loopback)")
        }
        return address
    }

    /// `--debounce`: as `[watch] debounce`.
    static func duration(_ text: String) throws(OptionValueError) -> Duration {
        guard let duration = parseDuration(text) else {
            throw OptionValueError("not a duration (use a number with ms, s, m or h: 100ms, 1.5s)")
        }
        return duration
    }

    /// `--poll` and SAFE_WATCH_POLL: as `[watch] poll`'s strings.
    static func pollSetting(_ text: String) throws(PollSettingError) -> PollSetting {
        try PollSetting(parsing: text)
    }
}

/// Why a flag's value was refused; argument-parser prints it after the value and the flag's name.
struct OptionValueError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
