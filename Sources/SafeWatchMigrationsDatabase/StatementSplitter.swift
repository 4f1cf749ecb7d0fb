/// Cuts a migration file into the statements the database itself would see, keeping each
/// statement's exact text (comments included).
///
/// Neither client can send a multi-statement script as one message: PostgresNIO only speaks the
/// extended query protocol (one statement per Parse), and SQLiteNIO prepares the first statement of
/// a string and silently drops the rest. sqlx sends the whole file (PostgreSQL: one simple-protocol
/// Query; SQLite: a prepare loop over the tail), so the boundaries here follow the servers' own
/// lexers: psql's for PostgreSQL, `sqlite3_complete` for SQLite.
package enum StatementSplitter {
    /// PostgreSQL statements: `;` ends a statement outside quotes (`'…'`, `E'…'`, `"…"`,
    /// `$tag$…$tag$`), comments (`--`, nested `/* */`), parentheses, and `BEGIN … END` bodies of
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE … BEGIN ATOMIC` (psql's heuristic). Pieces that hold
    /// only whitespace and comments are dropped.
    package static func postgres(_ sql: String) -> [String] {
        let bytes = Array(sql.utf8)
        let count = bytes.count
        var pieces: [String] = []
        var start = 0
        var index = 0
        var hasToken = false
        var parenDepth = 0
        var beginDepth = 0
        var identifierCount = 0
        var leadingWords: [UInt8] = [0, 0, 0, 0]

        func emit(_ end: Int) {
            if hasToken { pieces.append(String(decoding: bytes[start..<end], as: UTF8.self)) }
            start = end
            hasToken = false
            parenDepth = 0
            beginDepth = 0
            identifierCount = 0
            leadingWords = [0, 0, 0, 0]
        }

        /// Skips a quoted run starting at `index` (the opening quote); `backslashEscapes` for E'…'.
        func skipQuoted(_ quote: UInt8, backslashEscapes: Bool) {
            index += 1
            while index < count {
                let byte = bytes[index]
                if backslashEscapes && byte == UInt8(ascii: "\\") {
                    index += 2
                    continue
                }
                if byte == quote {
                    if index + 1 < count && bytes[index + 1] == quote {
                        index += 2
                        continue
                    }
                    index += 1
                    return
                }
                index += 1
            }
        }

        while index < count {
            let byte = bytes[index]
            let next: UInt8 = index + 1 < count ? bytes[index + 1] : 0
            switch byte {
            case UInt8(ascii: "-") where next == UInt8(ascii: "-"):
                while index < count && bytes[index] != UInt8(ascii: "\n") { index += 1 }
            case UInt8(ascii: "/") where next == UInt8(ascii: "*"):
                var depth = 0
                while index < count {
                    if bytes[index] == UInt8(ascii: "/") && index + 1 < count && bytes[index + 1] == UInt8(ascii: "*") {
                        depth += 1
                        index += 2
                    } else if bytes[index] == UInt8(ascii: "*") && index + 1 < count && bytes[index + 1] == UInt8(ascii: "/") {
                        depth -= 1
                        index += 2
                        if depth == 0 { break }
                    } else {
                        index += 1
                    }
                }
            case UInt8(ascii: "'"):
                hasToken = true
                skipQuoted(byte, backslashEscapes: false)
            case UInt8(ascii: "\""):
                hasToken = true
                skipQuoted(byte, backslashEscapes: false)
            case UInt8(ascii: "$"):
                hasToken = true
                if let tagEnd = dollarTagEnd(bytes, from: index) {
                    let tag = Array(bytes[index...tagEnd])
                    index = tagEnd + 1
                    index = indexAfter(tag, in: bytes, from: index) ?? count
                } else {
                    index += 1
                }
            case UInt8(ascii: "("):
                hasToken = true
                parenDepth += 1
                index += 1
            case UInt8(ascii: ")"):
                hasToken = true
                parenDepth = max(0, parenDepth - 1)
                index += 1
            case UInt8(ascii: ";"):
                index += 1
                if parenDepth == 0 && beginDepth == 0 { emit(index) }
            default:
                if isPostgresIdentifierStart(byte) {
                    hasToken = true
                    // E'…' is one token: a string with backslash escapes.
                    if (byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")) && next == UInt8(ascii: "'") {
                        index += 1
                        skipQuoted(UInt8(ascii: "'"), backslashEscapes: true)
                        continue
                    }
                    var end = index + 1
                    while end < count && isPostgresIdentifierPart(bytes[end]) { end += 1 }
                    let word = String(decoding: bytes[index..<end], as: UTF8.self).lowercased()
                    index = end
                    // psql's BEGIN ATOMIC tracking (psqlscan.l).
                    if identifierCount == 0 { leadingWords = [0, 0, 0, 0] }
                    if ["create", "function", "procedure", "or", "replace"].contains(word), identifierCount < 4 {
                        leadingWords[identifierCount] = word.utf8.first ?? 0
                    }
                    identifierCount += 1
                    let c = UInt8(ascii: "c"), f = UInt8(ascii: "f"), p = UInt8(ascii: "p")
                    let o = UInt8(ascii: "o"), r = UInt8(ascii: "r")
                    let routine =
                        leadingWords[0] == c
                        && (leadingWords[1] == f || leadingWords[1] == p
                            || (leadingWords[1] == o && leadingWords[2] == r && (leadingWords[3] == f || leadingWords[3] == p)))
                    if routine && parenDepth == 0 {
                        if word == "begin" {
                            beginDepth += 1
                        } else if word == "case" {
                            if beginDepth >= 1 { beginDepth += 1 }
                        } else if word == "end" {
                            if beginDepth > 0 { beginDepth -= 1 }
                        }
                    }
                } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                    // A number (1e5, 0x1F, 1_000): never a keyword.
                    hasToken = true
                    index += 1
                    while index < count && (isPostgresIdentifierPart(bytes[index]) || bytes[index] == UInt8(ascii: ".")) {
                        index += 1
                    }
                } else {
                    if !isSpace(byte) { hasToken = true }
                    index += 1
                }
            }
        }
        emit(count)
        return pieces
    }

    /// SQLite statements: the state machine of `sqlite3_complete` (complete.c), which knows that
    /// `CREATE [TEMP] TRIGGER … BEGIN …; END;` is one statement. Pieces that hold only whitespace,
    /// comments and `;` are dropped (SQLite prepares them to nothing).
    package static func sqlite(_ sql: String) -> [String] {
        enum Token: Int { case semi = 0, space, other, explain, create, temp, trigger, end }
        // States: 0 invalid, 1 start, 2 normal, 3 explain, 4 create, 5 trigger, 6 semi, 7 end.
        let transitions: [[Int]] = [
            [1, 0, 2, 3, 4, 2, 2, 2],
            [1, 1, 2, 3, 4, 2, 2, 2],
            [1, 2, 2, 2, 2, 2, 2, 2],
            [1, 3, 3, 2, 4, 2, 2, 2],
            [1, 4, 2, 2, 2, 4, 5, 2],
            [6, 5, 5, 5, 5, 5, 5, 5],
            [6, 6, 5, 5, 5, 5, 5, 7],
            [1, 7, 5, 5, 5, 5, 5, 5],
        ]
        let bytes = Array(sql.utf8)
        let count = bytes.count
        var pieces: [String] = []
        var state = 0
        var start = 0
        var index = 0
        var hasToken = false
        while index < count {
            let byte = bytes[index]
            let next: UInt8 = index + 1 < count ? bytes[index + 1] : 0
            let token: Token
            switch byte {
            case UInt8(ascii: ";"):
                token = .semi
                index += 1
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), 0x0C:
                token = .space
                index += 1
            case UInt8(ascii: "/") where next == UInt8(ascii: "*"):
                index += 2
                while index + 1 < count && !(bytes[index] == UInt8(ascii: "*") && bytes[index + 1] == UInt8(ascii: "/")) {
                    index += 1
                }
                index = min(index + 2, count)
                token = .space
            case UInt8(ascii: "-") where next == UInt8(ascii: "-"):
                while index < count && bytes[index] != UInt8(ascii: "\n") { index += 1 }
                token = .space
            case UInt8(ascii: "["):
                index += 1
                while index < count && bytes[index] != UInt8(ascii: "]") { index += 1 }
                index = min(index + 1, count)
                token = .other
            case UInt8(ascii: "`"), UInt8(ascii: "\""), UInt8(ascii: "'"):
                index += 1
                while index < count && bytes[index] != byte { index += 1 }
                index = min(index + 1, count)
                token = .other
            default:
                if isSQLiteIdentifierPart(byte) {
                    var end = index + 1
                    while end < count && isSQLiteIdentifierPart(bytes[end]) { end += 1 }
                    let word = String(decoding: bytes[index..<end], as: UTF8.self).lowercased()
                    index = end
                    switch word {
                    case "create": token = .create
                    case "trigger": token = .trigger
                    case "temp", "temporary": token = .temp
                    case "end": token = .end
                    case "explain": token = .explain
                    default: token = .other
                    }
                } else {
                    token = .other
                    index += 1
                }
            }
            if token != .space && token != .semi { hasToken = true }
            let newState = transitions[state][token.rawValue]
            if token == .semi && newState == 1 {
                if hasToken { pieces.append(String(decoding: bytes[start..<index], as: UTF8.self)) }
                start = index
                hasToken = false
            }
            state = newState
        }
        if hasToken { pieces.append(String(decoding: bytes[start..<count], as: UTF8.self)) }
        return pieces
    }

    /// The index of the closing `$` of a dollar-quote opening tag at `from`, or nil if the `$` there
    /// is not one (`$1`, a lone `$`).
    private static func dollarTagEnd(_ bytes: [UInt8], from: Int) -> Int? {
        var index = from + 1
        guard index < bytes.count else { return nil }
        if bytes[index] == UInt8(ascii: "$") { return index }
        guard isPostgresIdentifierStart(bytes[index]) else { return nil }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "$") { return index }
            guard isPostgresIdentifierStart(byte) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) else {
                return nil
            }
            index += 1
        }
        return nil
    }

    private static func indexAfter(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, bytes.count >= needle.count else { return nil }
        var index = from
        while index + needle.count <= bytes.count {
            if bytes[index] == needle[0] && Array(bytes[index..<index + needle.count]) == needle {
                return index + needle.count
            }
            index += 1
        }
        return nil
    }

    private static func isPostgresIdentifierStart(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || byte == UInt8(ascii: "_") || byte >= 0x80
    }

    private static func isPostgresIdentifierPart(_ byte: UInt8) -> Bool {
        isPostgresIdentifierStart(byte) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "$")
    }

    private static func isSQLiteIdentifierPart(_ byte: UInt8) -> Bool {
        isPostgresIdentifierPart(byte)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
            || byte == 0x0B || byte == 0x0C
    }
}
