/// `swift package describe --type json` output of framework packages (Swift 6.3.1), captured from
/// manifests shaped like Vapor's and Hummingbird's project templates (the dependencies and targets
/// are theirs; vapor 4.122.3 and hummingbird 2.28.1 resolve from them).
extension DescribeOutput {
    /// The shape of Vapor's project template: an executable `App` using Vapor and NIO, and a test target.
    static let vaporTemplate = """
        {
          "dependencies" : [
            {
              "identity" : "vapor",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "4.115.0",
                    "upper_bound" : "5.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/vapor/vapor.git"
            },
            {
              "identity" : "swift-nio",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "2.65.0",
                    "upper_bound" : "3.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/apple/swift-nio.git"
            }
          ],
          "manifest_display_name" : "hello",
          "name" : "hello",
          "path" : "/tmp/fw/cap/vapor",
          "platforms" : [
            {
              "name" : "macos",
              "version" : "13.0"
            }
          ],
          "products" : [
            {
              "name" : "App",
              "targets" : [
                "App"
              ],
              "type" : {
                "executable" : null
              }
            }
          ],
          "targets" : [
            {
              "c99name" : "AppTests",
              "module_type" : "SwiftTarget",
              "name" : "AppTests",
              "path" : "Tests/AppTests",
              "product_dependencies" : [
                "VaporTesting"
              ],
              "sources" : [
                "AppTests.swift"
              ],
              "target_dependencies" : [
                "App"
              ],
              "type" : "test"
            },
            {
              "c99name" : "App",
              "module_type" : "SwiftTarget",
              "name" : "App",
              "path" : "Sources/App",
              "product_dependencies" : [
                "Vapor",
                "NIOCore",
                "NIOPosix"
              ],
              "product_memberships" : [
                "App"
              ],
              "sources" : [
                "configure.swift",
                "entrypoint.swift",
                "routes.swift"
              ],
              "type" : "executable"
            }
          ],
          "tools_version" : "6.0"
        }
        """

    /// The older Vapor layout: an executable `Run` on a library target `App` that uses Vapor; `Tool` names Vapor by name.
    static let vaporRunAndApp = """
        {
          "dependencies" : [
            {
              "identity" : "vapor",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "4.0.0",
                    "upper_bound" : "5.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/vapor/vapor.git"
            }
          ],
          "manifest_display_name" : "legacy",
          "name" : "legacy",
          "path" : "/tmp/fw/byname",
          "platforms" : [

          ],
          "products" : [
            {
              "name" : "Tool",
              "targets" : [
                "Tool"
              ],
              "type" : {
                "executable" : null
              }
            },
            {
              "name" : "Run",
              "targets" : [
                "Run"
              ],
              "type" : {
                "executable" : null
              }
            }
          ],
          "targets" : [
            {
              "c99name" : "Tool",
              "module_type" : "SwiftTarget",
              "name" : "Tool",
              "path" : "Sources/Tool",
              "product_dependencies" : [
                "Vapor"
              ],
              "product_memberships" : [
                "Tool"
              ],
              "sources" : [
                "main.swift"
              ],
              "type" : "executable"
            },
            {
              "c99name" : "Run",
              "module_type" : "SwiftTarget",
              "name" : "Run",
              "path" : "Sources/Run",
              "product_memberships" : [
                "Run"
              ],
              "sources" : [
                "main.swift"
              ],
              "target_dependencies" : [
                "App"
              ],
              "type" : "executable"
            },
            {
              "c99name" : "App",
              "module_type" : "SwiftTarget",
              "name" : "App",
              "path" : "Sources/App",
              "product_dependencies" : [
                "Vapor"
              ],
              "product_memberships" : [
                "Run"
              ],
              "sources" : [
                "App.swift"
              ],
              "type" : "library"
            }
          ],
          "tools_version" : "5.9"
        }
        """

    /// The shape of Hummingbird's template with swift-argument-parser (`--hostname`/`--port`).
    static let hummingbirdArgumentParser = """
        {
          "dependencies" : [
            {
              "identity" : "hummingbird",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "2.0.0",
                    "upper_bound" : "3.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/hummingbird-project/hummingbird.git"
            },
            {
              "identity" : "swift-argument-parser",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "1.3.0",
                    "upper_bound" : "2.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/apple/swift-argument-parser.git"
            }
          ],
          "manifest_display_name" : "hello",
          "name" : "hello",
          "path" : "/tmp/fw/cap/hb",
          "platforms" : [
            {
              "name" : "macos",
              "version" : "14.0"
            },
            {
              "name" : "ios",
              "version" : "17.0"
            },
            {
              "name" : "tvos",
              "version" : "17.0"
            }
          ],
          "products" : [
            {
              "name" : "App",
              "targets" : [
                "App"
              ],
              "type" : {
                "executable" : null
              }
            }
          ],
          "targets" : [
            {
              "c99name" : "AppTests",
              "module_type" : "SwiftTarget",
              "name" : "AppTests",
              "path" : "Tests/AppTests",
              "product_dependencies" : [
                "HummingbirdTesting"
              ],
              "sources" : [
                "AppTests.swift"
              ],
              "target_dependencies" : [
                "App"
              ],
              "type" : "test"
            },
            {
              "c99name" : "App",
              "module_type" : "SwiftTarget",
              "name" : "App",
              "path" : "Sources/App",
              "product_dependencies" : [
                "ArgumentParser",
                "Hummingbird"
              ],
              "product_memberships" : [
                "App"
              ],
              "sources" : [
                "App+build.swift",
                "App.swift"
              ],
              "type" : "executable"
            }
          ],
          "tools_version" : "6.0"
        }
        """

    /// The shape of Hummingbird's newer template with swift-configuration (`http.port`).
    static let hummingbirdConfiguration = """
        {
          "dependencies" : [
            {
              "identity" : "hummingbird",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "2.25.0",
                    "upper_bound" : "3.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/hummingbird-project/hummingbird.git"
            },
            {
              "identity" : "swift-configuration",
              "requirement" : {
                "range" : [
                  {
                    "lower_bound" : "1.0.0",
                    "upper_bound" : "2.0.0"
                  }
                ]
              },
              "type" : "sourceControl",
              "url" : "https://github.com/apple/swift-configuration.git"
            }
          ],
          "manifest_display_name" : "hello",
          "name" : "hello",
          "path" : "/tmp/fw/cap/hbconf",
          "platforms" : [
            {
              "name" : "macos",
              "version" : "15.0"
            },
            {
              "name" : "ios",
              "version" : "18.0"
            },
            {
              "name" : "tvos",
              "version" : "18.0"
            }
          ],
          "products" : [
            {
              "name" : "App",
              "targets" : [
                "App"
              ],
              "type" : {
                "executable" : null
              }
            }
          ],
          "targets" : [
            {
              "c99name" : "AppTests",
              "module_type" : "SwiftTarget",
              "name" : "AppTests",
              "path" : "Tests/AppTests",
              "product_dependencies" : [
                "HummingbirdTesting"
              ],
              "sources" : [
                "AppTests.swift"
              ],
              "target_dependencies" : [
                "App"
              ],
              "type" : "test"
            },
            {
              "c99name" : "App",
              "module_type" : "SwiftTarget",
              "name" : "App",
              "path" : "Sources/App",
              "product_dependencies" : [
                "Configuration",
                "Hummingbird"
              ],
              "product_memberships" : [
                "App"
              ],
              "sources" : [
                "App+build.swift",
                "App.swift"
              ],
              "type" : "executable"
            }
          ],
          "tools_version" : "6.2"
        }
        """
}
