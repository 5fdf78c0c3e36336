"""Layer contracts: pandera models for every table a layer writes (semantically versioned)."""
