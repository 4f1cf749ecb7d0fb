/// What a reloaded `safe-watch.toml` changes in a running safe-watch.
///
/// The public side is set up once, before anything is built: the listening socket is bound or
/// passed by systemd, the proxy (or tcp splice, or shared socket) is chosen by the mode, and the
/// proxy's header handling is fixed with it. Those keys keep their value until safe-watch restarts,
/// and the user is told so. Everything that shapes a generation (how it is built, run and
/// health-checked) makes a new one; the rest (debounce, watched paths, timeouts) applies at once.
public struct ConfigurationReload: Equatable, Sendable {
    /// The configuration that takes effect.
    public var configuration: Configuration
    /// What to tell the user when a change waits for a restart; nil when none does.
    public var warning: String?
    /// Whether the running generation was made with settings that changed: build a new one.
    public var rebuild: Bool

    /// - Parameters:
    ///   - reloaded: the file as read now, command-line overrides applied.
    ///   - current: the configuration in force.
    public init(reloaded: Configuration, current: Configuration) {
        var configuration = reloaded
        // A product found with `swift package describe` at start is not in the file.
        if configuration.product == nil { configuration.product = current.product }
        var waiting: [String] = []
        if configuration.serve.listen != current.serve.listen || configuration.serve.mode != current.serve.mode
            || configuration.serve.forwardedHeaders != current.serve.forwardedHeaders
        {
            waiting.append("serve.listen, serve.mode and serve.forwarded_headers")
            configuration.serve = current.serve
        }
        // The browser side's endpoints are made with the proxy; only its asset directories (the
        // watcher's) follow a reload.
        var browser = configuration.browser
        browser.assets = current.browser.assets
        if browser != current.browser {
            waiting.append("browser.enabled, browser.prefix and browser.public_hosts")
            configuration.browser.enabled = current.browser.enabled
            configuration.browser.prefix = current.browser.prefix
            configuration.browser.publicHosts = current.browser.publicHosts
        }
        self.warning = waiting.isEmpty ? nil : waiting.joined(separator: "; ") + " changes take effect when safe-watch restarts"

        configuration.settleModeDefaults()
        self.rebuild = configuration.build != current.build || configuration.run != current.run
            || configuration.product != current.product || configuration.health != current.health
        self.configuration = configuration
    }
}
