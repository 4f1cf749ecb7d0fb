import SafeWatchCore
import Testing

@Suite("doctor's verdicts and fixes")
struct DoctorTests {
    @Test("a watch limit below the directories plus headroom is a problem with the sysctl fix")
    func watchLimitTooLow() throws {
        let check = Doctor.inotifyWatches(limit: 10, inUse: 0, directories: 50, source: "/proc/sys/fs/inotify/max_user_watches")
        #expect(check.verdict == .problem)
        #expect(check.rendered.hasPrefix("✗ inotify watches: limit 10, 0 in use by this user's programs, this project needs 50"))
        #expect(check.fixes.contains("fix: sudo sysctl fs.inotify.max_user_watches=524288"))
        #expect(check.fixes.contains { $0.contains("echo fs.inotify.max_user_watches=524288 | sudo tee /etc/sysctl.d/90-safe-watch.conf") })
    }

    @Test("what other programs hold counts against the limit")
    func watchesInUseByOthers() {
        #expect(Doctor.inotifyWatches(limit: 8192, inUse: 0, directories: 50, source: "").verdict == .ok)
        #expect(Doctor.inotifyWatches(limit: 8192, inUse: 8000, directories: 50, source: "").verdict == .problem)
        // Exactly enough: directories + headroom.
        let needed = 50 + Doctor.watchHeadroom(directories: 50)
        #expect(Doctor.inotifyWatches(limit: needed, inUse: 0, directories: 50, source: "").verdict == .ok)
        #expect(Doctor.inotifyWatches(limit: needed - 1, inUse: 0, directories: 50, source: "").verdict == .problem)
    }

    @Test("a huge tree gets a limit that fits it, not the usual one")
    func hugeTree() throws {
        let check = Doctor.inotifyWatches(limit: 524_288, inUse: 0, directories: 600_000, source: "")
        #expect(check.verdict == .problem)
        let fix = try #require(check.fixes.first)
        let suggested = try #require(Int(fix.split(separator: "=").last ?? ""))
        #expect(suggested >= 600_000 + Doctor.watchHeadroom(directories: 600_000))
    }

    @Test("polled trees need no watches; an unreadable limit is only a warning")
    func noWatchesOrNoLimit() {
        #expect(Doctor.inotifyWatches(limit: 1, inUse: 5, directories: 0, source: "").verdict == .ok)
        #expect(Doctor.inotifyWatches(limit: nil, inUse: 0, directories: 5, source: "/x").verdict == .warning)
        #expect(Doctor.inotifyInstances(limit: 0, inUse: 0, needed: 0, source: "").verdict == .ok)
    }

    @Test("instances: safe-watch needs one the user's other programs have not taken")
    func instances() {
        #expect(Doctor.inotifyInstances(limit: 128, inUse: 20, needed: 1, source: "").verdict == .ok)
        let full = Doctor.inotifyInstances(limit: 128, inUse: 128, needed: 1, source: "")
        #expect(full.verdict == .problem)
        #expect(full.fixes.first == "fix: sudo sysctl fs.inotify.max_user_instances=1024")
    }

    @Test("watched paths: the file system named, polling said")
    func watchedPaths() {
        let ext4 = Doctor.watchedPath(".", kind: FileSystemKind(magic: 0xEF53), poll: .auto)
        #expect(ext4.rendered == "✓ watch .: ext4, inotify\n")
        let fuse = Doctor.watchedPath("Sources", kind: .fuse, poll: .auto)
        #expect(fuse.verdict == .ok)
        #expect(fuse.summary.contains("polled every 500 ms"), "\(fuse.summary)")
        let forcedOff = Doctor.watchedPath(".", kind: .ninep, poll: .off)
        #expect(forcedOff.verdict == .warning)
        #expect(forcedOff.fixes == ["set [watch] poll = \"auto\" (the default) to poll it"])
        #expect(Doctor.watchedPath("gone", kind: nil, poll: .auto).verdict == .warning)
        #expect(Doctor.watchedPath(".", kind: FileSystemKind(magic: 0x1234), poll: .auto).summary == "0x1234, inotify")
    }

    @Test("the port: free, taken (with how to find who has it), or not bindable")
    func port() {
        let address = ListenAddress(host: "127.0.0.1", port: 8080)
        #expect(Doctor.port(address, probe: .free).rendered == "✓ serve.listen 127.0.0.1:8080: free\n")
        let taken = Doctor.port(address, probe: .inUse)
        #expect(taken.verdict == .problem)
        #expect(taken.fixes.contains("see which: ss -ltnp 'sport = :8080'"))
        #expect(taken.fixes.contains { $0.contains("[serve] listen = \"127.0.0.1:8081\"") })
        #expect(Doctor.port(ListenAddress(host: "::1", port: 80), probe: .permissionDenied).verdict == .problem)
        #expect(Doctor.port(ListenAddress(host: "10.9.9.9", port: 8080), probe: .addressNotAvailable).summary.contains("10.9.9.9"))
        // Taken by the safe-watch already serving this project: as it should be.
        #expect(Doctor.port(address, probe: .inUse, runningSafeWatch: 4242).rendered
            == "✓ serve.listen 127.0.0.1:8080: served by the safe-watch running for this project (pid 4242)\n")
        // Port 0 is the kernel's pick: nothing to probe.
        #expect(Doctor.port(ListenAddress(host: "127.0.0.1", port: 0), probe: nil).verdict == .ok)
    }

    @Test("the toolchain is a problem only when the build needs it")
    func toolchain() {
        let found = Doctor.toolchain(.found(path: "/usr/bin/swift", version: "Swift version 6.2 (swift-6.2-RELEASE)"), buildCommand: nil)
        #expect(found.rendered == "✓ toolchain: Swift version 6.2 (swift-6.2-RELEASE) (/usr/bin/swift)\n")
        #expect(Doctor.toolchain(.notFound, buildCommand: nil).verdict == .problem)
        #expect(Doctor.toolchain(.notFound, buildCommand: "cargo build").verdict == .ok)
        #expect(Doctor.toolchain(.failed(path: "/usr/bin/swift", output: "boom\nmore"), buildCommand: nil).summary == "/usr/bin/swift --version failed: boom")
    }

    @Test("the configuration: absent is fine, broken is a problem with its own error")
    func configuration() {
        #expect(Doctor.configuration(file: "/p/safe-watch.toml", exists: false, error: nil).verdict == .ok)
        // Named by --config, a missing file is what `run` refuses.
        let missing = Doctor.configuration(file: "/p/other.toml", exists: false, named: true, error: nil)
        #expect(missing.verdict == .problem && missing.summary.contains("/p/other.toml does not exist (--config)"), "\(missing)")
        #expect(Doctor.configuration(file: "/p/safe-watch.toml", exists: true, error: nil).verdict == .ok)
        let broken = Doctor.configuration(file: "/p/safe-watch.toml", exists: true, error: "/p/safe-watch.toml:3: serve.mode: unknown mode")
        #expect(broken.rendered.hasPrefix("✗ configuration: /p/safe-watch.toml:3: serve.mode: unknown mode\n"))
    }

    @Test("systemd is never a problem: the terminal and containers work without it")
    func systemd() {
        let none = Doctor.systemd(library: "/usr/lib/libsystemd.so.0.35.0", booted: false, userManager: false, notifySocket: nil)
        #expect(none.verdict == .warning)
        #expect(none.summary.hasPrefix("/usr/lib/libsystemd.so.0.35.0 loaded"))
        #expect(Doctor.systemd(library: nil, booted: true, userManager: false, notifySocket: nil).fixes.first?.contains("enable-linger") == true)
        #expect(Doctor.systemd(library: nil, booted: true, userManager: true, notifySocket: "/run/x").verdict == .ok)
    }

    @Test("exit status 1 only when a check is a problem")
    func report() {
        let ok = DoctorCheck(.ok, "a", "fine")
        let warning = DoctorCheck(.warning, "b", "hmm")
        let problem = DoctorCheck(.problem, "c", "broken", fixes: ["fix: do it"])
        #expect(Doctor.report([ok, warning]).exitStatus == 0)
        let failed = Doctor.report([ok, warning, problem])
        #expect(failed.exitStatus == 1)
        #expect(failed.text == "✓ a: fine\n! b: hmm\n✗ c: broken\n    fix: do it\n\n1 problem (✗), 1 warning (!)\n")
        #expect(Doctor.report([ok]).text.hasSuffix("\nno problems found\n"))
    }
}
