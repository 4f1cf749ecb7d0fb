#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The executable products of a SwiftPM package, read from `swift package describe --type json`:
/// the one parser of that output, for `run` (which product to build, and how to run it) and `init`
/// (which to write).
public struct ExecutableProducts: Equatable, Sendable {
    /// Product names, sorted, so "the first" is the same on every machine.
    public let names: [String]
    /// The server framework of each product that uses one safe-watch knows.
    public let frameworks: [String: ServerFramework]

    public init(names: [String], frameworks: [String: ServerFramework] = [:]) {
        self.names = names.sorted()
        self.frameworks = frameworks
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
        let executables = described.products.filter(\.isExecutable)
        var frameworks: [String: ServerFramework] = [:]
        for product in executables {
            frameworks[product.name] = Self.framework(of: product, in: described)
        }
        self.init(names: executables.map(\.name), frameworks: frameworks)
    }

    /// The framework `product` uses, if safe-watch knows it.
    public func framework(of product: String) -> ServerFramework? {
        self.frameworks[product]
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
    /// Everything but the products' names and kinds is optional: a field a toolchain leaves out
    /// only means no framework is recognised.
    struct Described: Decodable {
        var products: [Product]
        var dependencies: [Dependency]
        var targets: [Target]

        private enum CodingKeys: String, CodingKey { case products, dependencies, targets }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.products = try container.decode([Product].self, forKey: .products)
            self.dependencies = (try? container.decodeIfPresent([Dependency].self, forKey: .dependencies)) ?? []
            self.targets = (try? container.decodeIfPresent([Target].self, forKey: .targets)) ?? []
        }

        struct Product: Decodable {
            var name: String
            var isExecutable: Bool
            /// The package's own targets the product is made of.
            var targets: [String]

            private enum CodingKeys: String, CodingKey { case name, type, targets }

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
                self.targets = (try? container.decodeIfPresent([String].self, forKey: .targets)) ?? []
            }
        }

        /// A package the manifest depends on: `identity` is the last part of its URL or path,
        /// lowercased, without `.git` ("vapor", "hummingbird", "swift-argument-parser").
        struct Dependency: Decodable {
            var identity: String
        }

        struct Target: Decodable {
            var name: String
            /// Products of other packages it uses (`.product(name: "Vapor", package: "vapor")`).
            var productDependencies: [String]
            /// The package's own targets it uses.
            var targetDependencies: [String]

            private enum CodingKeys: String, CodingKey {
                case name
                case productDependencies = "product_dependencies"
                case targetDependencies = "target_dependencies"
            }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                self.name = try container.decode(String.self, forKey: .name)
                self.productDependencies = (try? container.decodeIfPresent([String].self, forKey: .productDependencies)) ?? []
                self.targetDependencies = (try? container.decodeIfPresent([String].self, forKey: .targetDependencies)) ?? []
            }
        }
    }
}

/// `swift package describe` printed something that is not a package description.
public struct PackageDescribeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
