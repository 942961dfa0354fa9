"""torchdoctor's engine, one subpackage per stage (docs/architecture.md). No UI imports."""
