/// Just enough SQL lexing to compare migrations and lint them: comments, quotes and statement
/// boundaries (`'…'`, `"…"`, `$tag$…$tag$`, `-- …`, `/* … */`).
enum SQLText {
    /// The statements of `text`, comments removed, whitespace collapsed, without the `;`.
    static func statements(_ text: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var characters = Array(text.unicodeScalars)
        characters.append(" ")
        var index = 0
        var pendingSpace = false
        func append(_ scalar: Unicode.Scalar) {
            if pendingSpace && !current.isEmpty { current.append(" ") }
            pendingSpace = false
            current.unicodeScalars.append(scalar)
        }
        while index < characters.count {
            let scalar = characters[index]
            let next = index + 1 < characters.count ? characters[index + 1] : " "
            switch scalar {
            case "-" where next == "-":
                while index < characters.count && characters[index] != "\n" { index += 1 }
                pendingSpace = true
            case "/" where next == "*":
                index += 2
                while index + 1 < characters.count && !(characters[index] == "*" && characters[index + 1] == "/") { index += 1 }
                index += 1
                pendingSpace = true
            case "'", "\"":
                append(scalar)
                index += 1
                while index < characters.count {
                    append(characters[index])
                    if characters[index] == scalar { break }
                    index += 1
                }
            case "$":
                // A dollar-quoted body: $tag$ … $tag$ (tag may be empty).
                var end = index + 1
                while end < characters.count && (characters[end].properties.isAlphabetic || characters[end] == "_") { end += 1 }
                if end < characters.count && characters[end] == "$" {
                    let tag = Array(characters[index...end])
                    for piece in tag { append(piece) }
                    index = end + 1
                    while index < characters.count {
                        if Array(characters[index..<min(index + tag.count, characters.count)]) == tag {
                            for piece in tag { append(piece) }
                            index += tag.count - 1
                            break
                        }
                        append(characters[index])
                        index += 1
                    }
                } else {
                    append(scalar)
                }
            case ";":
                if !current.isEmpty { statements.append(current) }
                current = ""
                pendingSpace = false
            default:
                if scalar.properties.isWhitespace {
                    pendingSpace = true
                } else {
                    append(scalar)
                }
            }
            index += 1
        }
        if !current.isEmpty { statements.append(current) }
        return statements
    }
}
