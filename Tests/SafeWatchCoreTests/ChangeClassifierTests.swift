import SafeWatchCore
import Testing

@Suite("ChangeClassifier")
struct ChangeClassifierTests {
    let classifier = ChangeClassifier(
        extensions: ["swift"], configurationPath: "safe-watch.toml",
        ignore: IgnoreRules(patterns: ["Sources/App/Generated/", "*.generated.swift"]))

    @Test(
        "Swift sources rebuild, wherever they are",
        arguments: ["Sources/App/main.swift", "Tests/AppTests/AppTests.swift", "Scripts/tool.swift", "main.swift"])
    func swiftSources(path: String) {
        #expect(classifier.classify(path) == .build)
    }

    @Test(
        "manifests rebuild, at the root or in a nested package",
        arguments: [
            "Package.swift", "Package.resolved", "Packages/Lib/Package.swift", "Cargo.toml", "Cargo.lock", "go.mod",
            "go.sum",
        ])
    func manifests(path: String) {
        #expect(classifier.classify(path) == .build)
    }

    @Test(
        "resources under Sources/ rebuild",
        arguments: [
            "Sources/App/Resources/index.html", "Sources/App/Resources/data.json", "Sources/App/Public/logo.png",
            "Sources/App/Info.plist",
        ])
    func resources(path: String) {
        #expect(classifier.classify(path) == .build)
    }

    @Test(
        "other files are irrelevant",
        arguments: [
            "README.md", "docs/guide.md", "Tests/AppTests/fixture.json", "notes.txt", "Makefile", "Public/index.html",
            "SourcesBackup/x.json",
        ])
    func irrelevant(path: String) {
        #expect(classifier.classify(path) == .irrelevant)
    }

    @Test("the configuration file is configuration, even if it would otherwise be ignored or irrelevant")
    func configuration() {
        #expect(classifier.classify("safe-watch.toml") == .configuration)
        #expect(classifier.classify("config/safe-watch.toml") == .irrelevant)
        let nested = ChangeClassifier(
            extensions: ["swift"], configurationPath: "config/dev.toml", ignore: IgnoreRules(patterns: ["config/"]))
        #expect(nested.classify("config/dev.toml") == .configuration)
        #expect(nested.classify("safe-watch.toml") == .irrelevant)
    }

    @Test(
        "ignored Swift files are irrelevant",
        arguments: [
            "Sources/App/Generated/Model.swift", "Sources/App/Model.generated.swift", ".build/checkouts/x/Sources/a.swift",
            "Sources/App/.main.swift.swp", "Sources/App/main.swift~", "Sources/App/.#main.swift", "Sources/App/4913",
        ])
    func ignored(path: String) {
        #expect(classifier.classify(path) == .irrelevant)
    }

    @Test("an ignored manifest is irrelevant")
    func ignoredManifest() {
        #expect(classifier.classify(".build/checkouts/swift-nio/Package.swift") == .irrelevant)
    }

    @Test("custom extensions")
    func customExtensions() {
        let rust = ChangeClassifier(extensions: ["rs"], configurationPath: "safe-watch.toml", ignore: IgnoreRules())
        #expect(rust.classify("src/main.rs") == .build)
        #expect(rust.classify("src/deep/mod.rs") == .build)
        #expect(rust.classify("Cargo.toml") == .build)
        #expect(rust.classify("main.swift") == .irrelevant)
        #expect(rust.classify("src/main.rs.orig") == .irrelevant)
        #expect(rust.classify("README.md") == .irrelevant)
        #expect(rust.classify("safe-watch.toml") == .configuration)

        let several = ChangeClassifier(
            extensions: ["go", "tmpl"], configurationPath: "safe-watch.toml", ignore: IgnoreRules())
        #expect(several.classify("main.go") == .build)
        #expect(several.classify("templates/page.tmpl") == .build)
        #expect(several.classify("templates/page.html") == .irrelevant)
    }

    @Test("the extension is what follows the last dot, compared exactly")
    func extensionMatching() {
        #expect(classifier.classify("Scripts/a.b.swift") == .build)
        #expect(classifier.classify("Scripts/swift") == .irrelevant)
        #expect(classifier.classify("Scripts/a.Swift") == .irrelevant)
        #expect(classifier.classify("Scripts/a.swiftinterface") == .irrelevant)
    }
}
