import Foundation
import SafeWatchCore
import Testing

@Suite("Dev-container files")
struct DockerFilesTests {
    /// What `safe-watch init --docker` writes for Examples/hello-server.
    let example = DockerFiles(product: "hello-server", port: 8080, directoryName: "hello-server")

    static func repositoryFile(_ path: String) throws -> String {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The lines of `text` that start with `instruction`, continuation lines joined.
    static func instructions(_ instruction: String, in text: String) -> [String] {
        let joined = text.replacing("\\\n", with: " ")
        return joined.split(separator: "\n").map(String.init).filter { $0.hasPrefix(instruction + " ") }
    }

    @Test("config/ holds exactly what init --docker writes")
    func repositoryCopies() throws {
        #expect(try Self.repositoryFile("config/Dockerfile.dev") == self.example.dockerfile)
        #expect(try Self.repositoryFile("config/compose.yaml") == self.example.compose)
        #expect(try Self.repositoryFile("config/.dockerignore") == DockerFiles.dockerignore)
    }

    @Test(".dockerignore keeps the host's build products and safe-watch's state out of the context")
    func dockerignore() {
        let patterns = DockerFiles.dockerignore.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(patterns == [".build", ".build-*", ".swiftpm", ".safe-watch"])
        #expect(DockerFiles.dockerignoreKeepsBuildOut(DockerFiles.dockerignore))
        #expect(DockerFiles.dockerignoreKeepsBuildOut("node_modules\n  .build/  \n"))
        #expect(DockerFiles.dockerignoreKeepsBuildOut("**/.build\n"))
        #expect(!DockerFiles.dockerignoreKeepsBuildOut("node_modules\n# .build\n.builder\n"))
    }

    @Test("ENTRYPOINT is exec form (safe-watch is PID 1) and listens on every interface")
    func entrypoint() throws {
        let entrypoints = Self.instructions("ENTRYPOINT", in: self.example.dockerfile)
        try #require(entrypoints.count == 1)
        let json = entrypoints[0].dropFirst("ENTRYPOINT ".count)
        let arguments = try JSONDecoder().decode([String].self, from: Data(json.utf8))
        #expect(arguments.first == "safe-watch")
        let listen = try #require(arguments.firstIndex(of: "--listen"))
        #expect(arguments.dropFirst(listen + 1).first == "0.0.0.0:8080")
        #expect(arguments.contains("/app"))
        #expect(Self.instructions("STOPSIGNAL", in: self.example.dockerfile) == ["STOPSIGNAL SIGTERM"])
        #expect(Self.instructions("EXPOSE", in: self.example.dockerfile) == ["EXPOSE 8080"])
    }

    @Test("HEALTHCHECK waits out the first build")
    func healthCheck() throws {
        let checks = Self.instructions("HEALTHCHECK", in: self.example.dockerfile)
        try #require(checks.count == 1)
        let start = try #require(checks[0].split(separator: " ").first { $0.hasPrefix("--start-period=") })
        let period = try #require(parseDuration(String(start.dropFirst("--start-period=".count))))
        #expect(period >= .seconds(120))
        #expect(checks[0].contains("http://127.0.0.1:8080/health"))
    }

    @Test("compose publishes on the host's loopback only and keeps .build in a named volume")
    func compose() {
        let lines = self.example.compose.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let ports = lines.filter { $0.hasPrefix("- \"") && $0.hasSuffix(":8080\"") }
        #expect(ports == ["- \"127.0.0.1:8080:8080\""])
        #expect(lines.contains("- build:/app/.build"))
        #expect(lines.contains("- .:/app"))
        // A named volume must be declared at the top level, or compose rejects the mount.
        #expect(self.example.compose.contains("\nvolumes:\n  build:\n"))
        #expect(lines.contains("init: false"))
        #expect(lines.contains("dockerfile: Dockerfile.dev"))
    }

    @Test("the port and health path come from the project")
    func otherPort() throws {
        let files = DockerFiles(product: "api", port: 3000, directoryName: "My API", healthPath: "/healthz")
        #expect(files.dockerfile.contains("\"--listen\", \"0.0.0.0:3000\"]"))
        #expect(files.dockerfile.contains("EXPOSE 3000\n"))
        #expect(files.dockerfile.contains("http://127.0.0.1:3000/healthz"))
        #expect(files.compose.contains("\"127.0.0.1:3000:3000\""))
        #expect(files.serviceName == "my-api")
        #expect(files.compose.contains("\n  my-api:\n"))
    }

    @Test("service names are valid whatever the directory is called", arguments: [
        ("hello-server", "hello-server"), ("Hello_Server.v2", "hello_server.v2"), ("--x", "x"), ("ünï", "n-"), ("", "app"),
    ])
    func serviceName(directory: String, expected: String) {
        #expect(DockerFiles(product: "p", directoryName: directory).serviceName == expected)
    }
}
