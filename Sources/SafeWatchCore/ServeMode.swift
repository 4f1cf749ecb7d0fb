/// How traffic reaches the server.
public enum ServeMode: String, Equatable, Sendable, CaseIterable {
    /// safe-watch listens and forwards each request to the active generation's private port.
    case proxy
    /// safe-watch owns the listening socket(s) and passes them to every generation as fds 3…
    /// (`LISTEN_FDS`); old and new overlap on the same socket.
    case socket
    /// The server binds the public port itself: the old one stops before the new one starts.
    case restart

    /// Old and new servers run side by side during a swap.
    public var overlaps: Bool { self != .restart }
}
