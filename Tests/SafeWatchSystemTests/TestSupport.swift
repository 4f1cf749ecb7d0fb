import Foundation
import SafeWatchSystem
import Synchronization
import TestSupport

/// A private temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        let template = NSTemporaryDirectory() + "safe-watch-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard mkdtemp(&bytes) != nil else { throw POSIXError(.EIO) }
        self.path = bytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    func write(_ relative: String, _ text: String = "x\n") throws {
        let url = URL(fileURLWithPath: self.path + "/" + relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: false, encoding: .utf8)
    }

    func mkdir(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: self.path + "/" + relative, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// What a watcher reports.
typealias ChangeLog = Recorder<WatchedChange>

extension Recorder where Element == WatchedChange {
    func saw(_ path: String, _ kind: WatchedChange.Kind = .changed) -> @Sendable ([WatchedChange]) -> Bool {
        { $0.contains(WatchedChange(path: path, kind: kind)) }
    }
}
