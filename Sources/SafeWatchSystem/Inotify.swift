import Glibc

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

    public static func initialize() throws(SystemError) -> Int32 {
        try retryingOnInterrupt("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
    }

    public static func addWatch(_ fd: Int32, path: String, mask: UInt32 = directoryMask) throws(SystemError) -> Int32 {
        try retryingOnInterrupt("inotify_add_watch", context: path) { inotify_add_watch(fd, path, mask) }
    }

    public static func removeWatch(_ fd: Int32, _ watch: Int32) {
        _ = inotify_rm_watch(fd, watch)
    }

    /// Reads every event available now; empty when none is (the fd is non-blocking).
    public static func readEvents(_ fd: Int32) throws(SystemError) -> [Event] {
        var events: [Event] = []
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, capacity)
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { return events }
                throw SystemError(call: "read", errno: code, context: "inotify")
            }
            if count == 0 { return events }
            var offset = 0
            let header = MemoryLayout<inotify_event>.size  // 16 bytes
            while offset + header <= count {
                let raw = buffer.baseAddress! + offset
                let watch = raw.loadUnaligned(as: Int32.self)
                let mask = raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                let cookie = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
                let length = Int(raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                var name = ""
                if length > 0 {
                    let bytes = UnsafeRawBufferPointer(start: raw + header, count: length)
                    let end = bytes.firstIndex(of: 0) ?? length
                    name = String(decoding: bytes[..<end], as: UTF8.self)
                }
                events.append(Event(watch: watch, mask: mask, cookie: cookie, name: name))
                offset += header + length
            }
        }
    }
}
