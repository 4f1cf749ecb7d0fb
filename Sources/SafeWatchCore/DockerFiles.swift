import Foundation

/// The dev-container files that run safe-watch as PID 1 in Docker. Pure text: `safe-watch
/// init --docker` fills in the project's values, and `config/` in the repository holds the same text
/// for Examples/hello-server (a test keeps the two equal).
public struct DockerFiles: Equatable, Sendable {
    public static let dockerfileName = "Dockerfile.dev"
    public static let composeName = "compose.yaml"
    public static let dockerignoreName = ".dockerignore"
    /// The port when `serve.listen` does not give a fixed one.
    public static let defaultPort = 8080

    /// The project's product: names the container in comments and its image label.
    public var product: String
    /// The port safe-watch listens on inside the container, published on the host's loopback.
    public var port: Int
    /// The project directory's name: the compose service is named after it.
    public var directoryName: String
    /// The path the HEALTHCHECK asks for through safe-watch (`[health] path`).
    public var healthPath: String

    public init(product: String, port: Int = Self.defaultPort, directoryName: String, healthPath: String = "/health") {
        self.product = product
        self.port = port
        self.directoryName = directoryName
        self.healthPath = healthPath
    }

    /// Inside the container safe-watch must listen on every interface: the published port arrives on
    /// the container's own interface, never on its loopback. The host side stays on loopback.
    public var listen: String { "0.0.0.0:\(self.port)" }

    /// A compose service name (`[a-zA-Z0-9._-]`, lower case so the image name derived from it is
    /// valid too): the directory name with anything else turned into `-`.
    public var serviceName: String {
        let mapped = String(self.directoryName.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "-" })
        let trimmed = mapped.drop(while: { !($0.isLetter || $0.isNumber) })
        return trimmed.isEmpty ? "app" : String(trimmed)
    }

    /// Text for a comment or a quoted label: one line, no quotes to break out of.
    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline || $0 == "\"" || $0 == "\\" ? " " : $0 })
    }

    public var dockerfile: String {
        let product = Self.oneLine(self.product)
        let url = "http://127.0.0.1:\(self.port)" + (self.healthPath.hasPrefix("/") ? "" : "/") + self.healthPath
        return """
            # A dev container for \(product): safe-watch watches the project bind-mounted at /app, rebuilds it
            # in the background on every save and moves traffic to the new server only once it is healthy.
            # Written by `safe-watch init --docker`; compose.yaml builds and runs it: docker compose up --build

            # The Swift toolchain: match the project's (swift-tools-version in Package.swift). Official tags
            # are swift:<version>-bookworm (Debian 12) or swift:<version>-noble (Ubuntu 24.04); safe-watch
            # itself needs 6.2 or later.
            ARG SWIFT_IMAGE=swift:6.2-bookworm

            # Stage 1: safe-watch from source. Its sources come in as the build context named "safe-watch"
            # (compose.yaml: build.additional_contexts; plain docker: --build-context safe-watch=DIR): the
            # image builds the checkout you already have, rather than cloning one with its URL and version
            # pinned in here. Only the package is copied: a host .build in that checkout stays out.
            FROM ${SWIFT_IMAGE} AS build-safe-watch
            # safe-watch links libsystemd (sd_notify, socket activation, the journal), found with pkg-config.
            RUN apt-get update \\
                && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsystemd-dev pkg-config \\
                && rm -rf /var/lib/apt/lists/*
            WORKDIR /src/safe-watch
            COPY --from=safe-watch Package.swift Package.resolved* ./
            COPY --from=safe-watch Sources Sources
            COPY --from=safe-watch Tests Tests
            RUN swift build -c release --product safe-watch \\
                && install -m 755 "$(swift build -c release --show-bin-path)/safe-watch" /usr/local/bin/safe-watch

            # Stage 2: the toolchain the project builds with, and safe-watch.
            FROM ${SWIFT_IMAGE}
            # curl for the HEALTHCHECK: the official swift images remove theirs once the toolchain is in.
            # libsystemd0 is safe-watch's runtime library. Add what the project's own build needs here.
            RUN apt-get update \\
                && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl libsystemd0 \\
                && rm -rf /var/lib/apt/lists/*
            COPY --from=build-safe-watch /usr/local/bin/safe-watch /usr/local/bin/safe-watch
            LABEL org.opencontainers.image.title="\(product) (dev)" \\
                org.opencontainers.image.description="safe-watch rebuilds \(product) on every save and swaps it in once healthy"
            # The project is bind-mounted here (compose.yaml), with its .build in a named volume.
            WORKDIR /app
            EXPOSE \(self.port)
            # What `docker stop` sends; safe-watch stops its builds and drains its servers well within the
            # 10 s before SIGKILL.
            STOPSIGNAL SIGTERM
            # The first build (dependencies included) takes minutes: failed probes in the start period do not
            # count. After it, safe-watch's proxy answers this while a healthy generation serves, and a failed
            # rebuild leaves the old one serving.
            HEALTHCHECK --start-period=5m --interval=10s --timeout=5s --retries=3 \\
                CMD curl -fsS -o /dev/null --max-time 4 \(shellQuoted(url)) || exit 1
            # Exec form, no shell in between: safe-watch is PID 1. It reaps orphans and handles SIGTERM, SIGINT,
            # SIGHUP (reload) and SIGQUIT itself, so no tini or docker-init. 0.0.0.0: the published port
            # arrives on the container's interface; compose.yaml publishes it on the host's loopback only.
            # It starts as root and at once becomes the owner of /app (the bind-mounted project), so
            # .safe-watch/ and the build's files on the host are yours, not root's; a port below 1024 or
            # a build that needs root: add "--keep-root" (or SAFE_WATCH_KEEP_ROOT=1 in compose.yaml).
            ENTRYPOINT ["safe-watch", "run", "--project", "/app", "--listen", "\(self.listen)"]

            """
    }

    public var compose: String {
        let product = Self.oneLine(self.product)
        return """
            # A dev container for \(product), run by safe-watch: docker compose up --build
            # Written by `safe-watch init --docker`. Stop with Ctrl-C or `docker compose down` (add -v to drop
            # the .build volume).
            services:
              \(self.serviceName):
                build:
                  context: .
                  dockerfile: \(Self.dockerfileName)
                  # safe-watch is built from a checkout of its sources (see Dockerfile.dev): set SAFE_WATCH_SOURCE
                  # to its directory, in the environment or in .env beside this file.
                  additional_contexts:
                    safe-watch: "${SAFE_WATCH_SOURCE:?set SAFE_WATCH_SOURCE to a safe-watch checkout}"
                volumes:
                  - .:/app
                  # The container's build products, in a named volume: they never mix with the host's .build
                  # (another OS or toolchain) and survive restarts. Its mount point is the project's .build:
                  # keep that directory (init --docker creates it), or Docker creates it as root on the host,
                  # where `swift build` then cannot write. safe-watch, started as root, gives the volume to
                  # the project's owner and runs as that user, so nothing it creates in /app is root's.
                  - build:/app/.build
                ports:
                  # The host's loopback only. Inside, safe-watch listens on 0.0.0.0:\(self.port) so this reaches it.
                  - "127.0.0.1:\(self.port):\(self.port)"
                # safe-watch is PID 1: it reaps orphans and forwards signals itself.
                init: false
                # safe-watch stops well within docker's 10 s; this is headroom for a slow server's drain.
                stop_grace_period: 15s
                # SAFE_WATCH_POLL is left unset: safe-watch polls a tree on its own when the mount loses inotify
                # events (Docker Desktop's fuse/virtiofs/9p bind mounts). To force polling, add:
                #   environment:
                #     SAFE_WATCH_POLL: 500ms

            volumes:
              build:

            """
    }

    /// Keeps what the build context does not need out of it: the project reaches the container as a
    /// bind mount, and the host's `.build` alone can be gigabytes that a classic `docker build` would
    /// send to the engine on every `up --build`.
    public static let dockerignore = """
        # Written by `safe-watch init --docker`. The project reaches the dev container as a bind mount
        # (compose.yaml), so the image's build context needs none of this; the host's .build alone can be
        # gigabytes sent to the engine on every `docker compose up --build`.
        .build
        .build-*
        .swiftpm
        .safe-watch

        """

    /// Whether an existing .dockerignore already keeps `.build` out of the context.
    public static func dockerignoreKeepsBuildOut(_ text: String) -> Bool {
        text.split(whereSeparator: \.isNewline).contains { line in
            let pattern = line.trimmingCharacters(in: .whitespaces)
            return [".build", ".build/", "/.build", "/.build/", "**/.build", "**/.build/"].contains(pattern)
        }
    }

    /// What to run after the files are written.
    public static let upCommands = [
        "docker compose up --build",
    ]
    public static let stopCommands = [
        "docker compose down",
    ]
}
