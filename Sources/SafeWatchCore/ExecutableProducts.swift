#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The executable products of a SwiftPM package, read from `swift package describe --type json`:
/// the one parser of that output, for `run` (which product to build) and `init` (which to write).
public struct ExecutableProducts: Equatable, Sendable {
    /// Product names, sorted, so "the first" is the same on every machine.
    public let names: [String]

    public init(names: [String]) {
        self.names = names.sorted()
    }

    /// Reads describe's output. Text before the JSON (SwiftPM prints resolution and warnings to the
    /// same stream when stderr is merged) is skipped.
    public init(describeOutput: String) throws(PackageDescribeError) {
        guard let start = describeOutput.firstIndex(of: "{") else {
            throw PackageDescribeError("no JSON in the output of `swift package describe`")
        }
        let described: Described
        do {
            described = try JSONDecoder().decode(Described.self, from: Data(describeOutput[start...].utf8))
        } catch {
            throw PackageDescribeError("cannot read the output of `swift package describe`: \(error)")
        }
        self.init(names: described.products.filter(\.isExecutable).map(\.name))
    }

    /// What a project with these products runs.
    public enum Choice: Equatable, Sendable {
        /// No executable product: safe-watch needs build.command and build.binary, or a product.
        case none
        case one(String)
        /// Several: `first` (sorted) is a starting point for `init`; `run` asks for a choice.
        case several(first: String, others: [String])
    }

    public var choice: Choice {
        guard let first = self.names.first else { return .none }
        return self.names.count == 1 ? .one(first) : .several(first: first, others: Array(self.names.dropFirst()))
    }

    /// The parts of describe's JSON used here. A product's `type` is an object with one key naming
    /// its kind: `{"executable": null}`, `{"library": ["automatic"]}`, `{"plugin": null}`, …
    private struct Described: Decodable {
        var products: [Product]
    }

    private struct Product: Decodable {
        var name: String
        var isExecutable: Bool

        private enum CodingKeys: String, CodingKey { case name, type }

        private struct Kind: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.name = try container.decode(String.self, forKey: .name)
            let kind = try container.nestedContainer(keyedBy: Kind.self, forKey: .type)
            self.isExecutable = kind.contains(Kind(stringValue: "executable"))
        }
    }
}

/// `swift package describe` printed something that is not a package description.
public struct PackageDescribeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
