/// Writes straight to fd 2 (Glibc's `stderr` is shared mutable state to Swift 6). Best effort:
/// with stderr closed or gone there is nowhere left to say anything.
public func writeToStandardError(_ text: String) {
    try? FileDescriptor.standardError.writeAll(Array(text.utf8), descriptorMayBeClosed: true)
}
