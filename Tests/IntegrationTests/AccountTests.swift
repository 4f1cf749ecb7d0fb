import Foundation
import Glibc
import SafeWatchCore
import SafeWatchSystem
import TestSupport
import Testing

/// The real user id of a running process (/proc/PID/status), nil once it has gone.
func userID(of pid: pid_t) -> uid_t? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
    else { return nil }
    return line.split(separator: "\t").dropFirst().first.flatMap { uid_t($0) }
}

/// The owner of a file, nil if it does not exist.
func fileOwner(_ path: String) -> uid_t? {
    var info = stat()
    return lstat(path, &info) == 0 ? info.st_uid : nil
}

/// Who the tests expect safe-watch to run as: the test account, or the developer running them.
func expectedUserID() throws -> uid_t {
    try TestAccount.required()?.uid ?? getuid()
}

extension SupervisorIntegrationTests {
    /// The premise of the whole suite: safe-watch, its builds and its servers are the unprivileged
    /// account's, and so is everything they create in the project.
    @Test func safeWatchItsBuildAndItsServerRunAsTheUnprivilegedAccount() async throws {
        let (safeWatch, port, directory) = try await startServing(version: "account-1")
        let account = try expectedUserID()
        if geteuid() == 0 { #expect(account != 0) }
        #expect(userID(of: safeWatch.pid) == account)
        let servers = serverPIDs(of: safeWatch)
        #expect(!servers.isEmpty && servers.allSatisfy { userID(of: $0) == account }, "\(servers.map { userID(of: $0) as Any })")
        for path in ["/.safe-watch", "/.safe-watch/control.sock", "/.safe-watch/generations/1", "/.build"] {
            #expect(fileOwner(directory + path) == account, "\(path)")
        }
        #expect(await body(port: port) == "hello-server account-1\n")
        #expect(await safeWatch.terminate() == .exited(0))
    }
}

@Suite(.timeLimit(.minutes(3))) struct InitDockerOwnershipTests {
    /// `init --docker`, as the account: a .dockerignore that keeps .build out of the build context,
    /// and the .build mount point made before Docker makes it as root.
    @Test func initDockerWritesADockerignoreAndTheBuildMountPoint() async throws {
        let package = try makePackage(executables: ["site"])
        giveTreeToAccount(package)
        let (status, output) = try await runAsAccount(Paths.safeWatch, ["init", "--docker"], in: package)
        #expect(status == .exited(0), "\(output)")
        let ignore = try String(contentsOfFile: package + "/.dockerignore", encoding: .utf8)
        #expect(ignore == DockerFiles.dockerignore)
        #expect(output.contains("wrote \(package)/.dockerignore"), "\(output)")
        var info = stat()
        #expect(stat(package + "/.build", &info) == 0 && info.st_mode & S_IFMT == S_IFDIR)
        #expect(fileOwner(package + "/.build") == (try expectedUserID()))

        // A project's own .dockerignore is left alone, with a word when it lets .build in.
        let other = try makePackage(executables: ["site"])
        giveTreeToAccount(other)
        try "node_modules\n".save(to: other + "/.dockerignore")
        let (again, note) = try await runAsAccount(Paths.safeWatch, ["init", "--docker"], in: other)
        #expect(again == .exited(0), "\(note)")
        #expect(try String(contentsOfFile: other + "/.dockerignore", encoding: .utf8) == "node_modules\n")
        #expect(note.contains("\(other)/.dockerignore exists and does not ignore .build: add .build and .safe-watch to it"), "\(note)")
    }
}
