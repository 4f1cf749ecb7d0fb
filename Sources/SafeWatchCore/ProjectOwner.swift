import Foundation

/// Who `safe-watch run` acts as. Started as root on a project another user owns — a dev container's
/// PID 1 on a bind-mounted checkout, or `sudo safe-watch` — it becomes the project's owner before it
/// creates anything, so that `.safe-watch/`, `.build` and everything the build and the servers write
/// there stay the owner's on the host, where root-owned files could not be removed or rebuilt.
public enum OwnerSwitch: Equatable, Sendable {
    /// Go on as the current user.
    case stay
    /// Become this user and group (the project directory's) before touching the project.
    case become(uid: UInt32, gid: UInt32)

    /// The option and variable that keep safe-watch root.
    public static let flag = "--keep-root"
    public static let environmentVariable = "SAFE_WATCH_KEEP_ROOT"

    /// `effectiveUID` 0 and a project owned by someone else: become them, unless kept root. A
    /// project root owns (or a directory that cannot be examined) changes nothing, and neither does
    /// a service manager: a unit says who runs it (`User=`), and its notify socket and fd store are
    /// for the user it started.
    public static func decide(
        effectiveUID: UInt32, projectOwner: (uid: UInt32, gid: UInt32)?, keepRoot: Bool, underServiceManager: Bool = false
    ) -> OwnerSwitch {
        guard effectiveUID == 0, !keepRoot, !underServiceManager, let owner = projectOwner, owner.uid != 0 else { return .stay }
        return .become(uid: owner.uid, gid: owner.gid)
    }

    /// Whether a service manager started this process: systemd gives every service INVOCATION_ID,
    /// and a notify service NOTIFY_SOCKET.
    public static func underServiceManager(environment: [String: String]) -> Bool {
        !(environment["INVOCATION_ID"] ?? "").isEmpty || !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
    }

    /// SAFE_WATCH_KEEP_ROOT's value: set and not "0"/"false"/"no" keeps root; unset or empty does not.
    public static func keepRoot(environmentValue value: String?) -> Bool {
        guard let value = value?.trimmingCharacters(in: .whitespaces).lowercased(), !value.isEmpty else { return false }
        return !["0", "false", "no", "off"].contains(value)
    }

    /// The one line said when safe-watch becomes the project's owner.
    public static func announcement(uid: UInt32, gid: UInt32, name: String?, directory: String) -> String {
        let who = name.map { "\($0) (uid \(uid), gid \(gid))" } ?? "uid \(uid), gid \(gid)"
        return "running as \(who), the owner of \(directory), not as root: what safe-watch and the build create there stays theirs "
            + "(\(flag) or \(environmentVariable)=1 to stay root)"
    }
}

/// What to say when the project directory cannot hold safe-watch's state directory.
public enum StateDirectoryProblem {
    /// sysexits EX_CANTCREAT: safe-watch cannot create its state directory (`.safe-watch`) in the
    /// project.
    public static let exitCode: Int32 = 73

    /// `reason` is strerror's text; `uid` is who safe-watch runs as, `ownerUID` the directory's owner.
    public static func message(directory: String, stateDirectory: String, reason: String, uid: UInt32, ownerUID: UInt32?) -> String {
        var text = "cannot create \(stateDirectory): \(reason) — safe-watch keeps its generations, lock and control socket in the project "
            + "directory, and \(directory) is not writable by uid \(uid)"
        if let ownerUID, ownerUID != uid {
            text += " (it belongs to uid \(ownerUID)): run safe-watch as its owner, or make it yours with `sudo chown -R \(uid) \(shellQuoted(directory))`"
        } else {
            text += ": make it writable (`chmod u+w \(shellQuoted(directory))`), or work in a copy you can write"
        }
        return text
    }

    /// `unwritable`, the state directory or a directory inside it, cannot be written by `uid`.
    public static func foreignMessage(stateDirectory: String, unwritable: String, uid: UInt32, ownerUID: UInt32?) -> String {
        let owner = ownerUID.map { " (it belongs to uid \($0))" } ?? ""
        return "\(unwritable) is not writable by uid \(uid)\(owner), so no build could be staged there — left by a safe-watch run as "
            + "another user? Make it yours with `sudo chown -R \(uid) \(shellQuoted(stateDirectory))`, or remove it with "
            + "`sudo rm -rf \(shellQuoted(stateDirectory))` (it holds only safe-watch's copies of built servers and its lock)"
    }
}
