import Foundation
import Glibc
import SafeWatchSystem
import Testing

/// /proc files report size 0: they must be read to their end, not to Foundation's first 4 KiB.
@Suite struct ProcFileTests {
    @Test func listenersBeyondTheFirstPageOfProcNetTCPAreFound() throws {
        // 80 listeners make /proc/net/tcp well over 4 KiB (150 bytes a line).
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        for _ in 0..<80 {
            sockets.append(try ListeningSockets.bind(host: "127.0.0.1", port: 0))
        }
        let listening = Set(ListeningSockets.listeningTCP().map(\.port))
        let ours = sockets.compactMap { ListeningSockets.localAddress($0)?.port }
        #expect(ours.count == 80)
        #expect(Set(ours).isSubset(of: listening), "missing: \(Set(ours).subtracting(listening).sorted())")
    }
}

/// What is at the control socket's path before safe-watch starts.
@Suite struct ControlSocketProbeTests {
    @Test func nothingALeftoverALiveOneAndItsPid() throws {
        let directory = NSTemporaryDirectory() + "probe-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/control.sock"
        #expect(ControlSocket.probe(path: path) == .none)
        let fd = try ControlSocket.bind(path: path)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(ControlSocket.probe(path: path) == .live(pid: getpid()))
        close(fd)
        #expect(ControlSocket.probe(path: path) == .stale, "a socket nobody listens on refuses: a leftover")
        // Bound again over the leftover.
        let again = try ControlSocket.bind(path: path)
        #expect(ControlSocket.probe(path: path) == .live(pid: getpid()))
        close(again)
    }

    @Test func theInstanceLockIsHeldOnce() throws {
        let directory = NSTemporaryDirectory() + "lock-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(try InstanceLock.acquire(directory: directory))
        // flock locks belong to the open file description: a second open, even in this process, is refused.
        #expect(try !InstanceLock.acquire(directory: directory))
    }
}
