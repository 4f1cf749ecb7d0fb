import SafeWatchCore
import Testing

@Suite("tcp mode: what it shares with proxy mode, and its health check")
struct ServeModeTests {
    @Test("proxy and tcp mode forward to each generation's private port; socket and restart do not")
    func forwarding() {
        #expect(ServeMode.proxy.forwardsToPrivatePort)
        #expect(ServeMode.tcp.forwardsToPrivatePort)
        #expect(!ServeMode.socket.forwardsToPrivatePort)
        #expect(!ServeMode.restart.forwardsToPrivatePort)
        #expect(ServeMode.tcp.overlaps)
    }

    @Test("the public address is tcp:// in tcp mode, http:// otherwise")
    func scheme() {
        #expect(ServeMode.tcp.addressScheme == "tcp")
        #expect(ServeMode.proxy.addressScheme == "http")
        #expect(ServeMode.restart.addressScheme == "http")
    }

    @Test("messages list every mode")
    func names() {
        #expect(ServeMode.names(quoted: false) == "proxy, tcp, socket or restart")
        #expect(ServeMode.names(quoted: true) == "\"proxy\", \"tcp\", \"socket\" or \"restart\"")
    }

    @Test("mode = \"tcp\" loads, with a tcp health check when [health] does not name one")
    func tcpModeLoads() throws {
        let config = try ConfigurationLoader(fileName: "safe-watch.toml").load("[serve]\nmode = \"tcp\"\n")
        #expect(config.serve.mode == .tcp)
        #expect(config.policy.mode == .tcp)
        #expect(config.health.kind == .tcp)
    }

    @Test("tcp mode keeps the [health] settings written, and the type when one is written")
    func tcpModeHealthSettings() throws {
        let loader = ConfigurationLoader(fileName: "safe-watch.toml")
        let timed = try loader.load("[serve]\nmode = \"tcp\"\n[health]\nstartup_timeout = \"60s\"\n")
        #expect(timed.health.kind == .tcp)
        #expect(timed.health.startupTimeout == .seconds(60))
        let http = try loader.load("[serve]\nmode = \"tcp\"\n[health]\ntype = \"http\"\n")
        #expect(http.health.kind == .http(path: "/health"))
        let path = try loader.load("[serve]\nmode = \"tcp\"\n[health]\npath = \"/ready\"\n")
        #expect(path.health.kind == .http(path: "/ready"))
        let exec = try loader.load("[serve]\nmode = \"tcp\"\n[health]\ntype = \"exec\"\ncommand = \"true\"\n")
        #expect(exec.health.kind == .exec(command: "true"))
    }

    @Test("--mode tcp over a file without [health] type gets the tcp check; one with a type keeps it")
    func modeFromTheCommandLine() throws {
        let loader = ConfigurationLoader(fileName: "safe-watch.toml")
        var plain = try loader.load("[health]\ninterval = \"50ms\"\n")
        #expect(plain.health.kind == .http(path: "/health"))
        plain.serve.mode = .tcp
        plain.settleModeDefaults()
        #expect(plain.health.kind == .tcp)
        #expect(plain.health.interval == .milliseconds(50))

        var chosen = try loader.load("[health]\ntype = \"http\"\n")
        chosen.serve.mode = .tcp
        chosen.settleModeDefaults()
        #expect(chosen.health.kind == .http(path: "/health"))

        var framework = Configuration()
        ServerFramework.vapor.apply(to: &framework)
        framework.serve.mode = .tcp
        framework.settleModeDefaults()
        #expect(framework.health.kind == .tcp)
        framework.serve.mode = .proxy
        framework.settleModeDefaults()
        #expect(framework.health.kind == .tcp, "a framework's check is a choice, not the mode's default")
    }

    @Test("a check written out equals the same check left to the mode: a reload changes nothing")
    func equality() throws {
        let loader = ConfigurationLoader(fileName: "safe-watch.toml")
        #expect(try loader.load("") == loader.load("[health]\ntype = \"http\"\n"))
        #expect(try loader.load("[serve]\nmode = \"tcp\"\n") == loader.load("[serve]\nmode = \"tcp\"\n[health]\ntype = \"tcp\"\n"))
    }

    @Test("an address-in-use exit in tcp mode names the port it was given, as in proxy mode")
    func portHandoff() throws {
        let handoff = PortHandoff(port: 41234, mode: .tcp, args: [], portEnv: "PORT", publicAddress: "127.0.0.1:8080")
        let message = try #require(handoff.diagnoseExit(output: ["bind: Address already in use"]))
        #expect(message.contains("port 41234, which safe-watch gave it in $PORT"), "\(message)")
        #expect(message.contains("safe-watch itself listens on 127.0.0.1:8080"), "\(message)")
    }
}
