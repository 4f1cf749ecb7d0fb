public enum SafeWatchRuntime {}
