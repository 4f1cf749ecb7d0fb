import Foundation
import Testing

@testable import SafeWatch

/// Changes judged by content, on real files.
@Suite struct ContentLedgerTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "ledger-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path + "/Sources", withIntermediateDirectories: true)
        return path
    }()

    func write(_ text: String, _ path: String) throws {
        try text.write(toFile: self.directory + "/" + path, atomically: false, encoding: .utf8)
    }

    @Test func theSameBytesSavedAgainAreNoChange() throws {
        let ledger = ContentLedger(directory: self.directory)
        try self.write("let a = 1\n", "Sources/a.swift")
        ledger.seed(present: ["Sources/a.swift"])
        // Present at start, content unknown: the first save counts.
        #expect(ledger.changed(["Sources/a.swift"]) == ["Sources/a.swift"])
        try self.write("let a = 1\n", "Sources/a.swift")
        #expect(ledger.changed(["Sources/a.swift"]) == [])
        try self.write("let a = 2\n", "Sources/a.swift")
        #expect(ledger.changed(["Sources/a.swift"]) == ["Sources/a.swift"])
    }

    @Test func aDeletionIsAChangeButATemporaryFileThatCameAndWentIsNot() throws {
        let ledger = ContentLedger(directory: self.directory)
        try self.write("x", "Sources/b.swift")
        ledger.seed(present: ["Sources/b.swift"])
        try FileManager.default.removeItem(atPath: self.directory + "/Sources/b.swift")
        #expect(ledger.changed(["Sources/b.swift", "Sources/.b.swift.tmp"]) == ["Sources/b.swift"])
        // Gone and still gone: no second change.
        #expect(ledger.changed(["Sources/b.swift"]) == [])
    }

    @Test func whatSafeWatchWritesItselfIsNoChangeButAnEditAfterIs() throws {
        let ledger = ContentLedger(directory: self.directory)
        let contents = Data("v1 sum\n".utf8)
        ledger.willWrite(self.directory + "/migrations.sum", contents: contents)
        try contents.write(to: URL(fileURLWithPath: self.directory + "/migrations.sum"))
        #expect(ledger.changed(["migrations.sum"]) == [])
        try self.write("edited\n", "migrations.sum")
        #expect(ledger.changed(["migrations.sum"]) == ["migrations.sum"])
    }

    @Test func aFileRecordedAfterTheBuildWroteItIsNoChange() throws {
        let ledger = ContentLedger(directory: self.directory)
        try self.write("{ \"pins\": [] }", "Package.resolved")
        ledger.recordCurrent("Package.resolved")
        #expect(ledger.changed(["Package.resolved"]) == [])
        try self.write("{ \"pins\": [1] }", "Package.resolved")
        #expect(ledger.changed(["Package.resolved"]) == ["Package.resolved"])
    }

    @Test func notesAndDirectoriesPassThrough() throws {
        let ledger = ContentLedger(directory: self.directory)
        #expect(ledger.changed(["(the whole tree: inotify queue overflowed)", "Sources"]).count == 2)
        #expect(ledger.changed(["Sources"]) == ["Sources"])
    }
}
