import SafeWatchCore
import Testing

@Suite("IgnoreRules")
struct IgnoreRulesTests {
    // MARK: Built-in directories

    @Test(
        "built-in directories are ignored at any depth, with everything inside",
        arguments: [
            ".build/debug/app",
            ".git/HEAD",
            ".safe-watch/generations/3/app",
            ".swiftpm/configuration/x.json",
            ".build-foo/debug/app.swift",
            ".build_ci/x.swift",
            "Packages/Lib/.build/checkouts/x.swift",
            "a/b/c/.git/objects/ab/cdef",
            "Examples/hello/.safe-watch/state",
            "Tests/.build-coretests/debug/x.swift",
        ])
    func builtinFiles(path: String) {
        #expect(IgnoreRules().isIgnored(path, isDirectory: false))
    }

    @Test(
        "built-in directories themselves are ignored",
        arguments: [".build", ".git", ".safe-watch", ".swiftpm", ".build-foo", "x/y/.build", "x/.build_tmp"])
    func builtinDirectories(path: String) {
        #expect(IgnoreRules().isIgnored(path, isDirectory: true))
    }

    @Test(
        "look-alikes of built-in directories are not ignored",
        arguments: [
            ("Sources/build/x.swift", false),
            (".builder/x.swift", false),
            ("Sources/App/git/x.swift", false),
            ("Sources/.gitkeep", false),
            (".gitignore", false),
            (".buildrc", false),
        ])
    func builtinLookAlikes(path: String, isDirectory: Bool) {
        #expect(!IgnoreRules().isIgnored(path, isDirectory: isDirectory))
    }

    @Test("isBuiltinIgnoredDirectory")
    func builtinPredicate() {
        #expect(IgnoreRules.isBuiltinIgnoredDirectory(".build"))
        #expect(IgnoreRules.isBuiltinIgnoredDirectory(".build-foo"))
        #expect(IgnoreRules.isBuiltinIgnoredDirectory(".build_foo"))
        #expect(IgnoreRules.isBuiltinIgnoredDirectory(".git"))
        #expect(IgnoreRules.isBuiltinIgnoredDirectory(".safe-watch"))
        #expect(!IgnoreRules.isBuiltinIgnoredDirectory("build"))
        #expect(!IgnoreRules.isBuiltinIgnoredDirectory(".buildx"))
        #expect(!IgnoreRules.isBuiltinIgnoredDirectory("Sources"))
    }

    // MARK: Editor droppings

    @Test(
        "editor droppings are ignored",
        arguments: [
            "Sources/App/.main.swift.swp",
            "Sources/App/.main.swift.swo",
            "Sources/App/.main.swift.swx",
            ".x.swp",
            "Sources/App/main.swift~",
            "x~",
            "Sources/App/.#main.swift",
            ".#x",
            "Sources/App/4913",
            "4913",
            "Sources/App/#main.swift#",
            "#x#",
        ])
    func editorDroppings(path: String) {
        #expect(IgnoreRules().isIgnored(path, isDirectory: false))
    }

    @Test(
        "real files are not editor droppings",
        arguments: [
            "Sources/App/main.swift",
            "Sources/App/4913.swift",
            "Sources/App/49130",
            "Sources/App/swap.swift",
            "Sources/App/#notes.md",
            "Sources/App/a#b#c.swift",
            "Sources/App/.env",
            "README.md",
            "Package.swift",
        ])
    func realFiles(path: String) {
        #expect(!IgnoreRules().isIgnored(path, isDirectory: false))
    }

    @Test("a directory named like a dropping is not a dropping")
    func droppingNamedDirectory() {
        #expect(!IgnoreRules().isIgnored("Sources/backup~", isDirectory: true))
        #expect(!IgnoreRules().isIgnored("Sources/4913", isDirectory: true))
    }

    // MARK: gitignore semantics

    @Test("an unanchored name matches at any depth")
    func unanchoredName() {
        let rules = IgnoreRules(patterns: ["*.log", "build"])
        #expect(rules.isIgnored("server.log", isDirectory: false))
        #expect(rules.isIgnored("a/b/c/server.log", isDirectory: false))
        #expect(rules.isIgnored("build", isDirectory: true))
        #expect(rules.isIgnored("Sources/App/build", isDirectory: false))
        #expect(rules.isIgnored("Sources/App/build/out.swift", isDirectory: false))
        #expect(!rules.isIgnored("server.logs", isDirectory: false))
        #expect(!rules.isIgnored("builder/x.swift", isDirectory: false))
        #expect(!rules.isIgnored("Sources/App/main.swift", isDirectory: false))
    }

    @Test("a leading slash anchors at the root")
    func anchoredAtRoot() {
        let rules = IgnoreRules(patterns: ["/tmp"])
        #expect(rules.isIgnored("tmp", isDirectory: true))
        #expect(rules.isIgnored("tmp", isDirectory: false))
        #expect(rules.isIgnored("tmp/scratch.swift", isDirectory: false))
        #expect(!rules.isIgnored("Sources/tmp", isDirectory: true))
        #expect(!rules.isIgnored("Sources/tmp/scratch.swift", isDirectory: false))
        #expect(!rules.isIgnored("tmpfile", isDirectory: false))
    }

    @Test("a slash in the middle anchors; * stays within one segment")
    func middleSlash() {
        let rules = IgnoreRules(patterns: ["docs/*.md"])
        #expect(rules.isIgnored("docs/guide.md", isDirectory: false))
        #expect(rules.isIgnored("docs/.hidden.md", isDirectory: false))
        #expect(!rules.isIgnored("docs/guide.txt", isDirectory: false))
        #expect(!rules.isIgnored("docs/sub/guide.md", isDirectory: false))
        #expect(!rules.isIgnored("other/docs/guide.md", isDirectory: false))
        #expect(!rules.isIgnored("guide.md", isDirectory: false))
    }

    @Test("a trailing slash matches directories only, at any depth")
    func directoryOnly() {
        let rules = IgnoreRules(patterns: ["logs/"])
        #expect(rules.isIgnored("logs", isDirectory: true))
        #expect(!rules.isIgnored("logs", isDirectory: false))
        #expect(rules.isIgnored("logs/today.txt", isDirectory: false))
        #expect(rules.isIgnored("a/b/logs", isDirectory: true))
        #expect(rules.isIgnored("a/b/logs/x.swift", isDirectory: false))
        #expect(!rules.isIgnored("a/b/logs", isDirectory: false))
    }

    @Test("negation re-includes a file; the last matching rule wins")
    func negation() {
        let rules = IgnoreRules(patterns: ["*.log", "!keep.log"])
        #expect(rules.isIgnored("debug.log", isDirectory: false))
        #expect(rules.isIgnored("deep/debug.log", isDirectory: false))
        #expect(!rules.isIgnored("keep.log", isDirectory: false))
        #expect(!rules.isIgnored("deep/keep.log", isDirectory: false))

        let reversed = IgnoreRules(patterns: ["!keep.log", "*.log"])
        #expect(reversed.isIgnored("keep.log", isDirectory: false))
    }

    @Test("a file inside an ignored directory cannot be re-included")
    func negationInsideIgnoredDirectory() {
        let rules = IgnoreRules(patterns: ["out/", "!out/keep.swift"])
        #expect(rules.isIgnored("out/keep.swift", isDirectory: false))
        #expect(rules.isIgnored("out/other.swift", isDirectory: false))
    }

    @Test("**/name/** ignores everything under that directory at any depth")
    func doubleStar() {
        let rules = IgnoreRules(patterns: ["**/generated/**"])
        #expect(rules.isIgnored("generated/Model.swift", isDirectory: false))
        #expect(rules.isIgnored("Sources/App/generated/Model.swift", isDirectory: false))
        #expect(rules.isIgnored("a/generated/b/c/d.swift", isDirectory: false))
        #expect(rules.isIgnored("Sources/generated/sub", isDirectory: true))
        #expect(!rules.isIgnored("Sources/App/generatedModel.swift", isDirectory: false))
        #expect(!rules.isIgnored("Sources/generated.swift", isDirectory: false))
        #expect(!rules.isIgnored("Sources/App/main.swift", isDirectory: false))
    }

    @Test("** in the middle matches zero or more directories")
    func middleDoubleStar() {
        let rules = IgnoreRules(patterns: ["a/**/z.swift"])
        #expect(rules.isIgnored("a/z.swift", isDirectory: false))
        #expect(rules.isIgnored("a/b/z.swift", isDirectory: false))
        #expect(rules.isIgnored("a/b/c/d/z.swift", isDirectory: false))
        #expect(!rules.isIgnored("b/a/z.swift", isDirectory: false))
        #expect(!rules.isIgnored("a/b/y.swift", isDirectory: false))
    }

    @Test("files inside an ignored directory are ignored")
    func insideIgnoredDirectory() {
        let rules = IgnoreRules(patterns: ["vendor", "/node_modules/"])
        #expect(rules.isIgnored("vendor/pkg/file.swift", isDirectory: false))
        #expect(rules.isIgnored("Sources/vendor/pkg/file.swift", isDirectory: false))
        #expect(rules.isIgnored("node_modules/a/b/index.js", isDirectory: false))
        #expect(!rules.isIgnored("web/node_modules/a/index.js", isDirectory: false))
    }

    @Test("? and character classes match one character")
    func wildcards() {
        let rules = IgnoreRules(patterns: ["file?.txt", "snap[0-9].bin"])
        #expect(rules.isIgnored("file1.txt", isDirectory: false))
        #expect(!rules.isIgnored("file12.txt", isDirectory: false))
        #expect(rules.isIgnored("x/snap7.bin", isDirectory: false))
        #expect(!rules.isIgnored("snapA.bin", isDirectory: false))
    }

    @Test("comments, blank lines, escapes and trailing spaces")
    func syntax() {
        let rules = IgnoreRules(patterns: [
            "# a comment", "", "   ", "\\#literal", "\\!bang", "*.tmp   ", "*.bak \r", "*.old\r", "/",
        ])
        #expect(!rules.isIgnored("# a comment", isDirectory: false))
        #expect(!rules.isIgnored("a comment", isDirectory: false))
        #expect(rules.isIgnored("#literal", isDirectory: false))
        #expect(rules.isIgnored("!bang", isDirectory: false))
        #expect(rules.isIgnored("scratch.tmp", isDirectory: false))
        #expect(rules.isIgnored("x/scratch.bak", isDirectory: false))
        #expect(rules.isIgnored("scratch.old", isDirectory: false))
        #expect(!rules.isIgnored("Sources/App/main.swift", isDirectory: false))
    }

    @Test("add(patterns:) appends to the rules from init")
    func addPatterns() {
        var rules = IgnoreRules(patterns: ["*.log"])
        #expect(rules.isIgnored("keep.log", isDirectory: false))
        rules.add(patterns: ["!keep.log"])
        #expect(!rules.isIgnored("keep.log", isDirectory: false))
        #expect(rules.isIgnored("other.log", isDirectory: false))
    }

    @Test("the empty path and the root are never ignored")
    func emptyPath() {
        let rules = IgnoreRules(patterns: ["*"])
        #expect(!rules.isIgnored("", isDirectory: true))
        #expect(!rules.isIgnored("/", isDirectory: true))
        #expect(rules.isIgnored("anything", isDirectory: false))
    }
}
