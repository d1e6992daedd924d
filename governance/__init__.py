"""recgov's governance layer: policy packs, checks, the gate, serving, the API and the CLI."""
