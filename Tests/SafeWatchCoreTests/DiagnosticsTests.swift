import SafeWatchCore
import Testing

@Suite("Diagnostics")
struct DiagnosticsTests {
    let parser = DiagnosticsParser(root: "/abs/root")

    /// What `swift build` prints for two errors, one of them twice, a warning and notes.
    static let swiftBuildOutput = """
        Building for debugging...
        [0/3] Write sources
        [2/5] Compiling App main.swift
        /abs/root/Sources/App/main.swift:12:5: error: cannot find 'x' in scope
        10 | import Foundation
        11 |
        12 |     print(x)
           |     `- error: cannot find 'x' in scope
        13 |
        /abs/root/Sources/App/main.swift:12:5: error: cannot find 'x' in scope
        10 | import Foundation
        11 |
        12 |     print(x)
           |     ^ error: cannot find 'x' in scope
        13 |
        /abs/root/Sources/App/Routes.swift:3:9: warning: variable 'y' was never used; consider replacing with '_'
         1 | func routes() {
         3 |     let y = 1
           |         `- warning: variable 'y' was never used; consider replacing with '_' or removing it
        /abs/root/Sources/App/Routes.swift:8:20: error: cannot convert value of type 'Int' to expected argument type 'String'
        /abs/root/Sources/App/Routes.swift:2:6: note: 'f' declared here
        /abs/root/Sources/Lib/Thing.swift:7:1: error: expected '}' in struct
        error: emit-module command failed with exit code 1 (use -v to see invocation)
        error: emit-module command failed with exit code 1 (use -v to see invocation)
        """

    @Test("swift build output: errors located, duplicates dropped, warnings and notes not counted")
    func swiftBuild() {
        let parsed = parser.errors(in: Self.swiftBuildOutput)
        #expect(
            parsed.diagnostics == [
                Diagnostic(
                    file: "Sources/App/main.swift", line: 12, column: 5, severity: .error,
                    message: "cannot find 'x' in scope"),
                Diagnostic(
                    file: "Sources/App/Routes.swift", line: 8, column: 20, severity: .error,
                    message: "cannot convert value of type 'Int' to expected argument type 'String'"),
                Diagnostic(
                    file: "Sources/Lib/Thing.swift", line: 7, column: 1, severity: .error,
                    message: "expected '}' in struct"),
            ])
        #expect(parsed.errorCount == 3)
        #expect(parsed.otherErrors == ["emit-module command failed with exit code 1 (use -v to see invocation)"])
    }

    @Test("a diagnostic prints as file:line: message")
    func description() {
        let parsed = parser.errors(in: "/abs/root/Sources/App/main.swift:12:5: error: cannot find 'x' in scope\n")
        #expect(parsed.diagnostics.map(\.description) == ["Sources/App/main.swift:12: cannot find 'x' in scope"])
    }

    @Test("source excerpt lines are not diagnostics")
    func excerptLines() {
        let parsed = parser.errors(
            in: """
                10 | let a: [String: Int] = [:]
                   |     ^ error: something: with colons
                   |     `- error: value of type 'X' has no member 'y'
                12 | error: not a diagnostic
                """)
        #expect(parsed.diagnostics.isEmpty)
        #expect(parsed.errorCount == 0)
        #expect(parsed.otherErrors.isEmpty)
    }

    @Test("only warnings: nothing counted")
    func warningsOnly() {
        let parsed = parser.errors(
            in: """
                /abs/root/Sources/App/a.swift:1:1: warning: unused
                /abs/root/Sources/App/a.swift:2:1: note: see here
                /abs/root/Sources/App/a.swift:3:1: remark: noted
                Build complete!
                """)
        #expect(parsed.diagnostics.isEmpty)
        #expect(parsed.errorCount == 0)
    }

    @Test("paths are made relative to the root; others are kept")
    func relativePaths() {
        let parsed = parser.errors(
            in: """
                /abs/root/Sources/App/a.swift:1:2: error: one
                /abs/rootother/b.swift:3:4: error: two
                /usr/include/c.h:5:6: error: three
                ./Sources/App/d.swift:7:8: error: four
                """)
        #expect(
            parsed.diagnostics.map(\.file) == ["Sources/App/a.swift", "/abs/rootother/b.swift", "/usr/include/c.h", "Sources/App/d.swift"])
        #expect(parsed.errorCount == 4)
    }

    @Test("a root given with a trailing slash works the same")
    func rootWithSlash() {
        let parsed = DiagnosticsParser(root: "/abs/root/").errors(in: "/abs/root/Sources/a.swift:1:2: error: one\n")
        #expect(parsed.diagnostics.first?.file == "Sources/a.swift")
    }

    @Test("a path with spaces inside the root is still located")
    func pathWithSpaces() {
        let parsed = DiagnosticsParser(root: "/home/me/My App").errors(
            in: "/home/me/My App/Sources/App/main.swift:4:2: error: cannot find 'z' in scope\n")
        #expect(
            parsed.diagnostics == [
                Diagnostic(
                    file: "Sources/App/main.swift", line: 4, column: 2, severity: .error,
                    message: "cannot find 'z' in scope")
            ])
    }

    @Test("messages keep their own colons")
    func colonsInMessage() {
        let parsed = parser.errors(in: "/abs/root/Sources/a.swift:3:4: error: type 'A' has no member 'b': did you mean 'c'?\n")
        #expect(parsed.diagnostics.first?.message == "type 'A' has no member 'b': did you mean 'c'?")
    }

    @Test("a link error without a column")
    func linkErrorWithoutColumn() {
        let parsed = parser.errors(
            in: """
                /abs/root/Sources/App/main.swift:20: error: undefined reference to 'helper()'
                error: link command failed with exit code 1 (use -v to see invocation)
                """)
        #expect(
            parsed.diagnostics == [
                Diagnostic(
                    file: "Sources/App/main.swift", line: 20, column: nil, severity: .error,
                    message: "undefined reference to 'helper()'")
            ])
        #expect(parsed.errorCount == 1)
        #expect(parsed.otherErrors == ["link command failed with exit code 1 (use -v to see invocation)"])
    }

    @Test("`error: link command failed` alone is an other error, not a diagnostic")
    func linkCommandFailed() {
        let parsed = parser.errors(
            in: """
                ld.lld: error: undefined symbol: main
                error: link command failed with exit code 1 (use -v to see invocation)
                [7/8] Linking app
                """)
        #expect(parsed.diagnostics.isEmpty)
        #expect(parsed.errorCount == 0)
        #expect(parsed.otherErrors == ["link command failed with exit code 1 (use -v to see invocation)"])
    }

    @Test("go build output")
    func goBuild() {
        let parsed = parser.errors(
            in: """
                # example.com/app
                ./main.go:12:3: undefined: x
                ./handlers/user.go:40:10: cannot use s (variable of type string) as int value in return statement
                ./main.go:12:3: undefined: x
                """)
        #expect(
            parsed.diagnostics == [
                Diagnostic(file: "main.go", line: 12, column: 3, severity: .error, message: "undefined: x"),
                Diagnostic(
                    file: "handlers/user.go", line: 40, column: 10, severity: .error,
                    message: "cannot use s (variable of type string) as int value in return statement"),
            ])
        #expect(parsed.errorCount == 2)
    }

    @Test("a non-go file without a severity word is not an error")
    func noSeverityNonGo() {
        let parsed = parser.errors(in: "./notes.txt:1:1: something odd\n")
        #expect(parsed.diagnostics.isEmpty)
    }

    @Test("rust (cargo) output: the location follows on the --> line")
    func rust() {
        let parsed = parser.errors(
            in: """
                   Compiling app v0.1.0 (/abs/root)
                warning: unused variable: `y`
                 --> src/lib.rs:9:9
                  |
                9 |     let y = 2;
                  |         ^ help: if this is intentional, prefix it with an underscore: `_y`
                error[E0425]: cannot find value `x` in this scope
                 --> src/main.rs:2:5
                  |
                2 |     x
                  |     ^ not found in this scope

                error: aborting due to 1 previous error
                error: could not compile `app` (bin "app") due to 1 previous error
                """)
        #expect(
            parsed.diagnostics == [
                Diagnostic(
                    file: "src/main.rs", line: 2, column: 5, severity: .error,
                    message: "cannot find value `x` in this scope")
            ])
        #expect(parsed.errorCount == 1)
        #expect(
            parsed.otherErrors == [
                "aborting due to 1 previous error", "could not compile `app` (bin \"app\") due to 1 previous error",
            ])
    }

    @Test("fatal error counts as an error")
    func fatalError() {
        let parsed = parser.errors(in: "/abs/root/Sources/a.c:1:10: fatal error: 'x.h' file not found\n")
        #expect(parsed.diagnostics.first?.message == "'x.h' file not found")
        #expect(parsed.errorCount == 1)
    }

    // MARK: BuildFailure.from

    @Test("one error")
    func summaryOneError() {
        let failure = BuildFailure.from(
            output: "/abs/root/Sources/App/main.swift:12:5: error: cannot find 'x' in scope\n", status: .exited(1),
            parser: parser)
        #expect(failure.summary == "1 error")
        #expect(failure.errorCount == 1)
        #expect(failure.diagnostics.map(\.description) == ["Sources/App/main.swift:12: cannot find 'x' in scope"])
    }

    @Test("three errors")
    func summaryThreeErrors() {
        let failure = BuildFailure.from(output: Self.swiftBuildOutput, status: .exited(1), parser: parser)
        #expect(failure.summary == "3 errors")
        #expect(failure.errorCount == 3)
        #expect(failure.diagnostics.count == 3)
    }

    @Test("exit status 127: the build command was not found")
    func summaryNotFound() {
        let failure = BuildFailure.from(
            output: "/bin/sh: 1: swfit: not found\n", status: .exited(127), parser: parser)
        #expect(failure.summary == "build command not found (exit status 127)")
        #expect(failure.diagnostics.isEmpty)
        #expect(failure.errorCount == 1)
    }

    @Test("no diagnostics: the status and the last output line")
    func summaryLastLine() {
        let failure = BuildFailure.from(
            output: "make: Entering directory '/abs/root'\nmake: *** [Makefile:3: all] Error 2\n\n",
            status: .exited(2), parser: parser)
        #expect(failure.summary == "exit status 2: make: *** [Makefile:3: all] Error 2")
        #expect(failure.diagnostics.isEmpty)
        #expect(failure.errorCount == 1)
    }

    @Test("no output at all: just the status")
    func summaryNoOutput() {
        #expect(BuildFailure.from(output: "", status: .exited(1), parser: parser).summary == "exit status 1")
        #expect(
            BuildFailure.from(output: "", status: .signalled(9), parser: parser).summary == "signal SIGKILL")
        #expect(
            BuildFailure.from(output: "compiling\n", status: .signalled(15), parser: parser).summary
                == "signal SIGTERM: compiling")
    }

    @Test("no located errors but an error: line: that line")
    func summaryOtherError() {
        let failure = BuildFailure.from(
            output: "Building...\nerror: link command failed with exit code 1 (use -v to see invocation)\nmore\n",
            status: .exited(1), parser: parser)
        #expect(failure.summary == "link command failed with exit code 1 (use -v to see invocation)")
        #expect(failure.errorCount == 1)
    }
}
