import SafeWatchCore
import Testing

@Suite("Acting as the project's owner")
struct OwnerSwitchTests {
    @Test("root on another user's project becomes that user")
    func rootBecomesTheOwner() {
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: (1000, 1000), keepRoot: false) == .become(uid: 1000, gid: 1000))
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: (501, 20), keepRoot: false) == .become(uid: 501, gid: 20))
    }

    @Test("kept root, a root-owned project, a non-root user or an unknown owner change nothing")
    func staying() {
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: (1000, 1000), keepRoot: true) == .stay)
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: (0, 0), keepRoot: false) == .stay)
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: (0, 1000), keepRoot: false) == .stay)
        #expect(OwnerSwitch.decide(effectiveUID: 1000, projectOwner: (1001, 1001), keepRoot: false) == .stay)
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: nil, keepRoot: false) == .stay)
    }

    @Test("under a service manager the unit decides who runs it")
    func serviceManager() {
        #expect(OwnerSwitch.decide(effectiveUID: 0, projectOwner: (1000, 1000), keepRoot: false, underServiceManager: true) == .stay)
        #expect(OwnerSwitch.underServiceManager(environment: ["INVOCATION_ID": "5f0c"]))
        #expect(OwnerSwitch.underServiceManager(environment: ["NOTIFY_SOCKET": "/run/user/0/systemd/notify"]))
        #expect(!OwnerSwitch.underServiceManager(environment: ["INVOCATION_ID": "", "HOME": "/root"]))
    }

    @Test("SAFE_WATCH_KEEP_ROOT", arguments: [
        (nil, false), ("", false), ("0", false), ("false", false), ("No", false), ("off", false),
        ("1", true), ("true", true), ("yes", true), (" 1 ", true),
    ] as [(String?, Bool)])
    func keepRootVariable(value: String?, expected: Bool) {
        #expect(OwnerSwitch.keepRoot(environmentValue: value) == expected)
    }

    @Test("the announcement names the user, the directory and the way out")
    func announcement() {
        let named = OwnerSwitch.announcement(uid: 1000, gid: 1000, name: "ada", directory: "/app")
        #expect(named.hasPrefix("running as ada (uid 1000, gid 1000), the owner of /app, not as root"))
        #expect(named.contains("--keep-root or SAFE_WATCH_KEEP_ROOT=1"))
        #expect(!named.contains("\n"))
        #expect(OwnerSwitch.announcement(uid: 1000, gid: 50, name: nil, directory: "/app").hasPrefix("running as uid 1000, gid 50, the owner"))
    }
}

@Suite("A project directory safe-watch cannot write")
struct StateDirectoryProblemTests {
    @Test("another user's directory: the owner and the chown that fixes it")
    func othersDirectory() {
        let text = StateDirectoryProblem.message(
            directory: "/srv/mon projet", stateDirectory: "/srv/mon projet/.safe-watch", reason: "Permission denied", uid: 999, ownerUID: 0)
        #expect(text.hasPrefix("cannot create /srv/mon projet/.safe-watch: Permission denied"))
        #expect(text.contains("/srv/mon projet is not writable by uid 999 (it belongs to uid 0)"))
        #expect(text.contains("`sudo chown -R 999 '/srv/mon projet'`"), "\(text)")
    }

    @Test("one's own read-only directory: chmod")
    func ownDirectory() {
        let text = StateDirectoryProblem.message(directory: "/p", stateDirectory: "/p/.safe-watch", reason: "Permission denied", uid: 999, ownerUID: 999)
        #expect(text.contains("`chmod u+w /p`"), "\(text)")
        #expect(StateDirectoryProblem.exitCode == 73)
    }
}
