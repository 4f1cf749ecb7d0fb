import Synchronization

extension ExecChild {
    private static let registered = Mutex<String?>(nil)

    /// The executable of this process when it has the `__exec-child` mode (safe-watch's main
    /// registers it), so that code with no `ChildLauncher` at hand (pg_dump for a backup) can give
    /// its children a parent-death signal too. nil in test binaries, which have no such mode: their
    /// children are started directly.
    public static var selfExecutable: String? {
        get { Self.registered.withLock { $0 } }
        set { Self.registered.withLock { $0 = newValue } }
    }
}
