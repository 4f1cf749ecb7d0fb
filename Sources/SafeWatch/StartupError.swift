/// What safe-watch cannot go on from: printed as one clear message, exit with a sysexits code.
public struct StartupError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var exitCode: Int32

    public init(_ message: String, exitCode: Int32) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { self.message }

    // sysexits.h
    public static let usage: Int32 = 64
    public static let noInput: Int32 = 66
    public static let unavailable: Int32 = 69
    public static let software: Int32 = 70
    public static let osError: Int32 = 71
    public static let config: Int32 = 78
}
