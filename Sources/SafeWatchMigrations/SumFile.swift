/// `migrations/safe-watch.sum`: the committed record of every migration file's sqlx checksum.
///
/// ```
/// # safe-watch.sum — … (comment lines start with #)
/// total 3f0a…            ← chained over every entry below, in order
/// 0001_users.up.sql 9b1c…
/// 0001_users.down.sql 77aa…
/// ```
/// Like atlas.sum, the total covers every line, so an edit, deletion or rename of a recorded file
/// is caught without a database, and two branches that each add a migration both change the
/// total line: git reports a conflict instead of merging them silently.
public struct SumFile: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var checksum: [UInt8]
        public init(name: String, checksum: [UInt8]) {
            self.name = name
            self.checksum = checksum
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// The record of `files`, in version order (up before down).
    public init(files: [MigrationFile]) {
        let ordered = files.sorted { ($0.version, $0.kind == .down ? 1 : 0, $0.name) < ($1.version, $1.kind == .down ? 1 : 0, $1.name) }
        self.entries = ordered.map { Entry(name: $0.name, checksum: $0.checksum) }
    }

    /// The chained total: h₀ = SHA-384(""), hᵢ = SHA-384(hᵢ₋₁ ‖ name ‖ 0 ‖ checksum).
    public var total: [UInt8] {
        var chain = sqlxChecksum([])
        for entry in self.entries {
            chain = sqlxChecksum(chain + Array(entry.name.utf8) + [0] + entry.checksum)
        }
        return chain
    }

    public func checksum(of name: String) -> [UInt8]? {
        self.entries.first { $0.name == name }?.checksum
    }

    public var rendered: String {
        var text = "# safe-watch.sum — the SHA-384 (sqlx's checksum) of every migration file. Commit it.\n"
        text += "# Regenerate with `safe-watch migrations hash`; never edit by hand.\n"
        text += "total \(hex(self.total))\n"
        for entry in self.entries {
            text += "\(entry.name) \(hex(entry.checksum))\n"
        }
        return text
    }

    /// A sum file that cannot be trusted, with the line at fault.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "\(MigrationDirectory.sumFileName):\(self.line): \(self.message)" }

        public init(line: Int, message: String) {
            self.line = line
            self.message = message
        }
    }

    /// Parses and verifies the total. Merge-conflict markers, malformed lines and a total that
    /// does not recompute are errors.
    public init(parsing text: String) throws(ParseError) {
        var entries: [Entry] = []
        var total: [UInt8]?
        var totalLine = 0
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = raw.trimmingWhitespace()
            let number = index + 1
            if line.hasPrefix("<<<<<<<") || line.hasPrefix("=======") || line.hasPrefix(">>>>>>>") {
                throw ParseError(line: number, message: "merge-conflict marker: two branches added migrations")
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let checksum = parseHex(String(parts[1])), checksum.count == 48 else {
                throw ParseError(line: number, message: "expected `NAME SHA384-HEX`, found \"\(line)\"")
            }
            if parts[0] == "total" {
                total = checksum
                totalLine = number
            } else {
                entries.append(Entry(name: String(parts[0]), checksum: checksum))
            }
        }
        guard let total else { throw ParseError(line: 1, message: "no `total` line") }
        self.entries = entries
        guard total == self.total else {
            throw ParseError(line: totalLine, message: "the total does not match the entries: the file was edited by hand or merged badly")
        }
    }
}

func parseHex(_ text: String) -> [UInt8]? {
    guard text.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    var iterator = text.makeIterator()
    while let high = iterator.next(), let low = iterator.next() {
        guard let value = UInt8(String([high, low]), radix: 16) else { return nil }
        bytes.append(value)
    }
    return bytes
}
