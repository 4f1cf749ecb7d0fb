import Foundation
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

/// Copies each successful build into `.safe-watch/generations/N/`: the running server
/// always executes a staged copy, so the next build cannot touch it and rollback is one launch away.
public struct Stager: Sendable {
    public var stateDirectory: String

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    public func directory(of generation: Generation) -> String {
        "\(self.stateDirectory)/generations/\(generation)"
    }

    /// The staged executable of `generation`.
    public func executable(of generation: Generation, binaryName: String) -> String {
        "\(self.directory(of: generation))/\(binaryName)"
    }

    /// Hard-links (or copies, across devices) `binary` and the resource bundles beside it. Errors
    /// are a `StagingError` that says what failed and what to do.
    public func stage(binary: String, as generation: Generation) throws(StagingError) -> String {
        do {
            return try self.link(binary: binary, as: generation)
        } catch {
            throw StagingError(error, staging: binary, into: self.directory(of: generation))
        }
    }

    private func link(binary: String, as generation: Generation) throws -> String {
        let files = FileManager.default
        let target = self.directory(of: generation)
        try? files.removeItem(atPath: target)
        try files.createDirectory(atPath: target, withIntermediateDirectories: true)
        let name = (binary as NSString).lastPathComponent
        let staged = "\(target)/\(name)"
        try Self.linkOrCopy(binary, to: staged)
        // SwiftPM puts resources in `<Package>_<Target>.resources` beside the executable.
        let buildDirectory = (binary as NSString).deletingLastPathComponent
        for entry in (try? files.contentsOfDirectory(atPath: buildDirectory)) ?? [] where entry.hasSuffix(".resources") {
            try Self.linkTree("\(buildDirectory)/\(entry)", to: "\(target)/\(entry)")
        }
        return staged
    }

    /// Deletes the directories of `generations` (a process still running from one keeps its inode).
    public func discard(_ generations: [Generation]) {
        for generation in generations {
            try? FileManager.default.removeItem(atPath: self.directory(of: generation))
        }
    }

    /// Deletes every staged generation (at start: numbering begins again at 1).
    public func discardAll() {
        try? FileManager.default.removeItem(atPath: "\(self.stateDirectory)/generations")
    }

    private static func linkOrCopy(_ source: String, to destination: String) throws {
        do {
            try FileManager.default.linkItem(atPath: source, toPath: destination)
        } catch {
            // EXDEV (another device) or a file system without hard links.
            try FileManager.default.copyItem(atPath: source, toPath: destination)
        }
    }

    private static func linkTree(_ source: String, to destination: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else { return }
        if !isDirectory.boolValue {
            try linkOrCopy(source, to: destination)
            return
        }
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        for entry in try FileManager.default.contentsOfDirectory(atPath: source) {
            try linkTree("\(source)/\(entry)", to: "\(destination)/\(entry)")
        }
    }
}

/// Why a build could not be staged, in a person's words: Foundation's own text for a full disk is
/// a page of NSError user info.
public struct StagingError: Error, CustomStringConvertible {
    public var description: String

    init(_ error: any Error, staging binary: String, into directory: String) {
        let code = Self.errno(of: error)
        var text = "cannot copy \(binary) into \(directory): \(code.map { "\($0)" } ?? "\(error)")"
        if let code, [.noSpace, .diskQuotaExceeded].contains(code) {
            text += " — the file system holding .safe-watch is full: free some space, then save again"
        } else if let code, [.permissionDenied, .notPermitted, .readOnlyFileSystem].contains(code) {
            text += " — .safe-watch must be writable by safe-watch"
        }
        self.description = text
    }

    /// The errno behind a Foundation file error, wherever it keeps it.
    private static func errno(of error: any Error) -> Errno? {
        if let posix = error as? POSIXError { return Errno(rawValue: posix.code.rawValue) }
        guard let cocoa = error as? CocoaError else { return nil }
        if let underlying = cocoa.userInfo[NSUnderlyingErrorKey] {
            if let posix = underlying as? POSIXError { return Errno(rawValue: posix.code.rawValue) }
            if let nsError = underlying as? NSError, nsError.domain == NSPOSIXErrorDomain { return Errno(rawValue: Int32(nsError.code)) }
        }
        switch cocoa.code {
        case .fileWriteOutOfSpace: return .noSpace
        case .fileWriteNoPermission, .fileReadNoPermission: return .permissionDenied
        case .fileWriteVolumeReadOnly: return .readOnlyFileSystem
        case .fileNoSuchFile, .fileReadNoSuchFile: return .noSuchFileOrDirectory
        default: return nil
        }
    }
}
