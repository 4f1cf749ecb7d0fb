import Foundation
import SafeWatchCore
import Testing

/// config/safe-watch.toml documents every key with its default: it must load, and say the defaults.
@Test func exampleConfigurationLoadsAndMatchesTheDefaults() throws {
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { root.deleteLastPathComponent() }
    let text = try String(contentsOf: root.appendingPathComponent("config/safe-watch.toml"), encoding: .utf8)
    let loaded = try ConfigurationLoader(fileName: "safe-watch.toml").load(text)
    #expect(loaded == Configuration())
}
