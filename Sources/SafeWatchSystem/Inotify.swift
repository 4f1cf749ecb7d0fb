import Glibc
import SafeWatchProcesses

/// The inotify calls, as Glibc imports them (no shim needed; `IN_ALL_EVENTS` and the flexible
/// `name` member are not imported, so events are decoded by hand).
public enum Inotify {
    /// The events safe-watch asks for on every watched directory.
    public static let directoryMask: UInt32 =
        UInt32(IN_CREATE) | UInt32(IN_MODIFY) | UInt32(IN_CLOSE_WRITE) | UInt32(IN_ATTRIB) | UInt32(IN_DELETE)
        | UInt32(IN_MOVED_FROM) | UInt32(IN_MOVED_TO) | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF)
        | UInt32(IN_ONLYDIR) | UInt32(IN_DONT_FOLLOW) | UInt32(IN_EXCL_UNLINK)

    public struct Event: Equatable, Sendable {
        public var watch: Int32
        public var mask: UInt32
        public var cookie: UInt32
        public var name: String

        public func has(_ flag: Int32) -> Bool { self.mask & UInt32(bitPattern: flag) != 0 }
        public func has(_ flag: UInt32) -> Bool { self.mask & flag != 0 }
    }

    public static func initialize() throws(SystemError) -> FileDescriptor {
        FileDescriptor(rawValue: try Syscall.retrying("inotify_init1") { inotify_init1(Int32(IN_CLOEXEC)) })
    }

    /// A watch on `path`: the watch descriptor events name it by (not a file descriptor).
    public static func addWatch(_ fd: FileDescriptor, path: String, mask: UInt32 = directoryMask) throws(SystemError) -> Int32 {
        try Syscall.retrying("inotify_add_watch", context: path) { inotify_add_watch(fd.rawValue, path, mask) }
    }

    /// Best effort: the kernel has dropped the watch already when its directory went (EINVAL).
    public static func removeWatch(_ fd: FileDescriptor, _ watch: Int32) {
        _ = try? Syscall.retrying("inotify_rm_watch") { inotify_rm_watch(fd.rawValue, watch) }
    }

    /// Decodes the events in one `read` of an inotify descriptor (the kernel returns whole events).
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> [Event] {
        var events: [Event] = []
        let header = MemoryLayout<inotify_event>.size  // 16 bytes; `name` follows, `len` bytes long
        var offset = 0
        while offset + header <= bytes.count {
            let watch = bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let cookie = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameStart = offset + header
            let nameEnd = min(nameStart + length, bytes.count)
            let nameBytes = bytes[nameStart..<nameEnd]
            let name = String(decoding: nameBytes.prefix(while: { $0 != 0 }), as: UTF8.self)
            events.append(Event(watch: watch, mask: mask, cookie: cookie, name: name))
            offset = nameStart + length
        }
        return events
    }
}
