await SafeWatchCommand.parseAndRun()
