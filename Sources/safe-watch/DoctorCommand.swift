import ArgumentParser
import Foundation
import SafeWatch
import SafeWatchCore
import SafeWatchProcesses
import SafeWatchSystem

extension SafeWatchCommand {
    /// `safe-watch doctor`: probes here, verdicts and fixes in `SafeWatchCore.Doctor`.
    struct DoctorCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "doctor",
            abstract: "Check this machine and project for what safe-watch needs; exit 1 when something must be fixed.",
            discussion: """
                One line per check: ✓ fine, ! worth knowing, ✗ must be fixed (each with the command that \
                fixes it). Checks: the configuration loads; the Swift toolchain; each watched path's file \
                system and whether it is polled; the inotify watch limit against the directories \
                safe-watch would watch (same ignore rules as the watcher: .build, .git, .gitignore, \
                [watch] ignore) and the instance limit, counting what this user's programs hold; \
                serve.listen is free; libsystemd and the systemd user manager.
                """)

        @OptionGroup var project: ConfiguredProjectOptions

        func run() async throws {
            let status = await self.check()
            // _exit, not exit(), after async work: see Run.run (libdispatch's teardown race).
            _exit(status)
        }

        private func check() async -> Int32 {
            let files = FileManager.default
            let directory = self.project.directory
            var isDirectory: ObjCBool = false
            guard files.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                writeToStandardError("safe-watch doctor: project directory \(directory) does not exist (--project)\n")
                return 1
            }
            var checks: [DoctorCheck] = []

            let file = self.project.configurationFile
            var configuration = Configuration()
            var failure: String?
            let exists = files.fileExists(atPath: file)
            if exists {
                do {
                    let text = try String(contentsOfFile: file, encoding: .utf8)
                    configuration = try ConfigurationLoader(fileName: file).load(text)
                } catch {
                    failure = "\(error)"
                }
            }
            checks.append(Doctor.configuration(file: file, exists: exists, named: self.project.config != nil, error: failure))

            let launcher = ChildLauncher()
            Reaper.shared.start()
            checks.append(Doctor.toolchain(await ProjectLoader.swiftToolchain(launcher: launcher), buildCommand: configuration.build.command))

            // As the watcher decides: inotify unless the path's file system loses its events (or
            // polling is forced); polled trees take no watches.
            var inotifyPaths: [String] = []
            for path in configuration.watch.paths {
                let absolute = path == "." ? directory : directory + "/" + path
                let kind = fileSystemKind(of: absolute)
                checks.append(Doctor.watchedPath(path, kind: kind, poll: configuration.watch.poll))
                if kind != nil, configuration.watch.poll.interval(losesInotifyEvents: kind?.losesInotifyEvents ?? false) == nil {
                    inotifyPaths.append(path)
                }
            }
            let ignore = IgnoreRules.watching(project: directory, patterns: configuration.watch.ignore)
            let directories = MachineProbe.watchedDirectories(root: directory, paths: inotifyPaths, ignore: ignore)
            let usage = MachineProbe.inotifyUsage()
            let procSys = MachineProbe.procSys
            // A safe-watch already running for this project holds its watches and its port on
            // purpose: they are not another program's.
            let running = runningStatus(projectDirectory: directory)
            checks.append(
                Doctor.inotifyWatches(
                    limit: MachineProbe.sysctl("fs/inotify/max_user_watches", in: procSys),
                    inUse: max(0, usage.watches - (running?.watching.directories ?? 0)),
                    directories: directories, source: procSys + "/fs/inotify/max_user_watches"))
            checks.append(
                Doctor.inotifyInstances(
                    limit: MachineProbe.sysctl("fs/inotify/max_user_instances", in: procSys), inUse: usage.instances,
                    needed: inotifyPaths.isEmpty ? 0 : 1, source: procSys + "/fs/inotify/max_user_instances"))

            let listen = configuration.serve.listen
            checks.append(
                Doctor.port(
                    listen, probe: listen.port == 0 ? nil : MachineProbe.port(listen),
                    runningSafeWatch: running.flatMap { status in
                        status.serve.addresses.contains { $0.hasSuffix("://\(listen)") } ? status.pid : nil
                    }))

            checks.append(
                Doctor.systemd(
                    library: MachineProbe.loadedLibsystemd(), booted: MachineProbe.systemdBooted,
                    userManager: MachineProbe.userManagerRunning, notifySocket: ServiceManager().notifySocket))

            let report = Doctor.report(checks)
            writeToStandardOutput(report.text)
            return report.exitStatus
        }
    }
}
