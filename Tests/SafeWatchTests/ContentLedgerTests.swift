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

    /// A checkout's worth of paths: files never read are judged by whether they are there, files
    /// whose content was recorded are still compared, and each change says whether it is there.
    @Test func aBurstLargerThanTheReadLimitJudgesUnreadFilesByWhetherTheyAreThere() throws {
        let ledger = ContentLedger(directory: self.directory)
        let count = ContentLedger.readsPerBurst + 44
        let old = (0..<count).map { "Sources/old\($0).swift" }
        for path in old { try self.write("same\n", path) }
        try self.write("kept\n", "Sources/kept.swift")
        ledger.seed(present: old + ["Sources/kept.swift"])
        // kept.swift's content is recorded by a save of its own.
        try self.write("kept 2\n", "Sources/kept.swift")
        #expect(ledger.changed(["Sources/kept.swift"]) == ["Sources/kept.swift"])

        // The burst: every old file rewritten with the same bytes, one deleted, one new file, a
        // temporary file that came and went, kept.swift saved unchanged.
        for path in old.dropFirst() { try self.write("same\n", path) }
        try FileManager.default.removeItem(atPath: self.directory + "/" + old[0])
        try self.write("new\n", "Sources/new.swift")
        let burst = old + ["Sources/new.swift", "Sources/.tmp-123", "Sources/kept.swift"]
        #expect(burst.count > ContentLedger.readsPerBurst)
        let changes = ledger.changes(burst)
        #expect(changes.map(\.path) == old + ["Sources/new.swift"])
        #expect(changes.filter { !$0.isThere }.map(\.path) == [old[0]])

        // Their content was not read: the next save of one counts even with the same bytes, and
        // the one after it, read this time, does not.
        try self.write("same\n", old[1])
        #expect(ledger.changed([old[1]]) == [old[1]])
        try self.write("same\n", old[1])
        #expect(ledger.changed([old[1]]) == [])
        // Gone and still gone: no second change.
        #expect(ledger.changed([old[0]]) == [])
    }

    @Test func notesAndDirectoriesPassThrough() throws {
        let ledger = ContentLedger(directory: self.directory)
        #expect(ledger.changed(["(the whole tree: inotify queue overflowed)", "Sources"]).count == 2)
        #expect(ledger.changed(["Sources"]) == ["Sources"])
    }
}
