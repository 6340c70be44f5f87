"""Layer 0: errors, registries, config, the cache and resource lookup, shared by all layers."""
