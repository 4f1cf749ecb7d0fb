// swift-tools-version:6.0
//
// hello-server: the tiny HTTP server that safe-watch supervises in its
// examples and integration tests. Deliberately dependency-free (Glibc only)
// so it builds in seconds and starts in milliseconds.
import PackageDescription

let package = Package(
    name: "hello-server",
    products: [
        .executable(name: "hello-server", targets: ["hello-server"]),
    ],
    targets: [
        .executableTarget(name: "hello-server", path: "Sources/hello-server"),
    ],
    swiftLanguageModes: [.v6]
)
