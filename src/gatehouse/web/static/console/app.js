// The console entry point.
