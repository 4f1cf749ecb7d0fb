extension Modification {
    /// How `current` differs from the bytes whose checksum was `recorded`.
    ///
    /// Line-ending and BOM edits are proven from the checksum alone (the variants are hashed);
    /// the other classes need the previous bytes (`previous`, from git or safe-watch's snapshot).
    /// `ignoring`: sqlx.toml's ignored-chars, part of how `recorded` was computed.
    public static func classify(
        current: [UInt8], recorded: [UInt8], previous: [UInt8]?, ignoring: Set<Unicode.Scalar> = []
    ) -> Modification {
        for variant in lineEndingVariants(of: current) where sqlxChecksum(variant, ignoring: ignoring) == recorded {
            return .lineEndingsOrBOM
        }
        guard let previous, let old = String(validating: previous, as: UTF8.self),
            let new = String(validating: current, as: UTF8.self)
        else { return .unknown }
        let oldStatements = SQLText.statements(old)
        let newStatements = SQLText.statements(new)
        if oldStatements == newStatements { return .whitespaceOrComments }
        if newStatements.count > oldStatements.count, Array(newStatements.prefix(oldStatements.count)) == oldStatements {
            return .statementsAppended
        }
        return .realChange
    }

    /// The bytes with LF/CRLF line endings and with and without a UTF-8 byte-order mark.
    static func lineEndingVariants(of bytes: [UInt8]) -> [[UInt8]] {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let bare = bytes.starts(with: bom) ? Array(bytes.dropFirst(3)) : bytes
        var lf: [UInt8] = []
        var index = 0
        while index < bare.count {
            if bare[index] == 13, index + 1 < bare.count, bare[index + 1] == 10 {
                index += 1
                continue
            }
            lf.append(bare[index])
            index += 1
        }
        var crlf: [UInt8] = []
        for byte in lf {
            if byte == 10 { crlf.append(13) }
            crlf.append(byte)
        }
        return [lf, crlf, bom + lf, bom + crlf]
    }

    /// The recovery that fits this kind of edit to an applied migration.
    func recovery(file: String, version: Int64) -> String {
        switch self {
        case .lineEndingsOrBOM:
            return "restore the exact bytes (`git checkout -- migrations/\(file)`; add `*.sql -text` to .gitattributes so checkouts keep them), or on a dev database `safe-watch migrations fix-checksum \(version)` (proven equivalent)"
        case .whitespaceOrComments:
            return "restore the file (`git checkout -- migrations/\(file)`), or on a dev database `safe-watch migrations fix-checksum \(version)` (the statements are unchanged)"
        case .statementsAppended:
            return "move the new statements into a new migration (`safe-watch migrations add <name>`), then `git checkout -- migrations/\(file)`"
        case .realChange, .unknown:
            return "undo the edit (`git checkout -- migrations/\(file)`) and put the change in a new migration (`safe-watch migrations add <name>`); applied migrations are history"
        }
    }

    var explanation: String {
        switch self {
        case .lineEndingsOrBOM: return "only line endings or a byte-order mark changed"
        case .whitespaceOrComments: return "only whitespace or comments changed"
        case .statementsAppended: return "statements were appended"
        case .realChange: return "its statements changed"
        case .unknown: return "the previous content is not available to compare"
        }
    }
}
