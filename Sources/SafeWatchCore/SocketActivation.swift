/// A listening socket systemd passed (socket activation or safe-watch's own fd store).
public struct InheritedSocket: Equatable, Sendable {
    public var fd: Int32
    /// Its `LISTEN_FDNAMES` entry: the `.socket` unit's `FileDescriptorName=` (default: the unit's
    /// name), or the `FDNAME=` safe-watch stored it under.
    public var name: String

    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }
}

/// Which passed sockets become the public listener(s): pure, from the environment
/// systemd sets (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, fds from 3).
public struct SocketActivation: Equatable, Sendable {
    /// The name safe-watch parks its own listener under in systemd's fd store.
    public static let storedListenerName = "safe-watch-listen"

    /// The sockets to serve on; empty: bind `serve.listen`.
    public var listeners: [InheritedSocket] = []
    /// Passed sockets not used (close them; stored ones are also removed from the store).
    public var unused: [InheritedSocket] = []
    /// Said at start, serving goes on.
    public var warnings: [String] = []
    /// The sockets cannot be used as configured: say it and do not start.
    public var error: String?

    /// Whether the listeners came from a `.socket` unit (systemd keeps them open itself) rather
    /// than from safe-watch's own fd store.
    public var fromSocketUnit: Bool { self.listeners.contains { $0.name != Self.storedListenerName } }

    public init(listenPID: String?, listenFDs: String?, names: String?, ownPID: Int32, wantedName: String?) {
        guard let listenFDs else { return }
        guard let count = Int(listenFDs), count >= 0 else {
            self.warnings.append("LISTEN_FDS=\"\(listenFDs)\" is not a number of sockets; ignoring it and binding serve.listen")
            return
        }
        guard let listenPID, let pid = Int32(listenPID) else {
            self.warnings.append("LISTEN_FDS is set without a valid LISTEN_PID; ignoring it and binding serve.listen")
            return
        }
        guard pid == ownPID else {
            self.warnings.append(
                "LISTEN_PID=\(pid) names another process (safe-watch is \(ownPID)): the sockets were meant for it; ignoring them and binding serve.listen")
            return
        }
        guard count > 0 else {
            self.warnings.append(
                "systemd passed no sockets (LISTEN_FDS=0): check ListenStream= in the .socket unit; binding serve.listen")
            return
        }
        let given = names.map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        let passed = (0..<count).map { index in
            InheritedSocket(fd: Int32(3 + index), name: index < given.count && !given[index].isEmpty ? given[index] : "unknown")
        }
        // A `.socket` unit's sockets win over a listener safe-watch parked earlier (the unit may
        // have been added since); the parked one is then dropped from the store.
        let fromUnit = passed.filter { $0.name != Self.storedListenerName }
        let stored = passed.filter { $0.name == Self.storedListenerName }
        if let wantedName {
            let matching = fromUnit.filter { $0.name == wantedName }
            guard !matching.isEmpty else {
                if fromUnit.isEmpty {
                    self.warnings.append(
                        "serve.socket_name is \"\(wantedName)\" but systemd passed no socket of a .socket unit; serving on the stored listener")
                    self.listeners = stored
                    return
                }
                let names = Set(fromUnit.map(\.name)).sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                self.error = "systemd passed sockets named \(names), but serve.socket_name is \"\(wantedName)\": "
                    + "set FileDescriptorName=\(wantedName) in the .socket unit, or change serve.socket_name"
                self.unused = passed
                return
            }
            self.listeners = matching
            self.unused = passed.filter { !matching.contains($0) }
        } else if !fromUnit.isEmpty {
            self.listeners = fromUnit
            self.unused = stored
        } else {
            self.listeners = stored
        }
    }
}

/// A TCP socket in the LISTEN state, from `/proc/net/tcp` or `/proc/net/tcp6`.
public struct ListeningTCPSocket: Equatable, Sendable {
    public var inode: UInt64
    public var address: String
    public var port: Int

    public init(inode: UInt64, address: String, port: Int) {
        self.inode = inode
        self.address = address
        self.port = port
    }

    /// The listening sockets in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
    public static func parse(procNetTCP text: String) -> [ListeningTCPSocket] {
        var sockets: [ListeningTCPSocket] = []
        for line in text.split(separator: "\n").dropFirst() {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, fields[3] == "0A", let inode = UInt64(fields[9]) else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, let port = Int(local[1], radix: 16) else { continue }
            sockets.append(ListeningTCPSocket(inode: inode, address: Self.address(hex: String(local[0])), port: port))
        }
        return sockets
    }

    /// `0100007F` → 127.0.0.1 (IPv4 is stored little-endian); IPv6 as four such words.
    static func address(hex: String) -> String {
        let bytes = stride(from: 0, to: hex.count - 1, by: 2).compactMap { offset -> UInt8? in
            let start = hex.index(hex.startIndex, offsetBy: offset)
            return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)
        }
        if bytes.count == 4 { return bytes.reversed().map(String.init).joined(separator: ".") }
        guard bytes.count == 16 else { return hex }
        // Each 32-bit word is little-endian; the IPv4-mapped form reads best as such.
        let ordered = stride(from: 0, to: 16, by: 4).flatMap { bytes[$0..<$0 + 4].reversed() }
        if ordered[0..<10].allSatisfy({ $0 == 0 }) && ordered[10] == 0xFF && ordered[11] == 0xFF {
            return ordered[12...].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(ordered[$0]) << 8 | UInt16(ordered[$0 + 1]), radix: 16) }
        return "[" + groups.joined(separator: ":") + "]"
    }
}

/// In socket mode the server must serve on the sockets it was passed. The ones it listens on
/// besides those and its private health port mean it ignored `LISTEN_FDS` and bound its own.
public func listenersOutsideSocketMode(
    serverSocketInodes: Set<UInt64>, listening: [ListeningTCPSocket], sharedInodes: Set<UInt64>, healthPort: Int?
) -> [ListeningTCPSocket] {
    listening.filter { socket in
        serverSocketInodes.contains(socket.inode) && !sharedInodes.contains(socket.inode) && socket.port != healthPort
    }
}
