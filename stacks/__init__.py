"""This app's per-environment stacks and typed configuration (the library lives in constructs/)."""
