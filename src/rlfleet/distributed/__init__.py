"""Training on Ray: actor workers, replay shards, the parameter server (see docs/architecture.md)."""
