import SafeWatchCore
import Testing

@Suite("A candidate that did not take the port it was given")
struct PortHandoffTests {
    /// What Vapor 4.122.3 prints when its port is taken (then a backtrace: its error reaches the top level).
    static let vaporAddressInUse = [
        "[ WARNING ] bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)",
        "[ WARNING ] bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)",
        "",
        "Swift/ErrorType.swift:254: Fatal error: Error raised at top level: bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)",
    ]

    static func proxy(args: [String] = [], portEnv: String = "PORT") -> PortHandoff {
        PortHandoff(port: 41234, mode: .proxy, args: args, portEnv: portEnv, publicAddress: "127.0.0.1:8080")
    }

    @Test("Address already in use with the port in $PORT: names the port, where safe-watch listens, and both fixes")
    func addressInUseWithPortEnv() throws {
        let message = try #require(Self.proxy().diagnoseExit(output: Self.vaporAddressInUse))
        #expect(message.contains("Address already in use"), "\(message)")
        #expect(message.contains("port 41234, which safe-watch gave it in $PORT"), "\(message)")
        #expect(message.contains("safe-watch itself listens on 127.0.0.1:8080"), "\(message)")
        #expect(message.contains("[run] args with {port}"), "\(message)")
        #expect(message.contains("port_env"), "\(message)")
        #expect(!message.contains("\n"))
    }

    @Test("other spellings: EADDRINUSE, lower case (Go)")
    func spellings() {
        #expect(Self.proxy().diagnoseExit(output: ["Error: listen EADDRINUSE: :::8080"]) != nil)
        #expect(Self.proxy().diagnoseExit(output: ["listen tcp :8080: bind: address already in use"]) != nil)
    }

    @Test("an exit for any other reason is not about the port")
    func otherExit() {
        #expect(Self.proxy().diagnoseExit(output: ["Fatal error: Unexpectedly found nil"]) == nil)
        #expect(Self.proxy().diagnoseExit(output: []) == nil)
    }

    @Test("no port given at all: says so")
    func noPortGiven() throws {
        let message = try #require(Self.proxy(portEnv: "").diagnoseExit(output: Self.vaporAddressInUse))
        #expect(message.contains("gave it none ([run] args has no {port} and port_env is empty)"), "\(message)")
        #expect(message.contains("[run] args with {port}"), "\(message)")
    }

    @Test("{port} in args already: the args put it in the wrong place")
    func portInArgs() throws {
        let handoff = Self.proxy(args: ["--listen", "{port}"], portEnv: "")
        let message = try #require(handoff.diagnoseExit(output: Self.vaporAddressInUse))
        #expect(message.contains("gave it in its arguments ([run] args)"), "\(message)")
        #expect(message.contains("make [run] args put {port} where the server reads its port"), "\(message)")
    }

    @Test("socket mode: serve on fd 3, or proxy mode")
    func socketMode() throws {
        let handoff = PortHandoff(port: nil, mode: .socket, args: [], portEnv: "PORT", publicAddress: "127.0.0.1:8080")
        let message = try #require(handoff.diagnoseExit(output: Self.vaporAddressInUse))
        #expect(message.contains("safe-watch holds 127.0.0.1:8080 and passes it as fd 3"), "\(message)")
        #expect(message.contains("sd_listen_fds"), "\(message)")
        #expect(handoff.diagnoseListening([ListeningTCPSocket(inode: 1, address: "127.0.0.1", port: 8080)]) == nil, "socket mode has its own check")
    }

    @Test("restart mode: the port may be another program's")
    func restartMode() throws {
        let handoff = PortHandoff(port: 9000, mode: .restart, args: [], portEnv: "PORT", publicAddress: nil)
        let message = try #require(handoff.diagnoseExit(output: Self.vaporAddressInUse))
        #expect(message.contains("port 9000, which safe-watch gave it in $PORT"), "\(message)")
        #expect(message.contains("ss -ltnp 'sport = :9000'"), "\(message)")
        #expect(!message.contains("safe-watch itself listens"), "\(message)")
    }

    @Test("listening on another port than the one given: names both and the fix")
    func listeningElsewhere() throws {
        let sockets = [
            ListeningTCPSocket(inode: 1, address: "127.0.0.1", port: 8080),
            ListeningTCPSocket(inode: 2, address: "[::1]", port: 8080),
        ]
        let message = try #require(Self.proxy().diagnoseListening(sockets))
        #expect(message.hasPrefix("it listens on 127.0.0.1:8080, [::1]:8080, not on port 41234, which safe-watch gave it in $PORT"), "\(message)")
        #expect(message.contains("[run] args with {port}"), "\(message)")
    }

    @Test("listening on its port (among others), or on nothing visible: nothing to say")
    func listeningRight() {
        #expect(Self.proxy().diagnoseListening([
            ListeningTCPSocket(inode: 1, address: "127.0.0.1", port: 41234),
            ListeningTCPSocket(inode: 2, address: "127.0.0.1", port: 9090),
        ]) == nil)
        #expect(Self.proxy().diagnoseListening([]) == nil)
    }
}
