import SafeWatchCore
import Testing

/// `swift package describe --type json` output, captured from real packages (Swift 6.3.1): one with
/// one executable target, one with two executables (declared beta, then alpha) and a library.
enum DescribeOutput {
    static let oneExecutable = """
        {
          "dependencies" : [

          ],
          "manifest_display_name" : "one",
          "name" : "one",
          "path" : "/tmp/desc1",
          "platforms" : [

          ],
          "products" : [
            {
              "name" : "app",
              "targets" : [
                "app"
              ],
              "type" : {
                "executable" : null
              }
            }
          ],
          "targets" : [
            {
              "c99name" : "app",
              "module_type" : "SwiftTarget",
              "name" : "app",
              "path" : "Sources/app",
              "product_memberships" : [
                "app"
              ],
              "sources" : [
                "main.swift"
              ],
              "type" : "executable"
            }
          ],
          "tools_version" : "6.0"
        }
        """

    static let twoExecutablesAndALibrary = """
        {
          "dependencies" : [

          ],
          "manifest_display_name" : "two",
          "name" : "two",
          "path" : "/tmp/desc2",
          "platforms" : [

          ],
          "products" : [
            {
              "name" : "Lib",
              "targets" : [
                "Lib"
              ],
              "type" : {
                "library" : [
                  "automatic"
                ]
              }
            },
            {
              "name" : "beta",
              "targets" : [
                "beta"
              ],
              "type" : {
                "executable" : null
              }
            },
            {
              "name" : "alpha",
              "targets" : [
                "alpha"
              ],
              "type" : {
                "executable" : null
              }
            }
          ],
          "targets" : [
            {
              "c99name" : "beta",
              "module_type" : "SwiftTarget",
              "name" : "beta",
              "path" : "Sources/beta",
              "product_memberships" : [
                "beta"
              ],
              "sources" : [
                "main.swift"
              ],
              "target_dependencies" : [
                "Lib"
              ],
              "type" : "executable"
            },
            {
              "c99name" : "alpha",
              "module_type" : "SwiftTarget",
              "name" : "alpha",
              "path" : "Sources/alpha",
              "product_memberships" : [
                "alpha"
              ],
              "sources" : [
                "main.swift"
              ],
              "type" : "executable"
            },
            {
              "c99name" : "Lib",
              "module_type" : "SwiftTarget",
              "name" : "Lib",
              "path" : "Sources/Lib",
              "product_memberships" : [
                "Lib",
                "beta"
              ],
              "sources" : [
                "Lib.swift"
              ],
              "type" : "library"
            }
          ],
          "tools_version" : "6.0"
        }
        """
}

@Suite("Executable products from swift package describe")
struct ExecutableProductsTests {
    @Test func oneExecutableProduct() throws {
        let products = try ExecutableProducts(describeOutput: DescribeOutput.oneExecutable)
        #expect(products.names == ["app"])
        #expect(products.choice == .one("app"))
    }

    @Test("several: sorted by name, libraries left out")
    func severalExecutableProducts() throws {
        let products = try ExecutableProducts(describeOutput: DescribeOutput.twoExecutablesAndALibrary)
        #expect(products.names == ["alpha", "beta"])
        #expect(products.choice == .several(first: "alpha", others: ["beta"]))
    }

    @Test("text SwiftPM prints before the JSON is skipped")
    func preamble() throws {
        let output = "Fetching https://github.com/apple/swift-nio\nwarning: 'one': found 1 file(s) which are unhandled\n"
            + DescribeOutput.oneExecutable
        #expect(try ExecutableProducts(describeOutput: output).names == ["app"])
    }

    @Test func noExecutableProduct() throws {
        let library = DescribeOutput.twoExecutablesAndALibrary.replacing("\"executable\" : null", with: "\"plugin\" : null")
        let products = try ExecutableProducts(describeOutput: library)
        #expect(products.names.isEmpty)
        #expect(products.choice == .none)
        #expect(StarterConfiguration(products: products) == nil)
    }

    @Test("not a package description: an error, not an empty list")
    func garbage() {
        #expect(throws: PackageDescribeError.self) { try ExecutableProducts(describeOutput: "error: no Package.swift") }
        #expect(throws: PackageDescribeError.self) { try ExecutableProducts(describeOutput: "{\"name\": \"x\"}") }
    }

    @Test("no framework: a plain executable")
    func noFramework() throws {
        #expect(try ExecutableProducts(describeOutput: DescribeOutput.oneExecutable).framework(of: "app") == nil)
        #expect(try ExecutableProducts(describeOutput: DescribeOutput.twoExecutablesAndALibrary).frameworks.isEmpty)
    }

    @Test("Vapor: the template's App, and Run through its library target App")
    func vapor() throws {
        let template = try ExecutableProducts(describeOutput: DescribeOutput.vaporTemplate)
        #expect(template.names == ["App"])
        #expect(template.framework(of: "App") == .vapor)
        let older = try ExecutableProducts(describeOutput: DescribeOutput.vaporRunAndApp)
        #expect(older.names == ["Run", "Tool"])
        #expect(older.framework(of: "Run") == .vapor)
        #expect(older.framework(of: "Tool") == .vapor, "a dependency by name counts too")
    }

    @Test("Hummingbird: how the app takes its address comes from what it uses")
    func hummingbird() throws {
        let parser = try ExecutableProducts(describeOutput: DescribeOutput.hummingbirdArgumentParser)
        #expect(parser.framework(of: "App") == .hummingbird(.argumentParser))
        let configuration = try ExecutableProducts(describeOutput: DescribeOutput.hummingbirdConfiguration)
        #expect(configuration.framework(of: "App") == .hummingbird(.configuration))
        let neither = DescribeOutput.hummingbirdArgumentParser.replacing("\"ArgumentParser\",", with: "")
        #expect(try ExecutableProducts(describeOutput: neither).framework(of: "App") == .hummingbird(.unknown))
    }

    @Test("a product named Vapor from a package that is not vapor is not Vapor")
    func productNameAloneIsNotEnough() throws {
        let renamed = DescribeOutput.vaporTemplate.replacing("\"identity\" : \"vapor\"", with: "\"identity\" : \"my-vapor\"")
        #expect(try ExecutableProducts(describeOutput: renamed).framework(of: "App") == nil)
    }

    @Test("describe output without dependencies or targets still lists the products")
    func fieldsLeftOut() throws {
        let bare = "{\"products\": [{\"name\": \"App\", \"type\": {\"executable\": null}}]}"
        let products = try ExecutableProducts(describeOutput: bare)
        #expect(products.names == ["App"])
        #expect(products.framework(of: "App") == nil)
    }
}
