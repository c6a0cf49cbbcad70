"""The `gov-warehouse` command line: each command a thin call into the package that owns the work."""
