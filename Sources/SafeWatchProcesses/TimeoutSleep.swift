/// Sleeps for `duration`, or until the calling task is cancelled, whichever comes first: the
/// timeout side of a race against real work (a build, a drain, a process's exit), which is
/// cancelled as soon as the work wins.
///
/// Why not one `Task.sleep(for: duration)`: a cancelled `Task.sleep` returns at once, but the
/// runtime keeps the sleep's job (a task, ~0.5 KB) and the dispatch timer that is to wake it until
/// the original deadline. A 10-minute build timeout cancelled by each build's exit left ~0.8 KB
/// behind per build for 10 minutes, so safe-watch's memory grew with every swap (heaptrack:
/// `swift_task_create_common`, `_dispatch_source_timer_create`). Slept in steps of at most
/// `step`, a cancelled timeout leaves at most one step's job, gone within `step`.
public func sleepForTimeout(_ duration: Duration, step: Duration = .seconds(1)) async {
    let deadline = ContinuousClock.now + duration
    while !Task.isCancelled {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return }
        try? await Task.sleep(for: min(left, step))
    }
}
