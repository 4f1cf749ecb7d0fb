/// A watched path relative to the project: no leading "./", no trailing "/", "." for the root.
func normalizedWatchPath(_ path: String) -> String {
    var path = path
    while path.hasPrefix("./") { path.removeFirst(2) }
    while path.hasSuffix("/") && path.count > 1 { path.removeLast() }
    return path.isEmpty ? "." : path
}
