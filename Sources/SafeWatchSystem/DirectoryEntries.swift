import Glibc

/// A directory entry's name.
func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

/// A watched path relative to the project: no leading "./", no trailing "/", "." for the root.
func normalizedWatchPath(_ path: String) -> String {
    var path = path
    while path.hasPrefix("./") { path.removeFirst(2) }
    while path.hasSuffix("/") && path.count > 1 { path.removeLast() }
    return path.isEmpty ? "." : path
}
