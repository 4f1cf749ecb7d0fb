import CSystemd
import Glibc

/// Structured logging to journald through libsystemd's `sd_journal_sendv` (the variadic
/// `sd_journal_send` cannot be called from Swift).
public enum Journal {
    /// journald's native socket; libsystemd sends there.
    public static let socketPath = "/run/systemd/journal/socket"

    /// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM=dev:inode` names
    /// it): then safe-watch runs as a service and structured entries are better than text.
    public static func isStandardErrorTheJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    /// Whether journald's socket is there: without it `sd_journal_sendv` may report success and
    /// drop the entry, so the caller must not rely on it alone.
    public static var isAvailable: Bool {
        access(socketPath, W_OK) == 0
    }

    /// Sends one entry of `FIELD=value` pairs (`MESSAGE`, `PRIORITY`, …). False when journald did
    /// not take it; the caller then writes the line to stderr instead.
    public static func send(_ fields: [(String, String)]) -> Bool {
        let buffers = fields.map { field -> UnsafeMutableRawBufferPointer in
            let bytes = Array("\(field.0)=\(field.1)".utf8)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            buffer.copyBytes(from: bytes)
            return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<bytes.count])
        }
        defer { for buffer in buffers { buffer.deallocate() } }
        let vectors = buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        return vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) == 0 }
    }
}
