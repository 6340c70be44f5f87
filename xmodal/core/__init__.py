"""Layer 0: errors, registries, config and resource lookup shared by every other layer."""
