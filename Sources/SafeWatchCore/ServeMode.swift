/// How a generation gets traffic (DESIGN §2).
public enum ServeMode: String, Equatable, Sendable, CaseIterable {
    /// safe-watch listens and forwards each request to the active generation's private port.
    case proxy
    /// The server binds the public port itself: the old one stops before the new one starts.
    case restart
}
